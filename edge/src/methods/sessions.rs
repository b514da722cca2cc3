//! Sessions: `sessions.list`.
//!
//! Params: OpenClaw's closed object (every listed filter type-checked), goclaw's
//! lenient `{limit, offset, agentId, channel}`. Answers: OpenClaw's session
//! index (`{ts, path, count, totalCount, limitApplied, hasMore, defaults,
//! sessions}`), goclaw's `{sessions, total, limit, offset}`. Admins list every
//! user's sessions of their tenant, so each entry names its user.

use clawgate_proto::session::{ListSessionsRequest, SessionApi};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, job};
use crate::params::Style;
use crate::session_key;
use crate::state::EdgeState;
use crate::time::rfc3339;

pub const METHODS: &[Method] = &[Method::call(
    "sessions.list",
    Some(Scope::Read),
    Some(Role::Viewer),
    parse_list,
)];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    List {
        limit: u32,
        offset: u32,
        agent_id: String,
    },
}

const OPENCLAW_LIST_KEYS: [&str; 10] = [
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
];

fn parse_list(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let default_agent = &request.config.default_agent_id;
    let obj = request.closed(&OPENCLAW_LIST_KEYS)?;
    let agent_id = obj
        .opt_str("agentId")
        .map_err(bad)?
        .map(|id| session_key::normalize_agent_id(id, default_agent))
        .unwrap_or_default();
    let call = match request.style {
        Style::Camel => {
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
            Call::List {
                limit: u32::try_from(limit.min(1000)).unwrap_or(1000),
                offset: 0,
                agent_id,
            }
        }
        Style::Snake => {
            obj.opt_str("channel").map_err(bad)?;
            let limit = obj.opt_int("limit", 0, 1000).map_err(bad)?.unwrap_or(20);
            let offset = obj
                .opt_int("offset", 0, i64::from(u32::MAX))
                .map_err(bad)?
                .unwrap_or(0);
            Call::List {
                limit: u32::try_from(if limit == 0 { 20 } else { limit }).unwrap_or(20),
                offset: u32::try_from(offset).unwrap_or(0),
                agent_id,
            }
        }
    };
    Ok(job(call))
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
    let Call::List {
        limit,
        offset,
        agent_id,
    } = call;
    let request = ListSessionsRequest {
        limit,
        offset,
        agent_id,
    };
    let response = state
        .services
        .session
        .list_sessions(principal, request)
        .await?;
    if style == Style::Snake {
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
                    // clawgate's other goclaw answers.
                    "userID": s.user_id,
                    "user_id": s.user_id,
                    "agentName": s.agent_id,
                })
            })
            .collect();
        return Ok(
            json!({ "sessions": sessions, "total": response.total, "limit": limit, "offset": offset }),
        );
    }
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
