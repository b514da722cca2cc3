//! Turns the internal `RunEvent` stream into OpenClaw `agent` and `chat` events
//! (§6.2, §6.3), per connection.
//!
//! Invariants, per run:
//! - `agent` events carry the run's seq; assistant data is `{text: full text so
//!   far, delta}`;
//! - `chat` deltas carry the **full text so far**, at most one per
//!   [`DELTA_THROTTLE`]; text held back by the throttle is flushed as a last delta
//!   before a tool starts and before `final`/`error`;
//! - exactly one terminal `chat` event (`final`, `aborted` with the partial text,
//!   or `error`), after which the run's state is dropped;
//! - if text is missing (the socket joined mid-run, or an event was lost), no more
//!   deltas are sent for that run: a delta must never claim a wrong "full text";
//!   the terminal event still carries the complete text;
//! - tool events go only to connections that asked for `caps:["tool-events"]`, as
//!   targeted frames without a frame seq;
//! - text missing because the socket joined mid-run can be restored once per run
//!   ([`Projector::wants_backfill`], then [`Projector::absorb`] of the run's
//!   earlier events from its replay history), after which deltas resume with the
//!   full text;
//! - runs are tracked by [`RunKey`] (user and run id), never by run id alone:
//!   run ids are the clients' idempotency keys, so two users of a tenant may use
//!   the same one, and a connection that sees the whole tenant (an admin) gets
//!   both runs;
//! - protocol v4 (the connection's version): every `chat` delta also carries
//!   `deltaText`, the text since the previous delta sent (or, with
//!   `replace: true`, the whole text when the new text does not extend what was
//!   sent), `chat` and `agent` payloads name the run's `agentId` (`agent`
//!   ones say `isHeartbeat: false`: there are no heartbeat runs), and `final`
//!   always carries the complete `message` when the run produced text;
//! - an event of another user's run (only admins and owners receive those)
//!   carries that user's id as `userId` in its `agent` and `chat` payloads (a
//!   clawgate addition: OpenClaw session keys do not name a user); events of the
//!   connection's own runs are exactly as OpenClaw sends them.

use std::collections::HashMap;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, Usage, run_event};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::out::EventOut;
use crate::version::Protocol;

/// Minimum spacing of `chat` deltas of one run.
pub const DELTA_THROTTLE: Duration = Duration::from_millis(150);

/// Runs tracked per connection; the oldest is forgotten beyond this.
const MAX_RUNS: usize = 256;

/// A run as a connection tracks it: its user and its run id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub user_id: String,
    pub run_id: String,
}

impl RunKey {
    pub fn new(user_id: &str, run_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            run_id: run_id.to_owned(),
        }
    }

    /// The run `event` belongs to.
    pub fn of(event: &RunEvent) -> Self {
        Self::new(&event.user_id, &event.run_id)
    }
}

#[derive(Debug, Default)]
struct RunState {
    text: String,
    /// The reasoning streamed so far (`thinking` stream).
    thinking: String,
    /// Length of `text` when the last delta was sent.
    sent_len: usize,
    /// Text already sent was taken back (a rewrite before `sent_len`) since
    /// the last delta: the next one replaces the whole text.
    replaced: bool,
    last_delta_at: Option<Instant>,
    /// Seq of the event that last changed `text`.
    text_seq: u64,
    gapped: bool,
    /// A backfill of earlier events was asked for (at most once per run).
    backfill_tried: bool,
    order: u64,
}

/// Per-connection projection state.
#[derive(Debug, Default)]
pub struct Projector {
    runs: HashMap<RunKey, RunState>,
    next_order: u64,
    tool_events: bool,
    /// The connection's own user: events of other users' runs name theirs.
    own_user: String,
    protocol: Protocol,
}

/// A JSON string field parsed as JSON when it is JSON, else kept as a string.
fn json_or_string(raw: &str) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

pub fn usage_json(usage: Option<&Usage>) -> Option<Value> {
    usage.map(|u| {
        json!({
            "input": u.prompt_tokens,
            "output": u.completion_tokens,
            "total": u.total_tokens,
        })
    })
}

fn message(text: &str, ts: i64) -> Value {
    json!({
        "role": "assistant",
        "content": [{ "type": "text", "text": text }],
        "timestamp": ts,
    })
}

impl Projector {
    pub fn new(tool_events: bool, protocol: Protocol) -> Self {
        Self {
            tool_events,
            protocol,
            ..Self::default()
        }
    }

    /// Labels events of runs of users other than `user_id` with their `userId`.
    pub fn with_own_user(mut self, user_id: &str) -> Self {
        user_id.clone_into(&mut self.own_user);
        self
    }

