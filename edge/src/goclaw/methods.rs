//! goclaw methods: role requirements (goclaw notes §1.3), params, handlers and the
//! shapes of `chat.send`'s final answer (§2.2, §2.5); pairing is in
//! [`super::pairing`], API keys in [`crate::api_keys`], tenants and users in
//! [`crate::tenants`], tenant secrets in [`crate::secrets`].
//!
//! Invariants: roles rank `owner > admin > operator > viewer`; an unknown method
//! is `INVALID_REQUEST "unknown method: X"`; a role
//! too low is `UNAUTHORIZED "<method> requires <role> role"`; `health` reports only
//! the caller's own connection (goclaw lists every client, a leak not copied);
//! errors map to wire codes only through `ErrorCode::goclaw_code`.

use std::sync::Arc;

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, run_event};
use clawgate_proto::runner::{
    AbortRunRequest, GetRunRequest, RunInfo, RunState, RunnerApi, StartRunRequest,
};
use clawgate_proto::session::{
    ListMessagesRequest, ListSessionsRequest, MessageStatus, SessionApi,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};

use super::pairing;
use super::projection::usage_json;
use super::rfc3339;
use crate::config::EdgeConfig;
use crate::notify::Notice;
use crate::params::Obj;
use crate::server::EdgeState;
use crate::session_key;
use crate::{api_keys, secrets, tenants};

/// Rank of a goclaw role; higher includes lower.
fn rank(role: &str) -> u8 {
    match role {
        "owner" => 4,
        "admin" => 3,
        "operator" => 2,
        "viewer" => 1,
        _ => 0,
    }
}

/// The role a known method needs (goclaw's `permissions.MethodRole`); `None` for
/// unknown methods. goclaw's public methods need a connected socket, so any
/// role, here `viewer`.
pub fn required_role(method: &str) -> Option<&'static str> {
    match method {
        "connect" | "health" | "status" | "browser.pairing.status" => Some("viewer"),
        "chat.history" | "sessions.list" => Some("viewer"),
        // clawgate extensions; the auth service narrows what each caller sees
        // and narrows tenant changes to owners.
        "tenants.list" | "tenants.get" | "tenants.users.list" => Some("viewer"),
        "tenants.create"
        | "tenants.update"
        | "tenants.users.add"
        | "tenants.users.remove"
        | "secrets.set"
        | "secrets.list"
        | "secrets.delete" => Some("admin"),
        "chat.send" | "chat.abort" | "device.pair.request" => Some("operator"),
        "device.pair.approve"
        | "device.pair.deny"
        | "device.pair.list"
        | "device.pair.revoke"
        | "api_keys.create"
        | "api_keys.list"
        | "api_keys.revoke" => Some("admin"),
        _ => None,
    }
}

/// Whether `role` is at least `admin` (sees pairing events of its tenant).
pub fn is_admin(role: &str) -> bool {
    rank(role) >= rank("admin")
}

/// Checks that `method` exists and `principal` may call it.
pub fn authorize(principal: &Principal, method: &str) -> Result<(), ServiceError> {
    let Some(role) = required_role(method) else {
        return Err(ServiceError::invalid(format!("unknown method: {method}")));
    };
    if rank(&principal.role) < rank(role) {
        return Err(ServiceError::unauthorized(format!(
            "{method} requires {role} role"
        )));
    }
    Ok(())
}

/// A validated call other than `chat.send`.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Status,
    ChatHistory {
        session_key: Option<String>,
        limit: u32,
    },
    ChatAbort {
        session_key: Option<String>,
        run_id: String,
    },
    SessionsList {
        limit: u32,
        offset: u32,
        agent_id: String,
    },
    Pairing(pairing::Call),
    ApiKeys(api_keys::Call),
    Tenants(tenants::Call),
    Secrets(secrets::Call),
}

fn bad(method: &str) -> impl Fn(String) -> ServiceError + '_ {
    move |why| ServiceError::invalid(format!("invalid {method} params: {why}"))
}

fn canonical_opt(raw: Option<&str>, config: &EdgeConfig) -> Result<Option<String>, ServiceError> {
    match raw.map(str::trim).filter(|key| !key.is_empty()) {
        None => Ok(None),
        Some(key) => session_key::canonicalize(key, &config.default_agent_id, &config.main_key)
            .map(Some)
            .map_err(|err| ServiceError::invalid(err.to_string())),
    }
}

