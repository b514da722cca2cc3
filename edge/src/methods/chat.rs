//! Chat: `chat.send` (its params; each dialect answers it its own way),
//! `chat.history` and `chat.abort`.
//!
//! Params: OpenClaw objects are closed and its session keys required;
//! goclaw objects are lenient, a missing session key means a new session for
//! `chat.send` and none for the others. Session keys are canonicalized on the
//! way in and returned canonical. Answers: OpenClaw's transcript is
//! display-normalized (content parts, `toolResult`, stop reasons) and bounded
//! in bytes; goclaw's lists the rows as stored.
//!
//! Invariants: a `chat.send` message is sanitized (no control characters but
//! newline, carriage return and tab) and never empty; originating-route and
//! system-provenance fields need `operator.admin`; attachments and media are
//! refused with a clear error.

use clawgate_proto::principal::SCOPE_ADMIN;
use clawgate_proto::runner::{AbortRunRequest, GetRunRequest, RunnerApi, StartRunRequest};
use clawgate_proto::session::{GetSessionRequest, ListMessagesRequest, MessageStatus, SessionApi};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Handler, Method, Outcome, Request, Role, Runs, Scope, Versions, job};
use super::session_row;
use crate::config::{EdgeConfig, MAX_RESPONSE_BYTES};
use crate::params::Style;
use crate::session_key;
use crate::state::EdgeState;
use crate::time::rfc3339;

pub const METHODS: &[Method] = &[
    Method {
        name: "chat.send",
        openclaw: Some(Scope::Write),
        goclaw: Some(Role::Operator),
        handler: Handler::ChatSend(parse_send),
        versions: Versions::ALL,
    },
    Method::call("chat.history", Some(Scope::Read), Some(Role::Viewer), |r| {
        parse_history(r).map(job)
    }),
    Method::call(
        "chat.abort",
        Some(Scope::Write),
        Some(Role::Operator),
        |r| parse_abort(r).map(job),
    ),
];

/// A validated call of this family (`chat.send` is answered by the dialect).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    History {
        /// `None`: goclaw named no session, which has no history.
        session_key: Option<String>,
        limit: u32,
        max_chars: Option<usize>,
        /// Whether the answer carries OpenClaw v4's fields.
        v4: bool,
    },
    Abort {
        /// `None`: goclaw named only the run, whose session is looked up.
        session_key: Option<String>,
        run_id: String,
    },
}

fn canonical(raw: &str, config: &EdgeConfig) -> Result<String, ServiceError> {
    session_key::canonicalize(raw, &config.default_agent_id, &config.main_key)
        .map_err(|err| ServiceError::invalid(err.to_string()))
}

/// A goclaw session key, when one is named.
fn canonical_opt(raw: Option<&str>, config: &EdgeConfig) -> Result<Option<String>, ServiceError> {
    match raw.map(str::trim).filter(|key| !key.is_empty()) {
        None => Ok(None),
        Some(key) => canonical(key, config).map(Some),
    }
}

/// Strips control characters other than newline, carriage return and tab.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect()
}