    /// The user to name in `event`'s payloads: its own, when it is not the
    /// connection's.
    fn foreign_user<'a>(&self, event: &'a RunEvent) -> Option<&'a str> {
        let user = event.user_id.as_str();
        (!self.own_user.is_empty() && !user.is_empty() && user != self.own_user).then_some(user)
    }

    /// Runs currently tracked.
    #[cfg(test)]
    pub fn live_runs(&self) -> usize {
        self.runs.len()
    }

    fn run(&mut self, key: &RunKey) -> &mut RunState {
        if !self.runs.contains_key(key) && self.runs.len() >= MAX_RUNS {
            let oldest = self
                .runs
                .iter()
                .min_by_key(|(_, run)| run.order)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.runs.remove(&oldest);
            }
        }
        self.next_order += 1;
        let order = self.next_order;
        self.runs.entry(key.clone()).or_insert_with(|| RunState {
            order,
            ..RunState::default()
        })
    }

    /// Whether `event` is an assistant delta of a run whose earlier text this
    /// connection lacks, and no backfill was tried for that run yet (marks it
    /// tried). The caller then fetches the run's earlier events, feeds them to
    /// [`Projector::absorb`] and projects `event` afterwards.
    pub fn wants_backfill(&mut self, event: &RunEvent) -> bool {
        let Some(run_event::Kind::Assistant(delta)) = &event.kind else {
            return false;
        };
        let offset = usize::try_from(delta.offset).unwrap_or(usize::MAX);
        let run = self.run(&RunKey::of(event));
        if run.backfill_tried || run.gapped || offset <= run.text.len() {
            return false;
        }
        run.backfill_tried = true;
        true
    }

    /// Rebuilds a run's text from its earlier events (oldest first, from the
    /// replay history) without producing frames. Text is taken only when the
    /// history is complete from the start of the run.
    pub fn absorb(&mut self, key: &RunKey, events: &[RunEvent]) {
        let Some(text) = clawgate_proto::run_events::assistant_text(events) else {
            return;
        };
        let seq = events
            .iter()
            .filter(|e| matches!(e.kind, Some(run_event::Kind::Assistant(_))))
            .map(|e| e.seq)
            .max()
            .unwrap_or(0);
        let run = self.run(key);
        if text.len() > run.text.len() && !run.gapped {
            run.text = text;
            run.text_seq = seq;
            // The client has seen none of it: the next delta is due at once.
            run.last_delta_at = None;
        }
    }

    /// The frames `event` produces on this connection at time `now`.
    pub fn project(&mut self, event: &RunEvent, now: Instant) -> Vec<EventOut> {
        let mut out = self.project_run(event, now);
        if let Some(user) = self.foreign_user(event) {
            for frame in &mut out {
                frame.payload["userId"] = json!(user);
            }
        }
        if self.protocol == Protocol::V4 {
            for frame in &mut out {
                if !event.agent_id.is_empty() {
                    frame.payload["agentId"] = json!(event.agent_id);
                }
                if frame.event == "agent" {
                    // clawgate runs no heartbeat turns.
                    frame.payload["isHeartbeat"] = json!(false);
                }
            }
        }
        out
    }

    fn project_run(&mut self, event: &RunEvent, now: Instant) -> Vec<EventOut> {
        let mut out = Vec::new();
        let Some(kind) = &event.kind else {
            return out;
        };
        let key = RunKey::of(event);
        let agent = |stream: &str, data: Value| {
            EventOut::broadcast(
                "agent",
                json!({
                    "runId": event.run_id,
                    "seq": event.seq,
                    "stream": stream,
                    "ts": event.ts_ms,
                    "data": data,
                    "sessionKey": event.session_key,
                }),
            )
        };
        match kind {
            run_event::Kind::Start(start) => {
                self.run(&key);
                out.push(agent(
                    "lifecycle",
                    json!({ "phase": "start", "startedAt": start.started_at_ms }),
                ));
            }
            run_event::Kind::Assistant(delta) => {
                let protocol = self.protocol;
                let run = self.run(&key);
                if run.gapped || delta.delta.is_empty() {
                    return out;
                }
                let offset = usize::try_from(delta.offset).unwrap_or(usize::MAX);
                if offset > run.text.len() || !run.text.is_char_boundary(offset) {
                    tracing::debug!(run_id = %event.run_id, offset, "assistant text gap");
                    run.gapped = true;
                    return out;
                }
                run.text.truncate(offset);
                if offset < run.sent_len {
                    run.replaced = true;
                    run.sent_len = offset;
                }
                run.text.push_str(&delta.delta);
                run.text_seq = event.seq;
                out.push(agent(
                    "assistant",
                    json!({ "text": run.text, "delta": delta.delta }),
                ));
                let due = run
                    .last_delta_at
                    .is_none_or(|at| now.duration_since(at) >= DELTA_THROTTLE);
                if due {
                    out.push(chat_delta(event, run, protocol));
                    run.last_delta_at = Some(now);
                }
            }
            run_event::Kind::Thinking(delta) => {
                let run = self.run(&key);
                let offset = usize::try_from(delta.offset).unwrap_or(usize::MAX);
                if delta.delta.is_empty()
                    || offset > run.thinking.len()
                    || !run.thinking.is_char_boundary(offset)
                {
                    return out;
                }
                run.thinking.truncate(offset);
                run.thinking.push_str(&delta.delta);
                out.push(agent(
                    "thinking",
                    json!({ "text": run.thinking, "delta": delta.delta }),
                ));
            }
            run_event::Kind::ToolStart(tool) => {
                if let Some(flush) = self.flush(event) {
                    out.push(flush);
                }
                if self.tool_events {
                    out.push(EventOut::targeted(
                        "agent",
                        json!({
                            "runId": event.run_id, "seq": event.seq, "stream": "tool",
                            "ts": event.ts_ms, "sessionKey": event.session_key,
                            "data": {
                                "phase": "start", "name": tool.name,
                                "toolCallId": tool.tool_call_id,
                                "args": json_or_string(&tool.arguments_json),
                            },
                        }),
                    ));
                }
            }
            run_event::Kind::ToolResult(tool) => {
                if self.tool_events {
                    out.push(EventOut::targeted(
                        "agent",
                        json!({
                            "runId": event.run_id, "seq": event.seq, "stream": "tool",
                            "ts": event.ts_ms, "sessionKey": event.session_key,
                            "data": {
                                "phase": "result", "name": tool.name,
                                "toolCallId": tool.tool_call_id, "isError": tool.is_error,
                                "result": json_or_string(&tool.result_json),
                            },
                        }),
                    ));
                }
            }
            run_event::Kind::End(end) => {
                let aborted = end.outcome == RunOutcome::Aborted as i32;
                if !aborted && let Some(flush) = self.flush(event) {
                    out.push(flush);
                }
                let streamed = self.runs.remove(&key).filter(|run| !run.gapped);
                let mut chat = json!({
                    "runId": event.run_id,
                    "sessionKey": event.session_key,
                    "seq": event.seq,
                    "state": if aborted { "aborted" } else { "final" },
                });
                if !end.stop_reason.is_empty() {
                    chat["stopReason"] = json!(end.stop_reason);
                }
                if !end.text.is_empty() {
                    chat["message"] = message(&end.text, event.ts_ms);
                } else if let Some(run) = streamed
                    .filter(|run| self.protocol == Protocol::V4 && !aborted && !run.text.is_empty())
                {
                    // v4 clients drop what they streamed when `final` has no
                    // message: keep the text the deltas carried.
                    chat["message"] = message(&run.text, event.ts_ms);
                }
                let lifecycle = if aborted {
                    json!({
                        "phase": "end", "status": "cancelled", "aborted": true,
                        "stopReason": end.stop_reason,
                        "startedAt": end.started_at_ms, "endedAt": end.ended_at_ms,
                    })
                } else {
                    if let Some(usage) = usage_json(end.usage.as_ref()) {
                        chat["usage"] = usage;
                    }
                    json!({
                        "phase": "end", "stopReason": end.stop_reason,
                        "startedAt": end.started_at_ms, "endedAt": end.ended_at_ms,
                    })
                };
                out.push(agent("lifecycle", lifecycle));
                out.push(EventOut::broadcast("chat", chat));
            }
            run_event::Kind::Error(error) => {
                if let Some(flush) = self.flush(event) {
                    out.push(flush);
                }
                self.runs.remove(&key);
                out.push(agent(
                    "lifecycle",
                    json!({
                        "phase": "error", "error": error.message,
                        "startedAt": error.started_at_ms, "endedAt": error.ended_at_ms,
                    }),
                ));
                let kind = if error.kind.is_empty() {
                    "unknown"
                } else {
                    &error.kind
                };
                let mut chat = json!({
                    "runId": event.run_id,
                    "sessionKey": event.session_key,
                    "seq": event.seq,
                    "state": "error",
                    "errorMessage": error.message,
                    "errorKind": kind,
                });
                if !error.text.is_empty() {
                    chat["message"] = message(&error.text, event.ts_ms);
                }
                out.push(EventOut::broadcast("chat", chat));
            }
        }
        out
    }

    /// The delta holding text the throttle kept back, if any.
    fn flush(&mut self, event: &RunEvent) -> Option<EventOut> {
        let protocol = self.protocol;
        let run = self.runs.get_mut(&RunKey::of(event))?;
        if run.gapped || (run.sent_len == run.text.len() && !run.replaced) {
            return None;
        }
        let seq = run.text_seq;
        let mut delta = chat_delta(event, run, protocol);
        delta.payload["seq"] = json!(seq);
        Some(delta)
    }
}

/// The `chat` delta of `run`'s text; marks the text sent.
fn chat_delta(event: &RunEvent, run: &mut RunState, protocol: Protocol) -> EventOut {
    let mut payload = json!({
        "runId": event.run_id,
        "sessionKey": event.session_key,
        "seq": run.text_seq,
        "state": "delta",
        "message": message(&run.text, event.ts_ms),
    });
    if protocol == Protocol::V4 {
        if run.replaced {
            payload["deltaText"] = json!(run.text);
            payload["replace"] = json!(true);
        } else {
            payload["deltaText"] = json!(run.text.get(run.sent_len..).unwrap_or_default());
        }
    }
    run.sent_len = run.text.len();
    run.replaced = false;
    EventOut::droppable("chat", payload)
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;
