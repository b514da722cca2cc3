//! OpenClaw methods: params schemas and the handlers that call the services
//! (§5.1, §5.2, §5.4); pairing and device tokens are in [`super::pairing`], API
//! keys in [`crate::api_keys`], tenants and users in [`crate::tenants`], tenant
//! secrets in [`crate::secrets`], authorization in [`super::authz`].
//!
//! Invariants: every params
//! object is closed and errors read `invalid <method> params: …`; session keys
//! are canonicalized on the way in and returned canonical; service errors are
//! mapped to wire codes only through `ErrorCode::openclaw_code`.

use std::sync::Arc;

use clawgate_proto::principal::SCOPE_ADMIN;
use clawgate_proto::runner::{AbortRunRequest, RunState, RunnerApi, StartRunRequest, StartStatus};
use clawgate_proto::session::{
    ListMessagesRequest, ListSessionsRequest, MessageStatus, SessionApi,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::pairing;
use crate::config::{EdgeConfig, MAX_RESPONSE_BYTES};
use crate::frames::ErrorShape;
use crate::notify::Notice;
use crate::params::Obj;
use crate::server::EdgeState;
use crate::session_key;
use crate::{api_keys, secrets, tenants};

/// Transcript rows larger than this are replaced by a placeholder in history.
const MAX_HISTORY_MESSAGE_BYTES: usize = 128 * 1024;

/// A validated call, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Status,
    ChatSend(StartRunRequest),
    ChatHistory {
        session_key: String,
        limit: u32,
        max_chars: Option<usize>,
    },
    ChatAbort {
        session_key: String,
        run_id: String,
    },
    SessionsList {
        limit: u32,
        agent_id: String,
    },
    /// clawgate extension: a run's `agent` events from its replay history.
    ChatReplay(super::replay::ReplayCall),
    Pairing(pairing::Call),
    ApiKeys(api_keys::Call),
    /// clawgate extension: tenants and their users.
    Tenants(tenants::Call),
    /// clawgate extension: tenant secrets.
    Secrets(secrets::Call),
}

impl Call {
    /// The run whose events must wait until this call is answered.
    pub fn holds_run(&self) -> Option<&str> {
        match self {
            Call::ChatSend(request) => Some(&request.idempotency_key),
            _ => None,
        }
    }
}

/// An answer: payload, error, or both (`chat.send` of a failed run).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub payload: Option<Value>,
    pub error: Option<ErrorShape>,
}

impl Reply {
    pub fn ok(payload: Value) -> Self {
        Self {
            payload: Some(payload),
            error: None,
        }
    }

    pub fn err(err: &ServiceError) -> Self {
        Self {
            payload: None,
            error: Some(ErrorShape::openclaw(err)),
        }
    }

    pub fn from_result(result: Result<Value, ServiceError>) -> Self {
        match result {
            Ok(payload) => Self::ok(payload),
            Err(err) => Self::err(&err),
        }
    }
}

fn invalid_params(method: &str, why: String) -> ServiceError {
    ServiceError::invalid(format!("invalid {method} params: {why}"))
}

fn canonical(raw: &str, config: &EdgeConfig) -> Result<String, ServiceError> {
    session_key::canonicalize(raw, &config.default_agent_id, &config.main_key)
        .map_err(|err| ServiceError::invalid(err.to_string()))
}

/// Strips control characters other than newline, carriage return and tab.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect()
}