const OPENCLAW_SEND_KEYS: [&str; 14] = [
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

/// `chat.send` params into the run to start; the run id is the idempotency key.
pub fn parse_send(request: &Request<'_>) -> Result<StartRunRequest, ServiceError> {
    match request.style {
        Style::Camel => parse_openclaw_send(request),
        Style::Snake => parse_goclaw_send(request),
    }
}

fn parse_openclaw_send(request: &Request<'_>) -> Result<StartRunRequest, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let (principal, config) = (request.principal, request.config);
    let obj = request.closed(&OPENCLAW_SEND_KEYS)?;
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
    Ok(StartRunRequest {
        session_key,
        agent_id,
        message,
        idempotency_key: idempotency_key.to_owned(),
        timeout_ms: timeout_ms.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    })
}

/// goclaw `chat.send`: the session is new unless named, the run id a fresh
/// one unless an idempotency key is given.
fn parse_goclaw_send(request: &Request<'_>) -> Result<StartRunRequest, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let obj = request.obj()?;
    let message = obj.req_str("message").map_err(bad)?;
    let agent = obj.opt_str("agentId").map_err(bad)?;
    let key = obj.opt_str("sessionKey").map_err(bad)?;
    let idempotency_key = obj.opt_str("idempotencyKey").map_err(bad)?;
    obj.opt_bool("stream").map_err(bad)?;
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

fn parse_history(request: &Request<'_>) -> Result<Call, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let keys: &[&str] = if request.v4() {
        &["sessionKey", "limit", "maxChars", "agentId"]
    } else {
        &["sessionKey", "limit", "maxChars"]
    };
    let obj = request.closed(keys)?;
    let call = match request.style {
        Style::Camel => {
            let key = obj.req_str_len("sessionKey", 512).map_err(bad)?;
            let limit = obj.opt_int("limit", 1, 1000).map_err(bad)?.unwrap_or(200);
            let max_chars = obj.opt_int("maxChars", 1, 500_000).map_err(bad)?;
            // An unqualified key belongs to the named agent (v4).
            let agent = obj.opt_str_len("agentId", 64).map_err(bad)?;
            let key = match agent {
                Some(agent) => {
                    let agent = session_key::normalize_agent_id(agent, &config.default_agent_id);
                    session_key::canonicalize(key, &agent, &config.main_key)
                        .map_err(|err| ServiceError::invalid(err.to_string()))?
                }
                None => canonical(key, config)?,
            };
            Call::History {
                session_key: Some(key),
                limit: u32::try_from(limit).unwrap_or(200),
                max_chars: max_chars.and_then(|n| usize::try_from(n).ok()),
                v4: request.v4(),
            }
        }
        Style::Snake => {
            obj.opt_str("agentId").map_err(bad)?;
            let limit = obj.opt_int("limit", 1, 1000).map_err(bad)?.unwrap_or(200);
            Call::History {
                session_key: canonical_opt(obj.opt_str("sessionKey").map_err(bad)?, config)?,
                limit: u32::try_from(limit).unwrap_or(200),
                max_chars: None,
                v4: false,
            }
        }
    };
    Ok(call)
}

fn parse_abort(request: &Request<'_>) -> Result<Call, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let obj = request.closed(&["sessionKey", "runId"])?;
    let session_key = match request.style {
        Style::Camel => Some(canonical(
            obj.req_str_len("sessionKey", 512).map_err(bad)?,
            config,
        )?),
        Style::Snake => canonical_opt(obj.opt_str("sessionKey").map_err(bad)?, config)?,
    };
    let run_id = obj.opt_str("runId").map_err(bad)?.unwrap_or_default();
    Ok(Call::Abort {
        session_key,
        run_id: run_id.to_owned(),
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
        Call::History {
            session_key: None, ..
        } => Ok(json!({ "messages": [] })),
        Call::History {
            session_key: Some(session_key),
            limit,
            max_chars,
            v4,
        } => history(state, principal, session_key, limit, max_chars, style, v4).await,
        Call::Abort {
            session_key,
            run_id,
        } => abort(state, principal, session_key, run_id, style).await,
    }
}

async fn history(
    state: &EdgeState,
    principal: &Principal,
    session_key: String,
    limit: u32,
    max_chars: Option<usize>,
    style: Style,
    v4: bool,
) -> Result<Value, ServiceError> {
    let request = ListMessagesRequest {
        session_key: session_key.clone(),
        limit,
    };
    let session = &state.services.session;
    let get = GetSessionRequest {
        session_key: session_key.clone(),
    };
    let (rows, row) = tokio::join!(session.list_messages(principal, request), async {
        // Only v4 answers describe the session.
        if v4 {
            Some(session.get_session(principal, get).await)
        } else {
            None
        }
    });
    let rows = match rows {
        Ok(response) => response.messages,
        Err(err) if err.code == ErrorCode::NotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    if style == Style::Snake {
        let messages: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut message = json!({
                    "id": row.id,
                    "role": row.role,
                    "content": row.content,
                    "run_id": row.run_id,
                    "is_error": row.status == MessageStatus::Error as i32 || row.tool_error,
                    "created_at": rfc3339(row.created_at_ms),
                });
                // A tool step's calls, and which call a tool row answers.
                if !row.tool_calls.is_empty() {
                    let calls: Vec<Value> = row
                        .tool_calls
                        .iter()
                        .map(|call| {
                            json!({
                                "id": call.id,
                                "name": call.name,
                                "arguments": serde_json::from_str::<Value>(&call.arguments_json)
                                    .unwrap_or_else(|_| json!(call.arguments_json)),
                            })
                        })
                        .collect();
                    message["tool_calls"] = json!(calls);
                }
                if !row.tool_call_id.is_empty() {
                    message["tool_call_id"] = json!(row.tool_call_id);
                    message["tool_name"] = json!(row.tool_name);
                }
                message
            })
            .collect();
        return Ok(json!({ "messages": messages }));
    }
    let mut budget = MAX_RESPONSE_BYTES;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let message = session_row::message(row, v4, max_chars);
        let cost = message.to_string().len() + 64;
        if cost > budget {
            break;
        }
        budget -= cost;
        messages.push(message);
    }
    messages.reverse();
    let mut answer = json!({ "sessionKey": session_key, "messages": messages });
    let Some(row) = row else {
        return Ok(answer);
    };
    let found = match row {
        Ok(found) => Some(found),
        Err(err) if err.code == ErrorCode::NotFound => None,
        Err(err) => return Err(err),
    };
    let (defaults, active) = tokio::join!(
        session_row::defaults(state, principal, true, false),
        session_row::ActiveRuns::of(state, principal, found.as_slice()),
    );
    let config = &state.config;
    let info = match &found {
        Some(found) => {
            let active = active?;
            let runs = active.of_session(found);
            let mut info = session_row::row(found, runs, config);
            info.insert("activeRunIds".into(), json!(runs));
            answer["sessionId"] = json!(found.session_id);
            Value::Object(info)
        }
        // A session that does not exist yet: what it will be.
        None => {
            let kind = session_key::kind_of(&session_key);
            json!({
                "key": session_key,
                "kind": kind,
                "classification": kind,
                "agentId": session_key::agent_of(&session_key).unwrap_or(&config.default_agent_id),
                "isMain": session_row::is_main(&session_key, config),
                "isBackground": false,
                "updatedAt": null,
                "archived": false,
                "pinned": false,
                "unread": false,
                "hasActiveRun": false,
                "activeRunIds": [],
            })
        }
    };
    let total = found.as_ref().map_or(0, |s| s.message_count);
    answer["pendingInputs"] = json!({ "items": [], "total": 0 });
    answer["hasMore"] = json!(total > messages_len(&answer));
    answer["totalMessages"] = json!(total);
    answer["defaults"] = defaults;
    answer["sessionInfo"] = info;
    Ok(answer)
}

fn messages_len(answer: &Value) -> u64 {
    answer["messages"].as_array().map_or(0, |m| m.len() as u64)
}

async fn abort(
    state: &EdgeState,
    principal: &Principal,
    session_key: Option<String>,
    run_id: String,
    style: Style,
) -> Result<Value, ServiceError> {
    let runner = &state.services.runner;
    let session_key = match session_key {
        Some(key) => key,
        None if !run_id.is_empty() => {
            let request = GetRunRequest {
                run_id: run_id.clone(),
            };
            runner.get_run(principal, request).await?.session_key
        }
        None => return Err(ServiceError::invalid("sessionKey is required")),
    };
    let request = AbortRunRequest {
        session_key,
        run_id,
        stop_reason: "rpc".into(),
    };
    let res = runner.abort_run(principal, request).await?;
    Ok(match style {
        Style::Camel => json!({ "ok": true, "aborted": res.aborted, "runIds": res.run_ids }),
        Style::Snake => json!({
            "ok": true, "aborted": res.aborted, "stopped": res.aborted, "forced": false,
            "alreadyAborting": false, "notFound": !res.aborted, "unauthorized": false,
            "runIds": res.run_ids,
        }),
    })
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
