//! The gateway's own methods: `connect` (goclaw's answer to a second one),
//! `health`, `status` and `config.get`.
//!
//! `health`: the process part comes from the cached snapshot
//! ([`crate::health`]; `{probe:true}` refreshes it first); OpenClaw adds the
//! caller's sessions (`sessions{path, count, recent[{key, updatedAt, age}]}`,
//! at the top and on the default agent's entry, since the CLI needs them
//! there) from the session service, as the caller may see them: the snapshot
//! itself is shared by every tenant and holds none. `path` names where
//! sessions live (the session service; there is no file). goclaw `health`
//! reports only the caller's own connection (goclaw lists every client, a leak
//! not copied) and `database` from the session service's health.
//!
//! `status` lists the caller's sessions (OpenClaw: the ten most recent;
//! goclaw: their count), the configured model and the caller's runs executing
//! on the runner that answered (`RunnerStats`; with several runners, that
//! one's), and the services' health from the snapshot.
//!
//! `config.get` answers the redacted configuration the binary handed the edge
//! (`EdgeConfig::effective_config`): every flag's effective value, secrets
//! replaced by `__OPENCLAW_REDACTED__`. There is no configuration file
//! (flags and environment only), so `path` is null, `exists` false and
//! `hash` absent (nothing can be written back); `valid` is true (the process
//! started with it) and `issues`/`warnings` are empty for the same reason.

use clawgate_proto::runner::{
    ListModelsRequest, ListModelsResponse, RunnerApi, RunnerStatsRequest, RunnerStatsResponse,
};
use clawgate_proto::session::{ListSessionsRequest, ListSessionsResponse, SessionApi};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Handler, Job, Method, Outcome, Request, Role, Runs, Scope, Versions, job};
use crate::health;
use crate::params::Style;
use crate::state::EdgeState;
use crate::time::rfc3339;

/// Sessions `health` lists per caller.
const HEALTH_RECENT: u32 = 5;
/// Sessions `status` lists per caller.
const STATUS_RECENT: u32 = 10;
/// Where sessions live, as `sessions.path` says.
pub const SESSIONS_PATH: &str = "session-service";

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
    Method::call("config.get", Some(Scope::Read), None, parse_config_get),
];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// OpenClaw `health`; `probe`: refresh the snapshot first.
    Health {
        probe: bool,
    },
    Status,
    ConfigGet,
}

/// OpenClaw `health {probe?}` (goclaw's is answered by the connection).
pub fn parse_openclaw_health(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&["probe"])?;
    let probe = obj
        .opt_bool("probe")
        .map_err(|why| request.invalid(why))?
        .unwrap_or(false);
    Ok(job(Call::Health { probe }))
}

fn parse_status(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    // `channelSummary` is always the whole (empty: no channels) summary, so
    // `includeChannelSummary` changes nothing either way.
    let obj = request.closed(&["includeChannelSummary"])?;
    if request.style == Style::Camel {
        obj.opt_bool("includeChannelSummary")
            .map_err(|why| request.invalid(why))?;
    }
    Ok(job(Call::Status))
}

fn parse_config_get(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    request.closed(&[])?;
    Ok(job(Call::ConfigGet))
}