/// Validates `params` of `method`. `Ok(None)`: the method is not implemented.
pub fn parse(
    method: &str,
    params: &Value,
    principal: &Principal,
    config: &EdgeConfig,
) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| invalid_params(method, why);
    let call = match method {
        "status" => {
            let obj = Obj::new(params, "").map_err(bad)?;
            obj.closed(&["includeChannelSummary"]).map_err(bad)?;
            obj.opt_bool("includeChannelSummary").map_err(bad)?;
            Call::Status
        }
        "chat.send" => parse_chat_send(params, principal, config)?,
        "chat.history" => {
            let obj = Obj::new(params, "").map_err(bad)?;
            obj.closed(&["sessionKey", "limit", "maxChars"])
                .map_err(bad)?;
            let key = obj.req_str_len("sessionKey", 512).map_err(bad)?;
            let limit = obj.opt_int("limit", 1, 1000).map_err(bad)?.unwrap_or(200);
            let max_chars = obj.opt_int("maxChars", 1, 500_000).map_err(bad)?;
            Call::ChatHistory {
                session_key: canonical(key, config)?,
                limit: u32::try_from(limit).unwrap_or(200),
                max_chars: max_chars.and_then(|n| usize::try_from(n).ok()),
            }
        }
        "chat.replay" => Call::ChatReplay(super::replay::parse(params)?),
        "chat.abort" => {
            let obj = Obj::new(params, "").map_err(bad)?;
            obj.closed(&["sessionKey", "runId"]).map_err(bad)?;
            let key = obj.req_str_len("sessionKey", 512).map_err(bad)?;
            let run_id = obj.opt_str("runId").map_err(bad)?.unwrap_or_default();
            Call::ChatAbort {
                session_key: canonical(key, config)?,
                run_id: run_id.to_owned(),
            }
        }
        "sessions.list" => {
            let obj = Obj::new(params, "").map_err(bad)?;
            obj.closed(&[
                "limit",
                "activeMinutes",
                "includeGlobal",
                "includeUnknown",
                "includeDerivedTitles",
                "includeLastMessage",
                "label",
                "spawnedBy",
                "agentId",
                "search",
            ])
            .map_err(bad)?;
            let limit = obj
                .opt_int("limit", 1, i64::MAX)
                .map_err(bad)?
                .unwrap_or(100);
            obj.opt_int("activeMinutes", 1, i64::MAX).map_err(bad)?;
            for flag in [
                "includeGlobal",
                "includeUnknown",
                "includeDerivedTitles",
                "includeLastMessage",
            ] {
                obj.opt_bool(flag).map_err(bad)?;
            }
            for text in ["label", "spawnedBy", "search"] {
                obj.opt_str(text).map_err(bad)?;
            }
            let agent_id = obj
                .opt_str("agentId")
                .map_err(bad)?
                .map(|id| session_key::normalize_agent_id(id, &config.default_agent_id))
                .unwrap_or_default();
            Call::SessionsList {
                limit: u32::try_from(limit.min(1000)).unwrap_or(1000),
                agent_id,
            }
        }
        _ => {
            if let Some(call) = pairing::parse(method, params)? {
                Call::Pairing(call)
            } else if let Some(call) = api_keys::parse(method, params, api_keys::Style::Camel)? {
                Call::ApiKeys(call)
            } else if let Some(call) = tenants::parse(method, params, api_keys::Style::Camel)? {
                Call::Tenants(call)
            } else if let Some(call) = secrets::parse(method, params, api_keys::Style::Camel)? {
                Call::Secrets(call)
            } else {
                return Ok(None);
            }
        }
    };
    Ok(Some(call))
}

const CHAT_SEND_KEYS: [&str; 14] = [
    "sessionKey",
    "message",
    "idempotencyKey",
    "sessionId",
    "thinking",
    "deliver",
    "attachments",
    "timeoutMs",
    "originatingChannel",
    "originatingTo",
    "originatingAccountId",
    "originatingThreadId",
    "systemInputProvenance",
    "systemProvenanceReceipt",
];

