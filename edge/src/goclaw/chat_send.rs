//! goclaw's answer to `chat.send` (goclaw notes §2.2, §2.5): given when the
//! run ends, from its terminal event or, for a run that already ended, from
//! its info.
//!
//! Invariant: a failed run answers with an error whose code says why
//! (`timeout`, `rate_limit`, else internal); errors map to wire codes only
//! through `ErrorCode::goclaw_code`.

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, run_event};
use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_proto::{ErrorCode, ServiceError};
use serde_json::{Value, json};

use super::projection::usage_json;

/// The code a failed run is reported with.
fn run_error(kind: &str, message: &str) -> ServiceError {
    let code = match kind {
        "timeout" => ErrorCode::Timeout,
        "rate_limit" => ErrorCode::ResourceExhausted,
        _ => ErrorCode::Internal,
    };
    let message = if message.is_empty() {
        "run failed"
    } else {
        message
    };
    ServiceError::new(code, message).not_retryable()
}

/// `chat.send`'s answer from the run's terminal event.
pub fn final_from_event(event: &RunEvent) -> Result<Value, ServiceError> {
    match &event.kind {
        Some(run_event::Kind::End(end)) if end.outcome == RunOutcome::Aborted as i32 => {
            Ok(json!({ "runId": event.run_id, "cancelled": true, "content": end.text }))
        }
        Some(run_event::Kind::End(end)) => Ok(json!({
            "runId": event.run_id, "content": end.text, "usage": usage_json(end.usage.as_ref()),
        })),
        Some(run_event::Kind::Error(error)) => Err(run_error(&error.kind, &error.message)),
        _ => Err(ServiceError::internal("not a terminal event")),
    }
}

/// `chat.send`'s answer from a finished run's info; `None` while it runs.
pub fn final_from_run(run: &RunInfo) -> Option<Result<Value, ServiceError>> {
    match RunState::try_from(run.state) {
        Ok(RunState::Completed) => Some(Ok(json!({
            "runId": run.run_id, "content": run.text, "usage": usage_json(run.usage.as_ref()),
        }))),
        Ok(RunState::Aborted) => Some(Ok(
            json!({ "runId": run.run_id, "cancelled": true, "content": run.text }),
        )),
        Ok(RunState::Failed) => Some(Err(run_error("", &run.error))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_results() {
        let run = RunInfo {
            run_id: "r".into(),
            state: RunState::Failed as i32,
            error: "boom".into(),
            ..Default::default()
        };
        let err = final_from_run(&run).and_then(Result::err).expect("failed");
        assert_eq!(
            (err.code.goclaw_code(), err.message.as_str()),
            ("INTERNAL", "boom")
        );
        let running = RunInfo {
            state: RunState::Running as i32,
            ..Default::default()
        };
        assert!(final_from_run(&running).is_none());
    }
}