/// Validates `chat.send` params into the run to start; the run id is the
/// idempotency key, or a fresh one.
pub fn parse_chat_send(
    params: &Value,
    config: &EdgeConfig,
) -> Result<StartRunRequest, ServiceError> {
    let bad = bad("chat.send");
    let obj = Obj::new(params, "").map_err(&bad)?;
    let message = obj.req_str("message").map_err(&bad)?;
    let agent = obj.opt_str("agentId").map_err(&bad)?;
    let key = obj.opt_str("sessionKey").map_err(&bad)?;
    let idempotency_key = obj.opt_str("idempotencyKey").map_err(&bad)?;
    obj.opt_bool("stream").map_err(&bad)?;
    if obj
        .raw("media")
        .is_some_and(|media| media.as_array().is_none_or(|list| !list.is_empty()))
    {
        return Err(ServiceError::invalid("media is not supported"));
    }
    if message.trim().is_empty() {
        return Err(ServiceError::invalid("message is required"));
    }
    let session_key = canonical_opt(key, config)?;
    let agent_id = match (agent, &session_key) {
        (Some(agent), _) if !agent.trim().is_empty() => {
            session_key::normalize_agent_id(agent, &config.default_agent_id)
        }
        (_, Some(key)) => session_key::agent_of(key)
            .unwrap_or(&config.default_agent_id)
            .to_owned(),
        _ => config.default_agent_id.clone(),
    };
    let session_key = session_key
        .unwrap_or_else(|| format!("agent:{agent_id}:ws:direct:{}", uuid::Uuid::new_v4()));
    let idempotency_key = idempotency_key
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(StartRunRequest {
        session_key,
        agent_id,
        message: message.to_owned(),
        idempotency_key,
        timeout_ms: 0,
    })
}