fn parse_chat_send(
    params: &Value,
    principal: &Principal,
    config: &EdgeConfig,
) -> Result<Call, ServiceError> {
    let bad = |why: String| invalid_params("chat.send", why);
    let obj = Obj::new(params, "").map_err(bad)?;
    obj.closed(&CHAT_SEND_KEYS).map_err(bad)?;
    let key = obj.req_str_len("sessionKey", 512).map_err(bad)?;
    let message = obj.req_str("message").map_err(bad)?;
    let idempotency_key = obj.req_nonempty_str("idempotencyKey").map_err(bad)?;
    obj.opt_str("sessionId").map_err(bad)?;
    obj.opt_str("thinking").map_err(bad)?;
    obj.opt_bool("deliver").map_err(bad)?;
    let attachments = obj.opt_array("attachments").map_err(bad)?;
    let timeout_ms = obj
        .opt_int("timeoutMs", 0, i64::from(u32::MAX))
        .map_err(bad)?;
    let mut privileged = false;
    for field in [
        "originatingChannel",
        "originatingTo",
        "originatingAccountId",
        "originatingThreadId",
    ] {
        privileged |= obj.opt_str(field).map_err(bad)?.is_some();
    }
    privileged |= obj.has("systemInputProvenance") || obj.has("systemProvenanceReceipt");
    if privileged && !principal.has_scope(SCOPE_ADMIN) {
        return Err(ServiceError::invalid(
            "originating route and system provenance fields require operator.admin",
        ));
    }
    if attachments.is_some_and(|list| !list.is_empty()) {
        return Err(ServiceError::invalid("attachments are not supported"));
    }
    let message = sanitize(message);
    if message.trim().is_empty() {
        return Err(ServiceError::invalid("message or attachment required"));
    }
    let session_key = canonical(key, config)?;
    let agent_id = session_key::agent_of(&session_key)
        .unwrap_or(&config.default_agent_id)
        .to_owned();
    Ok(Call::ChatSend(StartRunRequest {
        session_key,
        agent_id,
        message,
        idempotency_key: idempotency_key.to_owned(),
        timeout_ms: timeout_ms.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    }))
}

