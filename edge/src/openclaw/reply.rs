//! How an OpenClaw connection answers: [`Reply`] (a payload, an error, or
//! both, as a failed `chat.send` has), and the `chat.send` acknowledgement.
//!
//! Invariant: a reply keeps the service error; it becomes a wire error only
//! when sent, in the connection's protocol version, through
//! `ErrorCode::openclaw_code`/`openclaw_v4_code` (via [`ErrorShape::openclaw_in`]).

use clawgate_proto::runner::{RunState, RunnerApi, StartRunRequest, StartStatus};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};

use crate::frames::ErrorShape;
use crate::state::EdgeState;
use crate::version::Protocol;

/// An answer: payload, error, or both (`chat.send` of a failed run).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub payload: Option<Value>,
    pub error: Option<ServiceError>,
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
            error: Some(err.clone()),
        }
    }

    /// The error as the wire of `protocol` carries it.
    pub fn error_shape(&self, protocol: Protocol) -> Option<ErrorShape> {
        self.error
            .as_ref()
            .map(|err| ErrorShape::openclaw_in(err, protocol))
    }

    pub fn from_result(result: Result<Value, ServiceError>) -> Self {
        match result {
            Ok(payload) => Self::ok(payload),
            Err(err) => Self::err(&err),
        }
    }
}

/// Starts the run of a `chat.send` and answers as the reference does: the
/// ack `{runId, status}` (`started`, `in_flight`, `ok`, or `error` with the
/// run's error alongside), or the stop command's `{ok, aborted, runIds}`.
pub async fn chat_send(
    state: &EdgeState,
    principal: &Principal,
    request: StartRunRequest,
) -> Reply {
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
                    error: Some(err),
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