/// The goclaw `health` payload: only this connection is listed.
pub fn goclaw_health(
    state: &EdgeState,
    principal: &Principal,
    remote_addr: &str,
    connected_at_ms: i64,
) -> Value {
    let snapshot = state.health.current();
    let database = match snapshot.payload["services"]["session"]["ok"].as_bool() {
        Some(true) => "ok",
        Some(false) => "error",
        None => "n/a",
    };
    json!({
        "status": "ok",
        "version": state.config.version,
        "uptime": state.uptime_ms(),
        "mode": "managed",
        "database": database,
        // No tools are offered to agents.
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
        Call::Health { probe } => openclaw_health(state, principal, probe).await,
        Call::Status => match style {
            Style::Camel => openclaw_status(state, principal).await,
            Style::Snake => goclaw_status(state, principal).await,
        },
        Call::ConfigGet => config_get(state),
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
        ..Default::default()
    };
    state
        .services
        .session
        .list_sessions(principal, request)
        .await
}

/// What the runner that answers tells: its configured models and the
/// caller's runs on it; `None` parts when it does not answer.
async fn runner_facts(
    state: &EdgeState,
    principal: &Principal,
) -> (Option<ListModelsResponse>, Option<RunnerStatsResponse>) {
    let runner = &state.services.runner;
    let (models, stats) = tokio::join!(
        runner.list_models(principal, ListModelsRequest {}),
        runner.runner_stats(principal, RunnerStatsRequest {}),
    );
    let note = |what: &str, err: &ServiceError| tracing::debug!(error = %err, "{what} unavailable");
    (
        models.inspect_err(|err| note("model list", err)).ok(),
        stats.inspect_err(|err| note("runner stats", err)).ok(),
    )
}

async fn openclaw_health(
    state: &EdgeState,
    principal: &Principal,
    probe: bool,
) -> Result<Value, ServiceError> {
    let started = std::time::Instant::now();
    let current = state.health.current();
    // Before the first refresh the snapshot is empty: take one now.
    let snapshot = if probe || current.version <= 1 {
        health::probe(state).await
    } else {
        current
    };
    let mut payload = snapshot.payload.clone();
    let sessions = match recent_sessions(state, principal, HEALTH_RECENT).await {
        Ok(list) => {
            let now = now_ms();
            let recent: Vec<Value> = list
                .sessions
                .iter()
                .map(|s| {
                    json!({
                        "key": s.session_key,
                        "updatedAt": s.updated_at_ms,
                        "age": (now - s.updated_at_ms).max(0),
                    })
                })
                .collect();
            json!({ "path": SESSIONS_PATH, "count": list.total, "recent": recent })
        }
        Err(err) => {
            payload["ok"] = json!(false);
            json!({ "path": SESSIONS_PATH, "count": null, "recent": [], "error": err.message })
        }
    };
    if let Some(agents) = payload["agents"].as_array_mut() {
        for agent in agents {
            agent["sessions"] = sessions.clone();
        }
    }
    payload["sessions"] = sessions;
    if !probe {
        // What this answer took (the snapshot's own probe time otherwise).
        payload["durationMs"] = json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
    }
    Ok(payload)
}

async fn openclaw_status(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let (sessions, (models, stats)) = tokio::join!(
        recent_sessions(state, principal, STATUS_RECENT),
        runner_facts(state, principal),
    );
    let sessions = sessions?;
    let recent: Vec<Value> = sessions
        .sessions
        .iter()
        .map(|s| json!({ "key": s.session_key, "updatedAt": s.updated_at_ms }))
        .collect();
    let agent = &state.config.default_agent_id;
    let model = models
        .as_ref()
        .and_then(|m| m.models.first())
        .map(|m| m.id.clone());
    let runs = stats.as_ref().map(|s| {
        json!({
            "active": s.active_runs,
            "runnerId": (!s.runner_id.is_empty()).then_some(&s.runner_id),
            "draining": s.draining,
        })
    });
    let snapshot = state.health.current();
    let mut status = json!({
        "runtimeVersion": state.config.version,
        "uptimeMs": state.uptime_ms(),
        "pid": std::process::id(),
        "heartbeat": {
            "defaultAgentId": agent,
            "agents": [{
                "agentId": agent,
                "enabled": false,
                "every": "disabled",
                "everyMs": null,
            }],
        },
        "channelSummary": [],
        "queuedSystemEvents": [],
        "degradedSecretOwners": [],
        "degradedPlugins": [],
        "sessions": {
            "paths": [SESSIONS_PATH],
            "count": sessions.total,
            "defaults": { "model": model, "contextTokens": null },
            "recent": recent,
            "byAgent": [],
        },
        "runs": runs,
    });
    if let Some(services) = snapshot.payload.get("services") {
        status["services"] = services.clone();
    }
    if let Some(event_loop) = snapshot.payload.get("eventLoop") {
        status["eventLoop"] = event_loop.clone();
    }
    Ok(status)
}

async fn goclaw_status(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let (sessions, (models, stats)) = tokio::join!(
        recent_sessions(state, principal, 1),
        runner_facts(state, principal),
    );
    let sessions = sessions?;
    let topic = crate::hub::run_topic(principal);
    let model = models
        .as_ref()
        .and_then(|m| m.models.first())
        .map(|m| m.id.clone())
        .unwrap_or_default();
    let running = stats.is_some_and(|s| s.active_runs > 0);
    Ok(json!({
        "agents": [{ "id": state.config.default_agent_id, "model": model, "isRunning": running }],
        "agentTotal": 1,
        "clients": state.hub.sockets_on(&topic),
        "sessions": sessions.total,
    }))
}

fn config_get(state: &EdgeState) -> Result<Value, ServiceError> {
    let Some(config) = &state.config.effective_config else {
        return Err(ServiceError::unavailable(
            "this process was started without a configuration snapshot",
        ));
    };
    Ok(json!({
        "path": null,
        "exists": false,
        "valid": true,
        "source": "flags and environment",
        "config": config,
        "resolved": config,
        "runtimeConfig": config,
        "issues": [],
        "warnings": [],
        "legacyIssues": [],
    }))
}

#[cfg(test)]
mod tests {
    use clawgate_proto::principal::SCOPE_READ;
    use serde_json::json;

    use super::*;
    use crate::methods::decl::parse_with;

    fn reader() -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: "operator".into(),
            scopes: vec![SCOPE_READ.into()],
            ..Default::default()
        }
    }

    fn error(
        method: &'static str,
        params: Value,
        parse: fn(&Request<'_>) -> Result<Box<dyn Job>, ServiceError>,
    ) -> String {
        match parse_with(method, &params, Style::Camel, &reader(), parse) {
            Ok(_) => panic!("{method} {params} parsed"),
            Err(err) => err.message,
        }
    }

    #[test]
    fn bad_params_are_refused() {
        assert_eq!(
            error("health", json!({"probe": "yes"}), parse_openclaw_health),
            "invalid health params: at /probe: must be boolean"
        );
        assert!(error("health", json!({"deep": true}), parse_openclaw_health).contains("'deep'"));
        assert!(
            error("config.get", json!({"x": 1}), parse_config_get)
                .starts_with("invalid config.get params")
        );
        let ok = |params: Value| {
            parse_with(
                "health",
                &params,
                Style::Camel,
                &reader(),
                parse_openclaw_health,
            )
            .is_ok()
        };
        assert!(ok(json!({})) && ok(json!({"probe": true})));
    }
}
