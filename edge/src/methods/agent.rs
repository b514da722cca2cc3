//! Agent turns: OpenClaw `agent` (its params; the connection answers it twice,
//! see [`crate::openclaw::agent_reply`]) and `agent.wait` (a run's end, for the
//! caller's own runs).
//!
//! `agent` params act as in the reference where clawgate has the mechanism:
//! `message`, `idempotencyKey` (the run id), the agent and session selection
//! (`agentId`, `sessionKey`, `sessionId`, which in clawgate is the session
//! key; no session ⇒ the agent's main session), and `timeout` (seconds, the
//! run's bound; the answer is awaited that long plus a grace). Everything else
//! the reference lists changes what a turn does (delivery to channels, model
//! and provider overrides, thinking levels, attachments, prompt shaping,
//! lanes, session resets) and does not exist here: such a field is refused
//! with a clear error unless it is absent, `null`, or its neutral value
//! (`deliver:false`, `bestEffortDeliver:false`, empty strings and lists).
//!
//! Invariants: an `agentId` and a session key of another agent are refused;
//! a malformed `agent:` key is refused; the message is sanitized and not
//! empty; `agent.wait` reads only the caller's own runs (the runner's
//! `GetRun` scopes by principal: another user's run is not found) and waits
//! at most its `timeoutMs`.

use std::time::Duration;

use clawgate_proto::runner::{GetRunRequest, RunInfo, RunState, RunnerApi, StartRunRequest};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::decl::{AgentRun, Handler, Method, Outcome, Request, Runs, Scope, Versions, job};
use crate::params::{Obj, Style};
use crate::session_key;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method {
        name: "agent",
        openclaw: Some(Scope::Write),
        // goclaw's `agent` is another method (an agent's running status).
        goclaw: None,
        handler: Handler::Agent(parse_agent),
        versions: Versions::ALL,
    },
    Method::call("agent.wait", Some(Scope::Write), None, |r| {
        parse_wait(r).map(job)
    }),
];

/// How long an answer is awaited beyond the run's own timeout (the runner
/// ends the run at its timeout; this only covers a lost terminal event).
pub const WAIT_GRACE: Duration = Duration::from_secs(30);

/// `agent.wait`'s default `timeoutMs` (the reference's).
const DEFAULT_WAIT_MS: i64 = 30_000;

/// Longest `agent.wait` (one day).
const MAX_WAIT_MS: i64 = 86_400_000;

/// The keys the reference's `agent` params schema has that act here.
const ACTING_KEYS: [&str; 7] = [
    "message",
    "idempotencyKey",
    "agentId",
    "sessionKey",
    "sessionId",
    "timeout",
    "deliver",
];

/// The reference's other `agent` params: refused unless neutral.
const UNSUPPORTED_KEYS: [&str; 29] = [
    "provider",
    "model",
    "to",
    "replyTo",
    "thinking",
    "attachments",
    "channel",
    "replyChannel",
    "accountId",
    "replyAccountId",
    "threadId",
    "groupId",
    "groupChannel",
    "groupSpace",
    "bestEffortDeliver",
    "lane",
    "cleanupBundleMcpOnRunEnd",
    "modelRun",
    "promptMode",
    "extraSystemPrompt",
    "bootstrapContextMode",
    "bootstrapContextRunKind",
    "acpTurnSource",
    "internalEvents",
    "inputProvenance",
    "voiceWakeTrigger",
    "label",
    "spawnedBy",
    "workspaceDir",
];

/// Whether an unsupported field says nothing (absent, null, false, empty).
fn neutral(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(list)) => list.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

/// Strips control characters other than newline, carriage return and tab.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect()
}

/// `agent` params into the run to start and how long its end is awaited.
pub fn parse_agent(request: &Request<'_>) -> Result<AgentRun, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let mut allowed: Vec<&str> = ACTING_KEYS.to_vec();
    allowed.extend(UNSUPPORTED_KEYS);
    let obj = request.closed(&allowed)?;
    for key in UNSUPPORTED_KEYS {
        if !neutral(obj.raw(key)) {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    if obj.opt_bool("deliver").map_err(bad)? == Some(true) {
        return Err(bad(
            "deliver is not supported: there is no channel to deliver to".into(),
        ));
    }
    let message = sanitize(obj.req_str("message").map_err(bad)?);
    if message.trim().is_empty() {
        return Err(bad("message is required".into()));
    }
    let command = message.trim_start().to_lowercase();
    if ["/new", "/reset"]
        .iter()
        .any(|c| command == *c || command.starts_with(&format!("{c} ")))
    {
        return Err(bad("/new and /reset are not supported".into()));
    }
    let idempotency_key = obj.req_nonempty_str("idempotencyKey").map_err(bad)?;
    let timeout_s = obj
        .opt_int("timeout", 0, i64::from(u32::MAX / 1000))
        .map_err(bad)?;
    let (session_key, agent_id) = session_of(&obj, request)?;
    let timeout_ms = timeout_s
        .and_then(|s| u32::try_from(s.saturating_mul(1000)).ok())
        .unwrap_or(0);
    let wait = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into()) + WAIT_GRACE);
    Ok(AgentRun {
        start: StartRunRequest {
            session_key,
            agent_id,
            message,
            idempotency_key: idempotency_key.to_owned(),
            timeout_ms,
        },
        wait,
    })
}

