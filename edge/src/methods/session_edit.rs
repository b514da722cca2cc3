//! One session at a time: `sessions.describe`, `sessions.get`,
//! `sessions.preview` (OpenClaw), and the edits `sessions.create`,
//! `sessions.patch`, `sessions.reset`, `sessions.delete` (both dialects) and
//! goclaw's `sessions.label`.
//!
//! Answers: OpenClaw's as its reference gives them (`{session|null}`,
//! `{messages}`, `{ts, previews}`, `{ok, key, entry, …}`); goclaw's `{ok}` /
//! `{ok, key}`. Every edit is the session service's, which publishes the
//! change (`sessions.changed`) once it committed.
//!
//! Invariants: a session is always the caller's own user's (the session
//! service scopes by principal); keys are canonicalized as `chat.send` does;
//! the main session cannot be deleted; what clawgate does not keep per session
//! (model, thinking and other overrides) is refused by name, never accepted and
//! dropped; previews read at most [`MAX_PREVIEW_KEYS`] sessions,
//! [`PREVIEW_CONCURRENCY`] at a time.

use clawgate_proto::session::{
    DeleteSessionRequest, EnsureSessionRequest, GetSessionRequest, ListMessagesRequest,
    PatchSessionRequest, ResetSessionRequest, Session, SessionApi as _,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::decl::{Method, Outcome, Request, Role, Runs, Scope, job};
use super::session_row::{self, ActiveRuns};
use super::system::SESSIONS_PATH;
use crate::config::EdgeConfig;
use crate::params::{Obj, Style};
use crate::session_key;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method::call("sessions.describe", Some(Scope::Read), None, |r| {
        parse(r).map(job)
    }),
    Method::call("sessions.get", Some(Scope::Read), None, |r| {
        parse(r).map(job)
    }),
    Method::call("sessions.preview", Some(Scope::Read), None, |r| {
        parse(r).map(job)
    }),
    Method::call("sessions.create", Some(Scope::Write), None, |r| {
        parse(r).map(job)
    }),
    Method::call(
        "sessions.patch",
        Some(Scope::Admin),
        Some(Role::Operator),
        |r| parse(r).map(job),
    ),
    Method::call(
        "sessions.reset",
        Some(Scope::Admin),
        Some(Role::Operator),
        |r| parse(r).map(job),
    ),
    Method::call(
        "sessions.delete",
        Some(Scope::Admin),
        Some(Role::Operator),
        |r| parse(r).map(job),
    ),
    Method::call("sessions.label", None, Some(Role::Operator), |r| {
        parse(r).map(job)
    }),
];

/// Sessions one `sessions.preview` reads.
pub const MAX_PREVIEW_KEYS: usize = 64;
/// Transcripts a `sessions.preview` reads at once.
pub const PREVIEW_CONCURRENCY: usize = 8;
const MAX_KEY_CHARS: usize = 512;

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Describe {
        key: String,
        last_message: bool,
    },
    Get {
        key: String,
        limit: u32,
        v4: bool,
    },
    Preview {
        keys: Vec<String>,
        limit: u32,
        max_chars: usize,
    },
    Create {
        key: String,
        agent_id: String,
        label: Option<String>,
    },
    /// A label set (`Some("")` clears it) on a session created if missing.
    Patch {
        key: String,
        agent_id: String,
        label: Option<String>,
    },
    Reset {
        key: String,
        agent_id: String,
        reason: &'static str,
    },
    Delete {
        key: String,
    },
}

/// The session key `raw`, unqualified keys belonging to `agent` (else the
/// default agent), and that agent.
fn key_of(
    raw: &str,
    agent: Option<&str>,
    config: &EdgeConfig,
) -> Result<(String, String), ServiceError> {
    let default = &config.default_agent_id;
    let agent = agent.map_or_else(
        || default.clone(),
        |a| session_key::normalize_agent_id(a, default),
    );
    let key = session_key::canonicalize(raw, &agent, &config.main_key)
        .map_err(|err| ServiceError::invalid(err.to_string()))?;
    let agent = session_key::agent_of(&key).unwrap_or(&agent).to_owned();
    Ok((key, agent))
}