/// The `health` payload (answered by the edge itself, without service calls).
pub fn health(state: &EdgeState) -> Value {
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

/// Runs a validated call; returns the answer and what to publish once it is sent.
pub async fn run(call: Call, state: Arc<EdgeState>, principal: Principal) -> (Reply, Vec<Notice>) {
    let result = match call {
        Call::Pairing(call) => {
            let (result, notices) = pairing::run(call, &state, &principal).await;
            return (Reply::from_result(result), notices);
        }
        Call::ApiKeys(call) => {
            let style = api_keys::Style::Camel;
            api_keys::run(call, &state.services.auth, &principal, style).await
        }
        Call::Tenants(call) => {
            let style = api_keys::Style::Camel;
            let (result, notices) =
                tenants::run(call, &state.services.auth, &principal, style).await;
            return (Reply::from_result(result), notices);
        }
        Call::Secrets(call) => {
            let style = api_keys::Style::Camel;
            secrets::run(call, &state.services.auth, &principal, style).await
        }
        Call::Status => status(&state, &principal).await,
        Call::ChatSend(request) => {
            return (chat_send(&state, &principal, request).await, Vec::new());
        }
        Call::ChatHistory {
            session_key,
            limit,
            max_chars,
        } => chat_history(&state, &principal, session_key, limit, max_chars).await,
        Call::ChatAbort {
            session_key,
            run_id,
        } => {
            let request = AbortRunRequest {
                session_key,
                run_id,
                stop_reason: "rpc".into(),
            };
            state
                .services
                .runner
                .abort_run(&principal, request)
                .await
                .map(|res| json!({ "ok": true, "aborted": res.aborted, "runIds": res.run_ids }))
        }
        Call::SessionsList { limit, agent_id } => {
            sessions_list(&state, &principal, limit, agent_id).await
        }
        Call::ChatReplay(call) => super::replay::chat_replay(&state, &principal, call).await,
    };
    (Reply::from_result(result), Vec::new())
}

async fn chat_send(state: &EdgeState, principal: &Principal, request: StartRunRequest) -> Reply {
    let response = match state.services.runner.start_run(principal, request).await {
        Ok(response) => response,
        Err(err) => return Reply::err(&err),
    };
    let run_id = response.run_id;
    match StartStatus::try_from(response.status) {
        Ok(StartStatus::Started) => Reply::ok(json!({ "runId": run_id, "status": "started" })),
        Ok(StartStatus::InFlight) => Reply::ok(json!({ "runId": run_id, "status": "in_flight" })),
        Ok(StartStatus::StopCommand) => Reply::ok(json!({
            "ok": true, "aborted": response.aborted, "runIds": response.aborted_run_ids,
        })),
        Ok(StartStatus::Done) => {
            let run = response.run.unwrap_or_default();
            if run.state == RunState::Failed as i32 {
                let summary = if run.error.is_empty() {
                    "run failed".to_owned()
                } else {
                    run.error
                };
                let err =
                    ServiceError::new(ErrorCode::Unavailable, summary.clone()).not_retryable();
                Reply {
                    payload: Some(
                        json!({ "runId": run_id, "status": "error", "summary": summary }),
                    ),
                    error: Some(ErrorShape::openclaw(&err)),
                }
            } else {
                Reply::ok(json!({ "runId": run_id, "status": "ok" }))
            }
        }
        Ok(StartStatus::Unspecified) | Err(_) => {
            Reply::err(&ServiceError::internal("runner returned no start status"))
        }
    }
}

async fn status(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let request = ListSessionsRequest {
        limit: 10,
        offset: 0,
        agent_id: String::new(),
    };
    let sessions = state
        .services
        .session
        .list_sessions(principal, request)
        .await?;
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

async fn chat_history(
    state: &EdgeState,
    principal: &Principal,
    session_key: String,
    limit: u32,
    max_chars: Option<usize>,
) -> Result<Value, ServiceError> {
    let request = ListMessagesRequest {
        session_key: session_key.clone(),
        limit,
    };
    let rows = match state
        .services
        .session
        .list_messages(principal, request)
        .await
    {
        Ok(response) => response.messages,
        Err(err) if err.code == ErrorCode::NotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    let mut budget = MAX_RESPONSE_BYTES;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let mut text = row.content.clone();
        if let Some(max) = max_chars
            && let Some((cut, _)) = text.char_indices().nth(max)
        {
            text.truncate(cut);
        }
        if text.len() > MAX_HISTORY_MESSAGE_BYTES {
            text = "[message omitted: too large]".to_owned();
        }
        if text.len() + 256 > budget {
            break;
        }
        budget -= text.len() + 256;
        let role = if row.role == "tool" {
            "toolResult"
        } else {
            row.role.as_str()
        };
        let mut message = json!({
            "role": role,
            "content": [{ "type": "text", "text": text }],
            "timestamp": row.created_at_ms,
        });
        if !row.run_id.is_empty() {
            message["runId"] = json!(row.run_id);
        }
        if row.status == MessageStatus::Aborted as i32 {
            message["stopReason"] = json!("aborted");
        } else if row.status == MessageStatus::Error as i32 {
            message["stopReason"] = json!("error");
            message["errorMessage"] = json!(row.error);
        }
        messages.push(message);
    }
    messages.reverse();
    Ok(json!({ "sessionKey": session_key, "messages": messages }))
}

async fn sessions_list(
    state: &EdgeState,
    principal: &Principal,
    limit: u32,
    agent_id: String,
) -> Result<Value, ServiceError> {
    let request = ListSessionsRequest {
        limit,
        offset: 0,
        agent_id,
    };
    let response = state
        .services
        .session
        .list_sessions(principal, request)
        .await?;
    let rows: Vec<Value> = response
        .sessions
        .iter()
        .map(|s| {
            let mut row = json!({
                "key": s.session_key,
                "kind": session_key::kind_of(&s.session_key),
                "updatedAt": s.updated_at_ms,
                "sessionId": s.session_key,
                "hasActiveRun": false,
            });
            // Admins list every user's sessions: say whose each one is.
            if !s.user_id.is_empty() {
                row["userId"] = json!(s.user_id);
            }
            if !s.label.is_empty() {
                row["label"] = json!(s.label);
                row["displayName"] = json!(s.label);
            }
            if !s.last_message_preview.is_empty() {
                row["lastMessagePreview"] = json!(s.last_message_preview);
            }
            row
        })
        .collect();
    let count = rows.len() as u64;
    Ok(json!({
        "ts": now_ms(),
        "path": "",
        "count": count,
        "totalCount": response.total,
        "limitApplied": limit,
        "hasMore": response.total > count,
        "defaults": {
            "modelProvider": null, "model": null, "contextTokens": null,
            "thinkingLevels": [], "thinkingOptions": [], "thinkingDefault": null,
        },
        "sessions": rows,
    }))
}

#[cfg(test)]
#[path = "methods_tests.rs"]
mod tests;
