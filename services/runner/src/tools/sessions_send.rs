//! The `sessions_send` tool: the run's model sends a message to another of its
//! user's sessions, which starts a run there (as `chat.send` would), and by
//! default waits for that run's reply.
//!
//! Invariants: the message goes to a session of the run's own user (the
//! principal is the run's, narrowed); never to the run's own session (it is
//! busy with this run); the wait is bounded ([`MAX_WAIT`]) and ends with the
//! calling run (the future is dropped); a target run that is still going when
//! the wait ends keeps going and is reported as `accepted`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::runner::{GetRunRequest, RunState, RunnerApi, StartRunRequest, StartStatus};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

/// The runner the tool starts runs on, while it is alive (`None` once it is
/// gone): the runner hands the tool this instead of itself, so the tool holds
/// no strong reference to it.
pub type RunnerHandle = Box<dyn Fn() -> Option<Arc<dyn RunnerApi>> + Send + Sync>;

/// Longest wait for the target run's reply.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// The wait when the model names none.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Longest message, in bytes.
const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// How often the target run is looked at while waiting.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Sends to another session through the runner that owns it.
pub struct SessionsSend {
    runner: RunnerHandle,
}

impl SessionsSend {
    pub fn new(runner: RunnerHandle) -> Self {
        Self { runner }
    }
}

/// The agent of a session key: `agent:<id>:…` names it, else the run's own.
fn agent_of(session_key: &str, fallback: &str) -> String {
    session_key
        .strip_prefix("agent:")
        .and_then(|tail| tail.split_once(':'))
        .map_or_else(|| fallback.to_owned(), |(agent, _)| agent.to_owned())
}

#[async_trait]
impl Tool for SessionsSend {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sessions_send".to_owned(),
            description: "Sends a message to another of the user's sessions (as sessions_list \
                names them), which starts that session's agent on it, and returns its reply \
                (waiting up to timeoutSeconds; 0 sends without waiting)."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "sessionKey": {"type": "string", "description": "The target session."},
                    "message": {"type": "string", "description": "What to send."},
                    "timeoutSeconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT.as_secs(),
                        "description": "How long to wait for the reply (default 30)."},
                },
                "required": ["sessionKey", "message"],
                "additionalProperties": false,
            }),
        }
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput {
        let text = |key: &str| {
            arguments
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let Some(session_key) = text("sessionKey") else {
            return ToolOutput::error("sessionKey is required (a string)");
        };
        let Some(message) = text("message") else {
            return ToolOutput::error("message is required (a non-empty string)");
        };
        if message.len() > MAX_MESSAGE_BYTES {
            return ToolOutput::error(format!("message is longer than {MAX_MESSAGE_BYTES} bytes"));
        }
        if session_key == context.session_key {
            return ToolOutput::error("a run cannot send to its own session");
        }
        let wait = match arguments.get("timeoutSeconds") {
            None | Some(Value::Null) => DEFAULT_WAIT,
            Some(value) => match value.as_u64() {
                Some(seconds) if seconds <= MAX_WAIT.as_secs() => Duration::from_secs(seconds),
                _ => {
                    return ToolOutput::error(format!(
                        "timeoutSeconds must be an integer from 0 to {}",
                        MAX_WAIT.as_secs()
                    ));
                }
            },
        };
        let Some(runner) = (self.runner)() else {
            return ToolOutput::error("the runner is shutting down");
        };
        let request = StartRunRequest {
            session_key: session_key.to_owned(),
            agent_id: agent_of(session_key, &context.agent_id),
            message: message.to_owned(),
            idempotency_key: format!("send-{}", uuid::Uuid::new_v4().simple()),
            timeout_ms: 0,
        };
        let started = match runner.start_run(&context.principal, request).await {
            Ok(started) => started,
            Err(err) => return ToolOutput::error(format!("not sent: {}", err.message)),
        };
        if started.status == StartStatus::StopCommand as i32 {
            return ToolOutput::json(&json!({
                "sessionKey": session_key, "status": "stopped", "aborted": started.aborted,
            }));
        }
        let run_id = started.run_id;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let info = runner
                .get_run(
                    &context.principal,
                    GetRunRequest {
                        run_id: run_id.clone(),
                    },
                )
                .await;
            match info {
                Ok(info) if info.state != RunState::Running as i32 => {
                    let ok = info.state == RunState::Completed as i32;
                    let output = json!({
                        "sessionKey": session_key,
                        "runId": run_id,
                        "status": if ok { "ok" } else { "error" },
                        "reply": info.text,
                        "error": info.error,
                    });
                    return if ok {
                        ToolOutput::json(&output)
                    } else {
                        ToolOutput {
                            content: output.to_string(),
                            is_error: true,
                        }
                    };
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(error = %err, "the sent run cannot be read yet"),
            }
            if tokio::time::Instant::now() >= deadline {
                return ToolOutput::json(&json!({
                    "sessionKey": session_key, "runId": run_id, "status": "accepted",
                }));
            }
            tokio::time::sleep(POLL_EVERY.min(deadline - tokio::time::Instant::now())).await;
        }
    }
}