/// The required key, named `key` (or, for `sessions.get`, `sessionKey`).
fn req_key<'a>(obj: &Obj<'a>, names: &[&str]) -> Result<&'a str, String> {
    for name in names {
        if obj.has(name) {
            return obj.req_str_len(name, MAX_KEY_CHARS);
        }
    }
    Err(format!("{} is required", names[0]))
}

/// Session settings OpenClaw clients may patch that clawgate does not keep.
const UNSUPPORTED_PATCH_KEYS: [&str; 20] = [
    "thinkingLevel",
    "fastMode",
    "verboseLevel",
    "traceLevel",
    "reasoningLevel",
    "responseUsage",
    "elevatedLevel",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "model",
    "spawnedBy",
    "spawnedWorkspaceDir",
    "spawnDepth",
    "subagentRole",
    "subagentControlScope",
    "sendPolicy",
    "groupActivation",
    "metadata",
];

fn parse(request: &Request<'_>) -> Result<Call, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let camel = request.style == Style::Camel;
    let call = match request.method {
        "sessions.describe" => {
            let obj = request.closed(&[
                "key",
                "agentId",
                "includeDerivedTitles",
                "includeLastMessage",
            ])?;
            if obj.opt_bool("includeDerivedTitles").map_err(bad)? == Some(true) {
                return Err(bad("includeDerivedTitles is not supported".into()));
            }
            let agent = obj.opt_str_len("agentId", 64).map_err(bad)?;
            let (key, _) = key_of(req_key(&obj, &["key"]).map_err(bad)?, agent, config)?;
            let last_message = obj.opt_bool("includeLastMessage").map_err(bad)?;
            Call::Describe {
                key,
                last_message: last_message.unwrap_or(false),
            }
        }
        "sessions.get" => {
            let obj = request.closed(&["key", "sessionKey", "agentId", "limit"])?;
            let agent = obj.opt_str_len("agentId", 64).map_err(bad)?;
            let raw = req_key(&obj, &["key", "sessionKey"]).map_err(bad)?;
            let (key, _) = key_of(raw, agent, config)?;
            let limit = obj.opt_int("limit", 1, 1000).map_err(bad)?.unwrap_or(200);
            Call::Get {
                key,
                limit: u32::try_from(limit).unwrap_or(200),
                v4: request.v4(),
            }
        }
        "sessions.preview" => {
            let obj = request.closed(&["keys", "limit", "maxChars"])?;
            let raw = obj
                .opt_str_array("keys")
                .map_err(bad)?
                .ok_or_else(|| bad("keys is required".into()))?;
            if raw.is_empty() {
                return Err(bad("keys must name at least one session".into()));
            }
            let mut keys = Vec::new();
            // OpenClaw previews the first 64 keys it is given.
            for raw in raw.iter().take(MAX_PREVIEW_KEYS) {
                if raw.chars().count() > MAX_KEY_CHARS {
                    return Err(bad(format!("keys: longer than {MAX_KEY_CHARS} characters")));
                }
                let (key, _) = key_of(raw, None, config)?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let limit = obj.opt_int("limit", 1, 100).map_err(bad)?.unwrap_or(12);
            let max_chars = obj
                .opt_int("maxChars", 20, 100_000)
                .map_err(bad)?
                .unwrap_or(240);
            Call::Preview {
                keys,
                limit: u32::try_from(limit).unwrap_or(12),
                max_chars: usize::try_from(max_chars).unwrap_or(240),
            }
        }
        "sessions.create" => {
            let obj = request.closed(&["key", "agentId", "label"])?;
            let agent = obj.opt_str_len("agentId", 64).map_err(bad)?;
            let label = obj.opt_str("label").map_err(bad)?.map(str::to_owned);
            let raw = match obj.opt_str_len("key", MAX_KEY_CHARS).map_err(bad)? {
                Some(key) => key.to_owned(),
                None => {
                    let agent = agent.map_or_else(
                        || config.default_agent_id.clone(),
                        |a| session_key::normalize_agent_id(a, &config.default_agent_id),
                    );
                    format!("agent:{agent}:dashboard:{}", uuid::Uuid::new_v4())
                }
            };
            let (key, agent_id) = key_of(&raw, agent, config)?;
            Call::Create {
                key,
                agent_id,
                label,
            }
        }
        "sessions.patch" | "sessions.label" => {
            let obj = request.obj()?;
            if camel {
                if let Some(name) = UNSUPPORTED_PATCH_KEYS.iter().find(|k| obj.has(k)) {
                    return Err(bad(format!(
                        "{name} is not a session setting clawgate keeps (only label is)"
                    )));
                }
                obj.closed(&["key", "label"]).map_err(bad)?;
            } else if let Some(name) = ["model", "metadata"].iter().find(|k| obj.has(k)) {
                return Err(bad(format!(
                    "{name} is not a session setting clawgate keeps (only label is)"
                )));
            }
            let (key, agent_id) = key_of(req_key(&obj, &["key"]).map_err(bad)?, None, config)?;
            // `null` clears the label (OpenClaw); absent leaves it.
            let label = match obj.raw("label") {
                None => None,
                Some(Value::Null) => Some(String::new()),
                Some(_) => obj.opt_str("label").map_err(bad)?.map(str::to_owned),
            };
            if request.method == "sessions.label" && label.is_none() {
                return Err(bad("label is required".into()));
            }
            Call::Patch {
                key,
                agent_id,
                label,
            }
        }
        "sessions.reset" => {
            let obj = request.closed(&["key", "reason"])?;
            let (key, agent_id) = key_of(req_key(&obj, &["key"]).map_err(bad)?, None, config)?;
            let reason = match obj.opt_str("reason").map_err(bad)? {
                None | Some("reset") => "reset",
                Some("new") => "new",
                Some(other) => {
                    return Err(bad(format!(
                        "reason must be \"new\" or \"reset\", not {other:?}"
                    )));
                }
            };
            Call::Reset {
                key,
                agent_id,
                reason,
            }
        }
        "sessions.delete" => {
            let obj = request.closed(&["key", "deleteTranscript", "emitLifecycleHooks"])?;
            // A deleted session's transcript is always out of every view and
            // purged with the retention sweep; there are no hooks to run.
            obj.opt_bool("deleteTranscript").map_err(bad)?;
            obj.opt_bool("emitLifecycleHooks").map_err(bad)?;
            let (key, _) = key_of(req_key(&obj, &["key"]).map_err(bad)?, None, config)?;
            if session_row::is_main(&key, config) {
                return Err(ServiceError::invalid(format!(
                    "Cannot delete the main session ({key})"
                )));
            }
            Call::Delete { key }
        }
        other => {
            return Err(ServiceError::internal(format!(
                "{other} has no parser here"
            )));
        }
    };
    Ok(call)
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await.into()
    }
}

