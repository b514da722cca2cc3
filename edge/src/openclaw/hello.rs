//! The `hello-ok` payload of an accepted OpenClaw connect, per protocol
//! version (v3 §2.4; v4 reference §2).
//!
//! Invariants: `features.methods` is derived from the method declarations for
//! the connection's version (exactly what dispatch serves it);
//! `features.capabilities` (v4 only) names only behaviour clawgate implements,
//! each derived from what is declared; v4 drops `canvasHostUrl` and sends
//! `pluginSurfaceUrls` only when there is a surface (clawgate serves none, so
//! neither is sent); the snapshot carries the edge's real presence and health
//! views, read from local caches (no service call on the connect path).

use serde_json::{Value, json};

use super::authz::EVENTS;
use crate::methods;
use crate::state::EdgeState;
use crate::version::Protocol;

/// v4 server capabilities, each with the method whose presence means it is
/// implemented.
const CAPABILITIES: [(&str, &str); 1] = [
    // `openclaw models list` requires it before it calls `models.list`.
    ("published-model-catalog", "models.list"),
];

/// The v4 capabilities this edge has: those whose method is offered in v4.
pub fn capabilities() -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .filter(|(_, method)| methods::find_openclaw(method, Protocol::V4).is_some())
        .map(|(capability, _)| *capability)
        .collect()
}

/// The `hello-ok` payload for a connection of `protocol`; `auth` is the
/// version's `auth` object, already built.
pub fn hello_ok(state: &EdgeState, conn_id: &str, protocol: Protocol, auth: Value) -> Value {
    let config = &state.config;
    let agent = &config.default_agent_id;
    let (health, health_version) = crate::health::health_snapshot(state);
    let mut features = json!({
        "methods": methods::openclaw_methods(protocol),
        "events": EVENTS,
    });
    if protocol == Protocol::V4 {
        features["capabilities"] = json!(capabilities());
    }
    json!({
        "type": "hello-ok",
        "protocol": protocol.number(),
        "server": { "version": config.version, "connId": conn_id },
        "features": features,
        "snapshot": {
            "presence": [],
            "health": health,
            "stateVersion": { "presence": 1, "health": health_version },
            "uptimeMs": state.uptime_ms(),
            "sessionDefaults": {
                "defaultAgentId": agent,
                "mainKey": config.main_key,
                "mainSessionKey": format!("agent:{agent}:{}", config.main_key),
                "scope": "per-sender",
            },
        },
        "auth": auth,
        "policy": {
            "maxPayload": config.max_payload_bytes,
            "maxBufferedBytes": config.socket_queue_bytes,
            "tickIntervalMs": u64::try_from(config.tick_interval.as_millis()).unwrap_or(u64::MAX),
        },
    })
}
