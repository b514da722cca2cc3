//! Sessions: `sessions.list`.
//!
//! Params: OpenClaw's closed object, every filter applied by the session
//! service (agent, exact label, text search, `activeMinutes`, the special
//! `global`/`unknown` sessions left out unless included; `spawnedBy` matches
//! nothing: clawgate spawns no sessions; `includeDerivedTitles` is refused),
//! v4 adding `offset`; goclaw's lenient `{limit, offset, agentId, channel}`.
//! Answers: OpenClaw's session index (`{ts, path, count, totalCount,
//! limitApplied, hasMore, defaults, sessions}`, v4 adding `nextOffset` and
//! `owners`), each row with its true `hasActiveRun` (the runner's runs in
//! flight); goclaw's `{sessions, total, limit, offset}`. Admins list every
//! user's sessions of their tenant, so each entry names its user.

use clawgate_proto::session::{ListSessionsRequest, ListSessionsResponse, Session, SessionApi};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, job};
use super::session_row::{self, ActiveRuns};
use super::system::SESSIONS_PATH;
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct List {
    pub limit: u32,
    pub offset: u32,
    pub agent_id: String,
    pub label: String,
    pub search: String,
    pub updated_since_ms: i64,
    pub include_global: bool,
    pub include_unknown: bool,
    pub last_message: bool,
    /// Only sessions spawned by this one: clawgate spawns none, so such a
    /// listing is empty.
    pub spawned_by: Option<String>,
    /// Whether the answer carries OpenClaw v4's fields.
    pub v4: bool,
}

/// OpenClaw's listing params; v4 adds `offset` (paging).
const OPENCLAW_LIST_KEYS: [&str; 11] = [
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
    "offset",
];

/// Longest label or search text a listing filters by.
const MAX_FILTER_CHARS: usize = 512;

fn parse_list(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let default_agent = &request.config.default_agent_id;
    let keys = if request.v4() || request.style == Style::Snake {
        &OPENCLAW_LIST_KEYS[..]
    } else {
        &OPENCLAW_LIST_KEYS[..OPENCLAW_LIST_KEYS.len() - 1]
    };
    let obj = request.closed(keys)?;
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
            let offset = obj
                .opt_int("offset", 0, i64::from(u32::MAX))
                .map_err(bad)?
                .unwrap_or(0);
            let active_minutes = obj
                .opt_int("activeMinutes", 1, 100 * 365 * 24 * 60)
                .map_err(bad)?;
            if obj.opt_bool("includeDerivedTitles").map_err(bad)? == Some(true) {
                return Err(bad("includeDerivedTitles is not supported".into()));
            }
            let flag = |name: &str| obj.opt_bool(name).map(Option::unwrap_or_default);
            let text = |name: &str| {
                obj.opt_str_len(name, MAX_FILTER_CHARS)
                    .map(|t| t.map(str::trim).unwrap_or_default().to_owned())
            };
            List {
                limit: u32::try_from(limit.min(1000)).unwrap_or(1000),
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                agent_id,
                label: text("label").map_err(bad)?,
                search: text("search").map_err(bad)?,
                updated_since_ms: active_minutes.map_or(0, |m| now_ms() - m * 60_000),
                include_global: flag("includeGlobal").map_err(bad)?,
                include_unknown: flag("includeUnknown").map_err(bad)?,
                last_message: flag("includeLastMessage").map_err(bad)?,
                spawned_by: obj
                    .opt_str("spawnedBy")
                    .map_err(bad)?
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned),
                v4: request.v4(),
            }
        }
        Style::Snake => {
            obj.opt_str("channel").map_err(bad)?;
            let limit = obj.opt_int("limit", 0, 1000).map_err(bad)?.unwrap_or(20);
            let offset = obj
                .opt_int("offset", 0, i64::from(u32::MAX))
                .map_err(bad)?
                .unwrap_or(0);
            List {
                limit: u32::try_from(if limit == 0 { 20 } else { limit }).unwrap_or(20),
                offset: u32::try_from(offset).unwrap_or(0),
                agent_id,
                include_global: true,
                include_unknown: true,
                ..List::default()
            }
        }
    };
    Ok(job(call))
}

impl Runs for List {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await.into()
    }
}

/// Runs a validated call.
pub async fn run(
    call: List,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    let (limit, offset) = (call.limit, call.offset);
    let response = if call.spawned_by.is_some() {
        ListSessionsResponse::default()
    } else {
        let request = ListSessionsRequest {
            limit,
            offset,
            agent_id: call.agent_id.clone(),
            search: call.search.clone(),
            label: call.label.clone(),
            updated_since_ms: call.updated_since_ms,
            exclude_global: !call.include_global,
            exclude_unknown: !call.include_unknown,
        };
        state
            .services
            .session
            .list_sessions(principal, request)
            .await?
    };
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
    let (active, defaults) = tokio::join!(
        ActiveRuns::of(state, principal, &response.sessions),
        session_row::defaults(state, principal, call.v4, true),
    );
    let active = active?;
    let rows: Vec<Value> = response
        .sessions
        .iter()
        .map(|s| {
            let runs = active.of_session(s);
            let mut row = session_row::row(s, runs, &state.config);
            if !runs.is_empty() {
                row.insert("activeRunIds".into(), json!(runs));
            }
            if !call.last_message {
                row.remove("lastMessagePreview");
            }
            Value::Object(row)
        })
        .collect();
    let count = rows.len() as u64;
    let next = u64::from(offset) + count;
    let has_more = response.total > next;
    let mut answer = json!({
        "ts": now_ms(),
        "path": SESSIONS_PATH,
        "count": count,
        "totalCount": response.total,
        "limitApplied": limit,
        "hasMore": has_more,
        "defaults": defaults,
        "sessions": rows,
    });
    if call.v4 {
        answer["nextOffset"] = if has_more { json!(next) } else { Value::Null };
        answer["owners"] = json!(owners(&response.sessions, principal));
    }
    Ok(answer)
}

/// The users whose sessions a listing shows, as OpenClaw actors.
fn owners(sessions: &[Session], principal: &Principal) -> Vec<Value> {
    let mut users: Vec<&str> = sessions
        .iter()
        .map(|s| match s.user_id.as_str() {
            "" => principal.user_id.as_str(),
            user => user,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    users
        .into_iter()
        .map(|id| json!({ "type": "human", "id": id }))
        .collect()
}