/// The caller's live session `key`, if any.
async fn find(
    state: &EdgeState,
    principal: &Principal,
    key: &str,
) -> Result<Option<Session>, ServiceError> {
    let request = GetSessionRequest {
        session_key: key.to_owned(),
    };
    match state.services.session.get_session(principal, request).await {
        Ok(session) => Ok(Some(session)),
        Err(err) if err.code == ErrorCode::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The caller's session `key`, created (for `agent_id`) if missing, with
/// `label` set when one is given.
async fn ensure_labelled(
    state: &EdgeState,
    principal: &Principal,
    key: &str,
    agent_id: String,
    label: Option<String>,
) -> Result<Session, ServiceError> {
    let sessions = &state.services.session;
    let ensure = EnsureSessionRequest {
        session_key: key.to_owned(),
        agent_id,
    };
    let session = sessions.ensure_session(principal, ensure).await?;
    match label {
        None => Ok(session),
        Some(label) => {
            let patch = PatchSessionRequest {
                session_key: key.to_owned(),
                label: Some(label),
            };
            sessions.patch_session(principal, patch).await
        }
    }
}

/// The row of `session` with its runs in flight.
async fn entry(
    state: &EdgeState,
    principal: &Principal,
    session: &Session,
) -> Result<Value, ServiceError> {
    let active = ActiveRuns::of(state, principal, std::slice::from_ref(session)).await?;
    let row = session_row::row(session, active.of_session(session), &state.config);
    Ok(Value::Object(row))
}

/// Runs a validated call.
pub async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    let sessions = &state.services.session;
    match call {
        Call::Describe { key, last_message } => {
            let Some(session) = find(state, principal, &key).await? else {
                return Ok(json!({ "session": null }));
            };
            let mut row = entry(state, principal, &session).await?;
            if !last_message && let Some(row) = row.as_object_mut() {
                row.remove("lastMessagePreview");
            }
            Ok(json!({ "session": row }))
        }
        Call::Get { key, limit, v4 } => {
            let request = ListMessagesRequest {
                session_key: key,
                limit,
            };
            let rows = match sessions.list_messages(principal, request).await {
                Ok(response) => response.messages,
                Err(err) if err.code == ErrorCode::NotFound => Vec::new(),
                Err(err) => return Err(err),
            };
            let messages: Vec<Value> = rows
                .iter()
                .map(|row| session_row::message(row, v4, None))
                .collect();
            Ok(json!({ "messages": messages }))
        }
        Call::Preview {
            keys,
            limit,
            max_chars,
        } => {
            let previews: Vec<Value> = futures_util::stream::iter(keys)
                .map(|key| preview(state, principal, key, limit, max_chars))
                .buffered(PREVIEW_CONCURRENCY)
                .collect()
                .await;
            Ok(json!({ "ts": now_ms(), "previews": previews }))
        }
        Call::Create {
            key,
            agent_id,
            label,
        } => {
            let session = ensure_labelled(state, principal, &key, agent_id, label).await?;
            let entry = entry(state, principal, &session).await?;
            Ok(json!({
                "ok": true, "key": key, "sessionId": session.session_id,
                "entry": entry, "runStarted": false,
            }))
        }
        Call::Patch {
            key,
            agent_id,
            label,
        } => {
            // A patch creates the session it names (OpenClaw).
            let session = ensure_labelled(state, principal, &key, agent_id, label).await?;
            if style == Style::Snake {
                return Ok(json!({ "ok": true, "key": key }));
            }
            let entry = entry(state, principal, &session).await?;
            Ok(json!({ "ok": true, "path": SESSIONS_PATH, "key": key, "entry": entry }))
        }
        Call::Reset {
            key,
            agent_id,
            reason,
        } => {
            let request = ResetSessionRequest {
                session_key: key.clone(),
                agent_id,
                reason: reason.to_owned(),
            };
            let session = sessions.reset_session(principal, request).await?;
            if style == Style::Snake {
                return Ok(json!({ "ok": true }));
            }
            let entry = entry(state, principal, &session).await?;
            Ok(json!({ "ok": true, "key": key, "entry": entry }))
        }
        Call::Delete { key } => {
            let request = DeleteSessionRequest {
                session_key: key.clone(),
            };
            let deleted = sessions.delete_session(principal, request).await?.deleted;
            Ok(match style {
                Style::Snake => json!({ "ok": true }),
                Style::Camel => {
                    json!({ "ok": true, "key": key, "deleted": deleted, "archived": [] })
                }
            })
        }
    }
}

/// One key's preview: its newest `limit` messages as `{role, text}`.
async fn preview(
    state: &EdgeState,
    principal: &Principal,
    key: String,
    limit: u32,
    max_chars: usize,
) -> Value {
    let status = |status: &str| json!({ "key": key, "status": status, "items": [] });
    let failed = |err: ServiceError| {
        tracing::debug!(error = %err, "session preview failed");
        status("error")
    };
    let session = match find(state, principal, &key).await {
        Ok(Some(session)) => session,
        Ok(None) => return status("missing"),
        Err(err) => return failed(err),
    };
    if session.message_count == 0 {
        return status("empty");
    }
    let request = ListMessagesRequest {
        session_key: key.clone(),
        limit,
    };
    match state
        .services
        .session
        .list_messages(principal, request)
        .await
    {
        Ok(response) => {
            let items: Vec<Value> = response
                .messages
                .iter()
                .map(|m| {
                    let text: String = m.content.chars().take(max_chars).collect();
                    json!({ "role": m.role, "text": text })
                })
                .collect();
            json!({ "key": key, "status": "ok", "items": items })
        }
        Err(err) => failed(err),
    }
}

#[cfg(test)]
#[path = "session_edit_tests.rs"]
mod tests;