/// Validates params of the other methods. `Ok(None)` for methods handled
/// elsewhere (`health`, `chat.send`, `connect`).
pub fn parse(
    method: &str,
    params: &Value,
    config: &EdgeConfig,
) -> Result<Option<Call>, ServiceError> {
    if let Some(call) = pairing::parse(method, params)? {
        return Ok(Some(Call::Pairing(call)));
    }
    if let Some(call) = api_keys::parse(method, params, api_keys::Style::Snake)? {
        return Ok(Some(Call::ApiKeys(call)));
    }
    if let Some(call) = tenants::parse(method, params, api_keys::Style::Snake)? {
        return Ok(Some(Call::Tenants(call)));
    }
    if let Some(call) = secrets::parse(method, params, api_keys::Style::Snake)? {
        return Ok(Some(Call::Secrets(call)));
    }
    let bad = bad(method);
    let obj = Obj::new(params, "").map_err(&bad)?;
    let call = match method {
        "status" => Call::Status,
        "chat.history" => {
            obj.opt_str("agentId").map_err(&bad)?;
            let limit = obj.opt_int("limit", 1, 1000).map_err(&bad)?.unwrap_or(200);
            Call::ChatHistory {
                session_key: canonical_opt(obj.opt_str("sessionKey").map_err(&bad)?, config)?,
                limit: u32::try_from(limit).unwrap_or(200),
            }
        }
        "chat.abort" => Call::ChatAbort {
            session_key: canonical_opt(obj.opt_str("sessionKey").map_err(&bad)?, config)?,
            run_id: obj
                .opt_str("runId")
                .map_err(&bad)?
                .unwrap_or_default()
                .to_owned(),
        },
        "sessions.list" => {
            obj.opt_str("channel").map_err(&bad)?;
            let limit = obj.opt_int("limit", 0, 1000).map_err(&bad)?.unwrap_or(20);
            let offset = obj
                .opt_int("offset", 0, i64::from(u32::MAX))
                .map_err(&bad)?
                .unwrap_or(0);
            let agent_id = obj
                .opt_str("agentId")
                .map_err(&bad)?
                .map(|id| session_key::normalize_agent_id(id, &config.default_agent_id))
                .unwrap_or_default();
            Call::SessionsList {
                limit: u32::try_from(if limit == 0 { 20 } else { limit }).unwrap_or(20),
                offset: u32::try_from(offset).unwrap_or(0),
                agent_id,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

/// The `health` payload: only this connection is listed.
pub fn health(
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

/// Runs a validated call; returns the answer and what to publish once it is sent.
pub async fn run(
    call: Call,
    state: Arc<EdgeState>,
    principal: Principal,
) -> (Result<Value, ServiceError>, Vec<Notice>) {
    match call {
        Call::Pairing(call) => pairing::run(call, &state, &principal).await,
        Call::ApiKeys(call) => {
            let style = api_keys::Style::Snake;
            let result = api_keys::run(call, &state.services.auth, &principal, style).await;
            (result, Vec::new())
        }
        Call::Tenants(call) => {
            let style = api_keys::Style::Snake;
            tenants::run(call, &state.services.auth, &principal, style).await
        }
        Call::Secrets(call) => {
            let style = api_keys::Style::Snake;
            let result = secrets::run(call, &state.services.auth, &principal, style).await;
            (result, Vec::new())
        }
        call => (run_session_call(call, &state, &principal).await, Vec::new()),
    }
}

async fn run_session_call(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
) -> Result<Value, ServiceError> {
    let services = &state.services;
    match call {
        Call::Pairing(_) | Call::ApiKeys(_) | Call::Tenants(_) | Call::Secrets(_) => {
            Err(ServiceError::internal("not a session call"))
        }
        Call::Status => {
            let request = ListSessionsRequest {
                limit: 1,
                offset: 0,
                agent_id: String::new(),
            };
            let sessions = services.session.list_sessions(principal, request).await?;
            let topic = crate::hub::run_topic(principal);
            Ok(json!({
                "agents": [{ "id": state.config.default_agent_id, "model": "", "isRunning": false }],
                "agentTotal": 1,
                "clients": state.hub.sockets_on(&topic),
                "sessions": sessions.total,
            }))
        }
        Call::ChatHistory {
            session_key: None, ..
        } => Ok(json!({ "messages": [] })),
        Call::ChatHistory {
            session_key: Some(session_key),
            limit,
        } => {
            let request = ListMessagesRequest { session_key, limit };
            let rows = match services.session.list_messages(principal, request).await {
                Ok(response) => response.messages,
                Err(err) if err.code == ErrorCode::NotFound => Vec::new(),
                Err(err) => return Err(err),
            };
            let messages: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "id": row.id,
                        "role": row.role,
                        "content": row.content,
                        "run_id": row.run_id,
                        "is_error": row.status == MessageStatus::Error as i32,
                        "created_at": rfc3339(row.created_at_ms),
                    })
                })
                .collect();
            Ok(json!({ "messages": messages }))
        }
        Call::ChatAbort {
            session_key,
            run_id,
        } => {
            let session_key = match session_key {
                Some(key) => key,
                None if !run_id.is_empty() => {
                    let run = services
                        .runner
                        .get_run(
                            principal,
                            GetRunRequest {
                                run_id: run_id.clone(),
                            },
                        )
                        .await?;
                    run.session_key
                }
                None => return Err(ServiceError::invalid("sessionKey is required")),
            };
            let request = AbortRunRequest {
                session_key,
                run_id,
                stop_reason: "rpc".into(),
            };
            let res = services.runner.abort_run(principal, request).await?;
            Ok(json!({
                "ok": true, "aborted": res.aborted, "stopped": res.aborted, "forced": false,
                "alreadyAborting": false, "notFound": !res.aborted, "unauthorized": false,
                "runIds": res.run_ids,
            }))
        }
        Call::SessionsList {
            limit,
            offset,
            agent_id,
        } => {
            let request = ListSessionsRequest {
                limit,
                offset,
                agent_id,
            };
            let response = services.session.list_sessions(principal, request).await?;
            let sessions: Vec<Value> = response
                .sessions
                .iter()
                .map(|s| {
                    json!({
                        "key": s.session_key,
                        "messageCount": s.message_count,
                        "created": rfc3339(s.created_at_ms),
                        "updated": rfc3339(s.updated_at_ms),
                        "label": s.label,
                        // goclaw's own field name, and the snake_case one of
                        // clawgate's other goclaw answers (admins list every
                        // user's sessions).
                        "userID": s.user_id,
                        "user_id": s.user_id,
                        "agentName": s.agent_id,
                    })
                })
                .collect();
            Ok(
                json!({ "sessions": sessions, "total": response.total, "limit": limit, "offset": offset }),
            )
        }
    }
}

/// The code a failed run is reported with.
fn run_error(kind: &str, message: &str) -> ServiceError {
    let code = match kind {
        "timeout" => ErrorCode::Timeout,
        "rate_limit" => ErrorCode::ResourceExhausted,
        _ => ErrorCode::Internal,
    };
    let message = if message.is_empty() {
        "run failed"
    } else {
        message
    };
    ServiceError::new(code, message).not_retryable()
}

/// `chat.send`'s answer from the run's terminal event.
pub fn final_from_event(event: &RunEvent) -> Result<Value, ServiceError> {
    match &event.kind {
        Some(run_event::Kind::End(end)) if end.outcome == RunOutcome::Aborted as i32 => {
            Ok(json!({ "runId": event.run_id, "cancelled": true, "content": end.text }))
        }
        Some(run_event::Kind::End(end)) => Ok(json!({
            "runId": event.run_id, "content": end.text, "usage": usage_json(end.usage.as_ref()),
        })),
        Some(run_event::Kind::Error(error)) => Err(run_error(&error.kind, &error.message)),
        _ => Err(ServiceError::internal("not a terminal event")),
    }
}

/// `chat.send`'s answer from a finished run's info; `None` while it runs.
pub fn final_from_run(run: &RunInfo) -> Option<Result<Value, ServiceError>> {
    match RunState::try_from(run.state) {
        Ok(RunState::Completed) => Some(Ok(json!({
            "runId": run.run_id, "content": run.text, "usage": usage_json(run.usage.as_ref()),
        }))),
        Ok(RunState::Aborted) => Some(Ok(
            json!({ "runId": run.run_id, "cancelled": true, "content": run.text }),
        )),
        Ok(RunState::Failed) => Some(Err(run_error("", &run.error))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_role(role: &str) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: role.into(),
            ..Default::default()
        }
    }

    #[test]
    fn roles_and_unknown_methods() {
        let err = authorize(&with_role("viewer"), "chat.send").unwrap_err();
        assert_eq!(err.message, "chat.send requires operator role");
        assert_eq!(err.code.goclaw_code(), "UNAUTHORIZED");
        assert!(authorize(&with_role("viewer"), "chat.history").is_ok());
        assert!(authorize(&with_role("admin"), "chat.send").is_ok());
        for method in ["tenants.list", "tenants.get", "tenants.users.list"] {
            assert!(authorize(&with_role("viewer"), method).is_ok(), "{method}");
        }
        for method in [
            "tenants.create",
            "tenants.update",
            "tenants.users.add",
            "tenants.users.remove",
            "secrets.set",
            "secrets.list",
            "secrets.delete",
        ] {
            let err = authorize(&with_role("operator"), method).unwrap_err();
            assert_eq!(err.message, format!("{method} requires admin role"));
            assert!(authorize(&with_role("admin"), method).is_ok(), "{method}");
        }
        let err = authorize(&with_role("owner"), "teams.list").unwrap_err();
        assert_eq!(err.message, "unknown method: teams.list");
        assert_eq!(err.code.goclaw_code(), "INVALID_REQUEST");
    }

    #[test]
    fn chat_send_defaults() {
        let config = EdgeConfig::default();
        let req = parse_chat_send(&json!({"message": "hi"}), &config).expect("valid");
        assert!(
            req.session_key.starts_with("agent:main:ws:direct:"),
            "{}",
            req.session_key
        );
        assert_eq!(req.agent_id, "main");
        assert!(!req.idempotency_key.is_empty());
        let req =
            parse_chat_send(&json!({"message": "hi", "agentId": "Ops"}), &config).expect("valid");
        assert!(req.session_key.starts_with("agent:ops:ws:direct:"));
        let req = parse_chat_send(
            &json!({"message": "hi", "sessionKey": "agent:sales:x", "idempotencyKey": "k"}),
            &config,
        )
        .expect("valid");
        assert_eq!(
            (req.agent_id.as_str(), req.idempotency_key.as_str()),
            ("sales", "k")
        );
        assert!(parse_chat_send(&json!({}), &config).is_err());
        assert!(parse_chat_send(&json!({"message": 1}), &config).is_err());
    }

    #[test]
    fn run_results() {
        let run = RunInfo {
            run_id: "r".into(),
            state: RunState::Failed as i32,
            error: "boom".into(),
            ..Default::default()
        };
        let err = final_from_run(&run).and_then(Result::err).expect("failed");
        assert_eq!(
            (err.code.goclaw_code(), err.message.as_str()),
            ("INTERNAL", "boom")
        );
        let running = RunInfo {
            state: RunState::Running as i32,
            ..Default::default()
        };
        assert!(final_from_run(&running).is_none());
    }
}
