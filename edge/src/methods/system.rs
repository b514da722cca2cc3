//! The gateway's own methods: `connect` (goclaw's answer to a second one),
//! `health` (answered by the connection, no service call) and `status`.
//!
//! Answers per dialect: OpenClaw `health` is the reference's snapshot of the
//! default agent; goclaw `health` reports only the caller's own connection
//! (goclaw lists every client, a leak not copied). `status` lists the caller's
//! sessions (OpenClaw: the ten most recent; goclaw: their count and the
//! sockets of its run topic on this edge).

use clawgate_proto::session::{ListSessionsRequest, ListSessionsResponse, SessionApi};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Handler, Job, Method, Outcome, Request, Role, Runs, Scope, Versions, job};
use crate::params::Style;
use crate::state::EdgeState;
use crate::time::rfc3339;

pub const METHODS: &[Method] = &[
    Method {
        name: "connect",
        openclaw: None,
        goclaw: Some(Role::Viewer),
        handler: Handler::Connect,
        versions: Versions::ALL,
    },
    Method {
        name: "health",
        openclaw: Some(Scope::Open),
        goclaw: Some(Role::Viewer),
        handler: Handler::Health,
        versions: Versions::ALL,
    },
    Method::call(
        "status",
        Some(Scope::Read),
        Some(Role::Viewer),
        parse_status,
    ),
];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Status,
}

fn parse_status(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&["includeChannelSummary"])?;
    if request.style == Style::Camel {
        obj.opt_bool("includeChannelSummary")
            .map_err(|why| request.invalid(why))?;
    }
    Ok(job(Call::Status))
}

/// The OpenClaw `health` payload.
pub fn openclaw_health(state: &EdgeState) -> Value {
    let agent = &state.config.default_agent_id;
    json!({
        "ok": true,
        "ts": now_ms(),
        "durationMs": 0,
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "heartbeatSeconds": 0,
        "defaultAgentId": agent,
        "agents": [{ "agentId": agent, "isDefault": true }],
    })
}

/// The goclaw `health` payload: only this connection is listed.
pub fn goclaw_health(
    state: &EdgeState,
    principal: &Principal,
    remote_addr: &str,
    connected_at_ms: i64,
) -> Value {
    json!({
        "status": "ok",
        "version": state.config.version,
        "uptime": state.uptime_ms(),
        "mode": "managed",
        "database": "n/a",
        "tools": 0,
        "clients": [{
            "id": principal.connection_id,
            "remoteAddr": remote_addr,
            "userId": principal.user_id,
            "role": principal.role,
            "connectedAt": rfc3339(connected_at_ms),
        }],
        "currentId": principal.connection_id,
    })
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await.into()
    }
}

/// Runs a validated call.
pub async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    match call {
        Call::Status => match style {
            Style::Camel => openclaw_status(state, principal).await,
            Style::Snake => goclaw_status(state, principal).await,
        },
    }
}

/// The caller's `limit` most recent sessions (of every agent) and their total.
async fn recent_sessions(
    state: &EdgeState,
    principal: &Principal,
    limit: u32,
) -> Result<ListSessionsResponse, ServiceError> {
    let request = ListSessionsRequest {
        limit,
        offset: 0,
        agent_id: String::new(),
    };
    state
        .services
        .session
        .list_sessions(principal, request)
        .await
}

async fn openclaw_status(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let sessions = recent_sessions(state, principal, 10).await?;
    let recent: Vec<Value> = sessions
        .sessions
        .iter()
        .map(|s| json!({ "key": s.session_key, "updatedAt": s.updated_at_ms }))
        .collect();
    let agent = &state.config.default_agent_id;
    Ok(json!({
        "runtimeVersion": state.config.version,
        "heartbeat": { "defaultAgentId": agent, "agents": [] },
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {
            "paths": [],
            "count": sessions.total,
            "defaults": { "model": null, "contextTokens": null },
            "recent": recent,
            "byAgent": [],
        },
    }))
}

async fn goclaw_status(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let sessions = recent_sessions(state, principal, 1).await?;
    let topic = crate::hub::run_topic(principal);
    Ok(json!({
        "agents": [{ "id": state.config.default_agent_id, "model": "", "isRunning": false }],
        "agentTotal": 1,
        "clients": state.hub.sockets_on(&topic),
        "sessions": sessions.total,
    }))
}
