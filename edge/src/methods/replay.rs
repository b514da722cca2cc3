//! Reading a run's earlier events back from its bounded replay history (the
//! runner's `ReadRunEvents`, principal-scoped, so a user reads only their own
//! runs, and an admin or owner any run of its tenant, naming the run's user):
//!
//! - `chat.replay {runId, afterSeq?, limit?, userId?}` — a clawgate extension
//!   (scope `operator.read`) for clients that need every `agent` event
//!   (`userId`: another user's run, for admins; events of it carry `userId`): returns
//!   `{runId, events: [<agent event payload>…], complete}` with the `agent`
//!   payloads of the run's events whose `seq > afterSeq`, oldest first, at most
//!   `limit`, rendered exactly as live `agent` events (assistant data carries the
//!   full text so far). `complete` is false when older events were already
//!   trimmed from the history (the first returned `seq` is then above
//!   `afterSeq + 1`). An unknown, foreign or expired run returns no events.
//! - the backfill of a connection that sees a run's delta without the text
//!   before it (it reconnected mid-run): [`fetch`] reads the run's history
//!   once (of the run's user, which for an admin may be another user), so the
//!   next `chat` delta carries the full text again.
//!
//! Invariants: every read is bounded in events ([`MAX_EVENTS`]) and time
//! ([`READ_TIMEOUT`]); a failing read is `UNAVAILABLE` for `chat.replay` and only
//! leaves the connection without the earlier text for a backfill.

use std::time::Duration;

use clawgate_proto::pb::common::v1::RunEvent;
use clawgate_proto::runner::{ReadRunEventsRequest, RunnerApi};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::decl::{Job, Method, Outcome, Request, Runs, Scope, job};
use crate::openclaw::projection::{Projector, RunKey};
use crate::params::Style;
use crate::state::EdgeState;
use crate::version::Protocol;

/// `chat.replay` is OpenClaw's only: it answers OpenClaw `agent` payloads.
pub const METHODS: &[Method] = &[Method::call("chat.replay", Some(Scope::Read), None, parse)];

/// Events read from a run's history at most per call.
pub const MAX_EVENTS: u32 = 2_000;
/// Bound of one history read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A validated `chat.replay` call.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayCall {
    pub run_id: String,
    pub after_seq: u64,
    pub limit: usize,
    /// The run's user; empty: the caller's own.
    pub user_id: String,
}

/// Validates `chat.replay` params.
fn parse(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let obj = request.closed(&["runId", "afterSeq", "limit", "userId"])?;
    let run_id = obj.req_str_len("runId", 512).map_err(bad)?;
    let user_id = obj.opt_str("userId").map_err(bad)?.unwrap_or_default();
    let after_seq = obj.opt_int("afterSeq", 0, i64::MAX).map_err(bad)?;
    let limit = obj
        .opt_int("limit", 1, i64::from(MAX_EVENTS))
        .map_err(bad)?;
    Ok(job(ReplayCall {
        run_id: run_id.to_owned(),
        after_seq: after_seq.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        limit: limit
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(MAX_EVENTS as usize),
        user_id: user_id.trim().to_owned(),
    }))
}

impl Runs for ReplayCall {
    async fn execute(self, state: &EdgeState, principal: &Principal, _: Style) -> Outcome {
        chat_replay(state, principal, self).await.into()
    }
}

/// The history of `run` (of the caller's tenant) from its start (at most
/// [`MAX_EVENTS`] events). Empty when the caller may not read it.
pub async fn fetch(
    state: &EdgeState,
    principal: &Principal,
    run: &RunKey,
) -> Result<Vec<RunEvent>, ServiceError> {
    let request = ReadRunEventsRequest {
        run_id: run.run_id.clone(),
        after_seq: 0,
        limit: MAX_EVENTS,
        user_id: run.user_id.clone(),
    };
    let read = state.services.runner.read_run_events(principal, request);
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(response)) => Ok(response.events),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(ServiceError::unavailable(
            "reading the run history timed out",
        )),
    }
}

/// Answers `chat.replay`.
pub async fn chat_replay(
    state: &EdgeState,
    principal: &Principal,
    call: ReplayCall,
) -> Result<Value, ServiceError> {
    // Read from the start so assistant data carries the full text, as live.
    let user = match call.user_id.as_str() {
        "" => principal.user_id.as_str(),
        user => user,
    };
    let events = fetch(state, principal, &RunKey::new(user, &call.run_id)).await?;
    let complete = events.first().is_none_or(|first| first.seq <= 1);
    let complete = complete
        && (call.after_seq == 0
            || events.iter().any(|e| e.seq <= call.after_seq + 1)
            || events.is_empty());
    let mut projector = Projector::new(true, Protocol::V3).with_own_user(&principal.user_id);
    let now = Instant::now();
    let mut agent = Vec::new();
    for event in &events {
        for frame in projector.project(event, now) {
            if frame.event == "agent"
                && frame.payload["seq"].as_u64().unwrap_or(0) > call.after_seq
                && agent.len() < call.limit
            {
                agent.push(frame.payload);
            }
        }
    }
    Ok(json!({ "runId": call.run_id, "events": agent, "complete": complete }))
}
