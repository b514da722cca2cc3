//! The two answers of an OpenClaw `agent` request (reference §3.6, §6.4): the
//! acceptance `{runId, sessionKey, agentId, status:"accepted", acceptedAt}` as
//! soon as the runner took the run, then, on the same request id, the run's end:
//! `{runId, status:"ok", summary:"completed", result:{payloads, meta}}`, a
//! timeout `{status:"timeout", summary:"aborted", stopReason}`, or an error
//! (`ok:false`, payload `{runId, status:"error", summary}`, `UNAVAILABLE`). A
//! repeated idempotency key of a run that already ended gets only the end.
//!
//! [`Waits`] holds the connection's requests waiting for their run's end,
//! keyed by run id; it is filled before the run is started, so a run that ends
//! before `start_run` returns is still answered.
//!
//! Invariants: a waiter is answered exactly once by its end (the acceptance
//! comes first), and the wait is bounded: it ends on the run's terminal event
//! (of the connection's own user only: run ids are idempotency keys), on a
//! runner check of the run every second tick (the bus is at most once), on the
//! request's deadline (`timeout` plus a grace), or when the socket closes (the
//! waiters go with the connection); waiters per connection are bounded
//! (`max_pending_chat_sends`).

use std::collections::HashMap;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, Usage, run_event};
use clawgate_proto::runner::{RunInfo, RunState, RunnerApi, StartRunResponse, StartStatus};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::projection::usage_json;
use super::reply::Reply;
use crate::methods::AgentRun;
use crate::state::EdgeState;

/// What `start_run` answered for one `agent` request.
#[derive(Debug)]
pub struct Accepted {
    pub id: String,
    pub run_id: String,
    pub accepted_at_ms: i64,
    pub result: Result<StartRunResponse, ServiceError>,
}

/// Starts the run of request `id`.
pub async fn start(
    state: &EdgeState,
    principal: &Principal,
    id: String,
    run: AgentRun,
) -> Accepted {
    let run_id = run.start.idempotency_key.clone();
    let result = state.services.runner.start_run(principal, run.start).await;
    Accepted {
        id,
        run_id,
        accepted_at_ms: now_ms(),
        result,
    }
}

#[derive(Debug)]
struct Waiter {
    id: String,
    session_key: String,
    agent_id: String,
    wait: Option<Duration>,
    /// Set once the acceptance was sent.
    deadline: Option<Option<Instant>>,
    /// Ticks seen since the acceptance.
    ticks: u32,
}

#[derive(Debug, Default)]
struct Pending {
    waiters: Vec<Waiter>,
    /// The run's end, when it came before a waiter's acceptance.
    ended: Option<Ended>,
}

/// The requests of one connection waiting for their run's end.
#[derive(Debug, Default)]
pub struct Waits {
    runs: HashMap<String, Pending>,
    count: usize,
}

/// Answers to send, in order: request id and reply.
pub type Answers = Vec<(String, Reply)>;

impl Waits {
    /// Registers request `id` for `run` before the run starts; refused when
    /// `max` requests already wait.
    pub fn reserve(&mut self, id: &str, run: &AgentRun, max: usize) -> Result<(), ServiceError> {
        if self.count >= max {
            return Err(ServiceError::new(
                ErrorCode::ResourceExhausted,
                "too many agent calls waiting",
            ));
        }
        self.count += 1;
        let pending = self
            .runs
            .entry(run.start.idempotency_key.clone())
            .or_default();
        pending.waiters.push(Waiter {
            id: id.to_owned(),
            session_key: run.start.session_key.clone(),
            agent_id: run.start.agent_id.clone(),
            wait: run.wait,
            deadline: None,
            ticks: 0,
        });
        Ok(())
    }

    /// Forgets request `id` of `run_id` (it was answered).
    fn forget(&mut self, run_id: &str, id: &str) -> Option<Waiter> {
        let pending = self.runs.get_mut(run_id)?;
        let at = pending.waiters.iter().position(|w| w.id == id)?;
        let waiter = pending.waiters.remove(at);
        self.count -= 1;
        if pending.waiters.is_empty() {
            self.runs.remove(run_id);
        }
        Some(waiter)
    }

    /// Forgets request `id` whose run could not be started.
    pub fn cancel(&mut self, run_id: &str, id: &str) {
        self.forget(run_id, id);
    }

