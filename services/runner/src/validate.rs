//! Validation of runner requests: what a `StartRunRequest` may hold, and the
//! `session-busy` error. Invariant: a request that passes is safe to store and
//! to send to the model (bounded sizes, no control characters but line breaks
//! and tabs).

use std::time::Duration;

use clawgate_proto::ServiceError;
use clawgate_proto::runner::StartRunRequest;

use crate::config::RunnerConfig;

const MAX_SESSION_KEY_CHARS: usize = 512;
pub(crate) const MAX_IDEMPOTENCY_KEY_CHARS: usize = 256;
const MAX_AGENT_ID_CHARS: usize = 128;

/// A `StartRunRequest` that passed validation.
pub(crate) struct ValidStart {
    pub session_key: String,
    pub agent_id: String,
    pub message: String,
    pub run_id: String,
    pub timeout: Duration,
}

pub(crate) fn validate_session_key(session_key: &str) -> Result<(), ServiceError> {
    if session_key.trim().is_empty() {
        return Err(ServiceError::invalid("sessionKey is required"));
    }
    if session_key.chars().count() > MAX_SESSION_KEY_CHARS {
        return Err(ServiceError::invalid(format!(
            "sessionKey is longer than {MAX_SESSION_KEY_CHARS} characters"
        )));
    }
    Ok(())
}

pub(crate) fn validate_start(
    config: &RunnerConfig,
    request: StartRunRequest,
) -> Result<ValidStart, ServiceError> {
    validate_session_key(&request.session_key)?;
    let run_id = request.idempotency_key;
    if run_id.trim().is_empty() {
        return Err(ServiceError::invalid("idempotencyKey is required"));
    }
    if run_id.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(ServiceError::invalid(format!(
            "idempotencyKey is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )));
    }
    if request.agent_id.chars().count() > MAX_AGENT_ID_CHARS {
        return Err(ServiceError::invalid(format!(
            "agentId is longer than {MAX_AGENT_ID_CHARS} characters"
        )));
    }
    if request.message.len() > config.max_message_bytes {
        return Err(ServiceError::invalid(format!(
            "message is longer than {} bytes",
            config.max_message_bytes
        )));
    }
    // Control characters other than line breaks and tabs are stripped, as OpenClaw does.
    let message: String = request
        .message
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect();
    if message.trim().is_empty() {
        return Err(ServiceError::invalid("message required"));
    }
    let timeout = match request.timeout_ms {
        0 => config.run_timeout,
        ms => Duration::from_millis(u64::from(ms)).min(config.run_timeout),
    };
    Ok(ValidStart {
        session_key: request.session_key,
        agent_id: request.agent_id,
        message,
        run_id,
        timeout,
    })
}

pub(crate) fn session_busy(active_run_id: &str) -> ServiceError {
    let mut err = ServiceError::failed_precondition("a run is already active in this session")
        .with_details(serde_json::json!({"reason": "session-busy", "runId": active_run_id}));
    err.retryable = true;
    err
}

#[cfg(test)]
mod tests {
    use clawgate_proto::ErrorCode;

    use super::*;

    fn start(message: &str) -> StartRunRequest {
        StartRunRequest {
            session_key: "main".into(),
            message: message.into(),
            idempotency_key: "k".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation() {
        let config = RunnerConfig::default();
        assert!(validate_start(&config, start("hi")).is_ok());
        assert!(validate_start(&config, start("  ")).is_err());
        let mut request = start("hi");
        request.session_key = "x".repeat(513);
        assert!(validate_start(&config, request).is_err());
        let mut request = start("hi");
        request.idempotency_key.clear();
        assert!(validate_start(&config, request).is_err());
        let big = "x".repeat(config.max_message_bytes + 1);
        assert!(validate_start(&config, start(&big)).is_err());
        let cleaned = validate_start(&config, start("a\u{0}b\nc")).expect("valid");
        assert_eq!(cleaned.message, "ab\nc");
    }

    #[test]
    fn request_timeout_only_shortens() {
        let config = RunnerConfig::default();
        let mut request = start("hi");
        request.timeout_ms = 1_000;
        let valid = validate_start(&config, request).expect("valid");
        assert_eq!(valid.timeout, Duration::from_secs(1));
        let mut request = start("hi");
        request.timeout_ms = u32::MAX;
        let valid = validate_start(&config, request).expect("valid");
        assert_eq!(valid.timeout, config.run_timeout);
    }

    #[test]
    fn busy_error_is_retryable_with_details() {
        let err = session_busy("run-1");
        assert_eq!(err.code, ErrorCode::FailedPrecondition);
        assert!(err.retryable);
        assert_eq!(
            err.details,
            Some(serde_json::json!({"reason": "session-busy", "runId": "run-1"}))
        );
    }
}