/// The session and agent of an `agent` request: the named session (by key, or
/// by id, which is the key), else the agent's main session.
fn session_of(obj: &Obj<'_>, request: &Request<'_>) -> Result<(String, String), ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let agent = obj
        .opt_str("agentId")
        .map_err(bad)?
        .filter(|a| !a.trim().is_empty())
        .map(|a| session_key::normalize_agent_id(a, &config.default_agent_id));
    let default_agent = agent.as_deref().unwrap_or(&config.default_agent_id);
    let canonical = |raw: &str| {
        session_key::canonicalize(raw, default_agent, &config.main_key)
            .map_err(|err| bad(err.to_string()))
    };
    let by_key = match obj.opt_str("sessionKey").map_err(bad)? {
        Some(raw) if !raw.trim().is_empty() => Some(canonical(raw)?),
        _ => None,
    };
    let by_id = match obj.opt_str("sessionId").map_err(bad)? {
        Some(raw) if !raw.trim().is_empty() => Some(canonical(raw)?),
        _ => None,
    };
    let key = match (by_key, by_id) {
        (Some(key), Some(id)) if key != id => {
            return Err(bad("sessionId does not match sessionKey".into()));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => format!(
            "agent:{default_agent}:{}",
            config.main_key.trim().to_lowercase()
        ),
    };
    let key_agent = session_key::agent_of(&key).unwrap_or(default_agent);
    if let Some(agent) = &agent
        && agent != key_agent
    {
        return Err(bad(format!(
            "agentId {agent} does not match the session's agent {key_agent}"
        )));
    }
    Ok((key.clone(), key_agent.to_owned()))
}

/// A validated `agent.wait`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub run_id: String,
    pub timeout: Duration,
}

fn parse_wait(request: &Request<'_>) -> Result<Wait, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let obj = request.closed(&["runId", "timeoutMs"])?;
    let run_id = obj.req_nonempty_str("runId").map_err(bad)?;
    let timeout_ms = obj
        .opt_int("timeoutMs", 0, MAX_WAIT_MS)
        .map_err(bad)?
        .unwrap_or(DEFAULT_WAIT_MS);
    Ok(Wait {
        run_id: run_id.to_owned(),
        timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
    })
}

/// First and longest pause between two looks at a waited run.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

impl Runs for Wait {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        wait(state, principal, self).await.into()
    }
}

/// Looks at the run until it ended or the wait's timeout passed.
async fn wait(state: &EdgeState, principal: &Principal, call: Wait) -> Result<Value, ServiceError> {
    let deadline = Instant::now() + call.timeout;
    let mut pause = POLL_FIRST;
    loop {
        let request = GetRunRequest {
            run_id: call.run_id.clone(),
        };
        let run = state.services.runner.get_run(principal, request).await;
        let run = match run {
            Ok(run) => run,
            Err(err) if err.code == ErrorCode::NotFound => {
                return Err(ServiceError::not_found(format!(
                    "run not found: {}",
                    call.run_id
                )));
            }
            Err(err) => return Err(err),
        };
        if let Some(answer) = wait_result(&run) {
            return Ok(answer);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(json!({ "runId": call.run_id, "status": "timeout" }));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// `agent.wait`'s answer for an ended run; `None` while it runs.
pub fn wait_result(run: &RunInfo) -> Option<Value> {
    let state = RunState::try_from(run.state).ok()?;
    let status = match state {
        RunState::Completed | RunState::Aborted => "ok",
        RunState::Failed if run.stop_reason == "timeout" => "timeout",
        RunState::Failed => "error",
        RunState::Running | RunState::Unspecified => return None,
    };
    let mut answer = json!({
        "runId": run.run_id,
        "status": status,
        "startedAt": run.started_at_ms,
        "endedAt": run.ended_at_ms,
    });
    if !run.stop_reason.is_empty() {
        answer["stopReason"] = json!(run.stop_reason);
    }
    if state == RunState::Failed && !run.error.is_empty() {
        answer["error"] = json!(run.error);
    }
    Some(answer)
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