    /// A run event: when it ends a run of `own_user` that requests wait for,
    /// the answers of those already accepted (the others get theirs with
    /// their acceptance).
    pub fn on_event(&mut self, event: &RunEvent, own_user: &str) -> Answers {
        if event.user_id != own_user || !self.runs.contains_key(&event.run_id) {
            return Vec::new();
        }
        match Ended::of_event(event) {
            Some(ended) => self.ended(ended),
            None => Vec::new(),
        }
    }

    /// Answers every accepted waiter of the run; keeps the end for the others.
    fn ended(&mut self, ended: Ended) -> Answers {
        let Some(pending) = self.runs.get_mut(&ended.run_id) else {
            return Vec::new();
        };
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut pending.waiters)
            .into_iter()
            .partition(|w| w.deadline.is_some());
        pending.waiters = waiting;
        self.count -= done.len();
        let answers = done
            .iter()
            .map(|w| (w.id.clone(), ended.reply(w)))
            .collect();
        if pending.waiters.is_empty() {
            self.runs.remove(&ended.run_id);
        } else {
            pending.ended = Some(ended);
        }
        answers
    }

    /// What to send for a request whose `start_run` returned: its first
    /// answer, and its end when that is already known (sent after the run's
    /// held events).
    pub fn accepted(&mut self, accepted: Accepted) -> (Reply, Option<Reply>) {
        let Accepted {
            id,
            run_id,
            accepted_at_ms,
            result,
        } = accepted;
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                self.forget(&run_id, &id);
                return (Reply::err(&err), None);
            }
        };
        match StartStatus::try_from(response.status) {
            Ok(StartStatus::Started | StartStatus::InFlight) => {}
            Ok(StartStatus::Done) => {
                let waiter = self.forget(&run_id, &id);
                let ended = response.run.as_ref().and_then(Ended::of_run);
                let reply = match (waiter, ended) {
                    (Some(waiter), Some(ended)) => ended.reply(&waiter),
                    _ => Reply::err(&ServiceError::internal("the runner returned no run")),
                };
                return (reply, None);
            }
            Ok(StartStatus::StopCommand) => {
                self.forget(&run_id, &id);
                let reply = Reply::ok(json!({
                    "runId": run_id, "status": "ok", "summary": "stop command",
                    "aborted": response.aborted, "runIds": response.aborted_run_ids,
                }));
                return (reply, None);
            }
            Ok(StartStatus::Unspecified) | Err(_) => {
                self.forget(&run_id, &id);
                let err = ServiceError::internal("runner returned no start status");
                return (Reply::err(&err), None);
            }
        }
        let Some(pending) = self.runs.get_mut(&run_id) else {
            return (
                Reply::err(&ServiceError::internal("agent call not registered")),
                None,
            );
        };
        let Some(waiter) = pending.waiters.iter_mut().find(|w| w.id == id) else {
            return (
                Reply::err(&ServiceError::internal("agent call not registered")),
                None,
            );
        };
        waiter.deadline = Some(waiter.wait.map(|wait| Instant::now() + wait));
        let ack = Reply::ok(json!({
            "runId": run_id,
            "sessionKey": waiter.session_key,
            "agentId": waiter.agent_id,
            "status": "accepted",
            "acceptedAt": accepted_at_ms,
        }));
        let known_end = pending.ended.clone();
        let end = known_end.map(|ended| {
            let reply = self.forget(&run_id, &id).map(|waiter| ended.reply(&waiter));
            reply.unwrap_or_else(|| Reply::err(&ServiceError::internal("agent call lost")))
        });
        (ack, end)
    }

    /// On a tick: the answers of requests whose deadline passed, and the runs
    /// to check with the runner (waited for two ticks or more).
    pub fn on_tick(&mut self, now: Instant) -> (Answers, Vec<String>) {
        let mut answers = Vec::new();
        let mut checks = Vec::new();
        let mut expired = Vec::new();
        for (run_id, pending) in &mut self.runs {
            let mut check = false;
            for waiter in &mut pending.waiters {
                let Some(deadline) = waiter.deadline else {
                    continue;
                };
                if deadline.is_some_and(|at| now >= at) {
                    expired.push((run_id.clone(), waiter.id.clone()));
                    continue;
                }
                waiter.ticks += 1;
                check |= waiter.ticks >= 2;
            }
            if check {
                checks.push(run_id.clone());
            }
        }
        for (run_id, id) in expired {
            if self.forget(&run_id, &id).is_some() {
                let reply = Reply::ok(json!({
                    "runId": run_id, "status": "timeout", "summary": "timed out waiting for the run to end",
                }));
                answers.push((id, reply));
            }
        }
        (answers, checks)
    }

    /// A runner check of `run_id`: the answers when it has ended.
    pub fn checked(&mut self, result: Result<RunInfo, ServiceError>) -> Answers {
        match result.ok().as_ref().and_then(Ended::of_run) {
            Some(ended) => self.ended(ended),
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Completed,
    Aborted,
    TimedOut,
    Failed(String),
}

/// A run's end, from its terminal event or its info.
#[derive(Debug, Clone, PartialEq)]
struct Ended {
    run_id: String,
    outcome: Outcome,
    text: String,
    stop_reason: String,
    started_at_ms: i64,
    ended_at_ms: i64,
    usage: Option<Usage>,
}

impl Ended {
    fn of_event(event: &RunEvent) -> Option<Self> {
        let run_id = event.run_id.clone();
        match event.kind.as_ref()? {
            run_event::Kind::End(end) => Some(Self {
                run_id,
                outcome: if end.outcome == RunOutcome::Aborted as i32 {
                    Outcome::Aborted
                } else {
                    Outcome::Completed
                },
                text: end.text.clone(),
                stop_reason: end.stop_reason.clone(),
                started_at_ms: end.started_at_ms,
                ended_at_ms: end.ended_at_ms,
                usage: end.usage,
            }),
            run_event::Kind::Error(error) => Some(Self {
                run_id,
                outcome: if error.kind == "timeout" {
                    Outcome::TimedOut
                } else {
                    Outcome::Failed(error.message.clone())
                },
                text: error.text.clone(),
                stop_reason: if error.kind == "timeout" {
                    "timeout".to_owned()
                } else {
                    String::new()
                },
                started_at_ms: error.started_at_ms,
                ended_at_ms: error.ended_at_ms,
                usage: None,
            }),
            _ => None,
        }
    }

    fn of_run(run: &RunInfo) -> Option<Self> {
        let outcome = match RunState::try_from(run.state).ok()? {
            RunState::Completed => Outcome::Completed,
            RunState::Aborted => Outcome::Aborted,
            RunState::Failed if run.stop_reason == "timeout" => Outcome::TimedOut,
            RunState::Failed => Outcome::Failed(run.error.clone()),
            RunState::Running | RunState::Unspecified => return None,
        };
        Some(Self {
            run_id: run.run_id.clone(),
            outcome,
            text: run.text.clone(),
            stop_reason: run.stop_reason.clone(),
            started_at_ms: run.started_at_ms,
            ended_at_ms: run.ended_at_ms,
            usage: run.usage,
        })
    }

    /// The run's result: its text as the one payload, and what is known of it.
    fn result(&self, waiter: &Waiter) -> Value {
        let payloads: Vec<Value> = if self.text.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "text": self.text, "mediaUrl": null })]
        };
        let mut agent_meta = json!({
            "sessionId": waiter.session_key,
            "sessionKey": waiter.session_key,
            "agentId": waiter.agent_id,
        });
        if let Some(usage) = usage_json(self.usage.as_ref()) {
            agent_meta["usage"] = usage;
        }
        let mut meta = json!({
            "durationMs": (self.ended_at_ms - self.started_at_ms).max(0),
            "agentMeta": agent_meta,
            "aborted": self.outcome == Outcome::Aborted,
        });
        if !self.stop_reason.is_empty() {
            meta["stopReason"] = json!(self.stop_reason);
        }
        json!({ "payloads": payloads, "meta": meta })
    }

    /// The final answer of `waiter`.
    fn reply(&self, waiter: &Waiter) -> Reply {
        let run_id = &self.run_id;
        let result = self.result(waiter);
        let mut payload = match &self.outcome {
            Outcome::Completed => {
                json!({ "runId": run_id, "status": "ok", "summary": "completed", "result": result })
            }
            Outcome::Aborted => {
                json!({ "runId": run_id, "status": "ok", "summary": "aborted", "result": result })
            }
            Outcome::TimedOut => json!({
                "runId": run_id, "status": "timeout", "summary": "aborted", "result": result,
            }),
            Outcome::Failed(message) => {
                let summary = if message.is_empty() {
                    "run failed"
                } else {
                    message.as_str()
                };
                let err = ServiceError::new(ErrorCode::Unavailable, summary).not_retryable();
                return Reply {
                    payload: Some(
                        json!({ "runId": run_id, "status": "error", "summary": summary }),
                    ),
                    error: Some(err),
                };
            }
        };
        if !self.stop_reason.is_empty() {
            payload["stopReason"] = json!(self.stop_reason);
        }
        Reply::ok(payload)
    }
}

#[cfg(test)]
#[path = "agent_reply_tests.rs"]
mod tests;
