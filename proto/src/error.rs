//! The one error model of clawgate, and the one place it is mapped to gRPC status
//! codes, HTTP statuses and the wire codes of each protocol dialect.
//!
//! Every service returns [`ServiceError`]. It crosses a gRPC hop unchanged: the
//! code, retry hints and details ride in the status details, so a caller sees
//! the same error whether the service is local or remote.

use serde::{Deserialize, Serialize};

/// What went wrong, independent of transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The caller sent something malformed or inconsistent.
    InvalidRequest,
    /// Credentials are missing, wrong or expired.
    Unauthorized,
    /// Authenticated, but not allowed to do this (missing scope or role).
    Forbidden,
    /// The device must be paired (approved) first.
    NotPaired,
    NotFound,
    AlreadyExists,
    /// The request is valid but the system is not in a state to run it
    /// (e.g. a setting is missing, the session is busy).
    FailedPrecondition,
    /// A dependency is down or the system is starting or draining; retry later.
    Unavailable,
    /// A rate limit or quota was hit.
    ResourceExhausted,
    /// A bug or an unexpected failure; details are logged, not returned.
    Internal,
    Unimplemented,
    /// The agent did not finish in time.
    Timeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotPaired => "NOT_PAIRED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Unavailable => "UNAVAILABLE",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Internal => "INTERNAL",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Timeout => "TIMEOUT",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidRequest => Code::InvalidArgument,
            Self::Unauthorized => Code::Unauthenticated,
            Self::Forbidden | Self::NotPaired => Code::PermissionDenied,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::Unavailable => Code::Unavailable,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Internal => Code::Internal,
            Self::Unimplemented => Code::Unimplemented,
            Self::Timeout => Code::DeadlineExceeded,
        }
    }

    /// The code for a gRPC status that did not come from a clawgate service.
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidRequest,
            Code::Unauthenticated => Self::Unauthorized,
            Code::PermissionDenied => Self::Forbidden,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::FailedPrecondition | Code::Aborted => Self::FailedPrecondition,
            Code::Unavailable | Code::Cancelled => Self::Unavailable,
            Code::ResourceExhausted => Self::ResourceExhausted,
            Code::Unimplemented => Self::Unimplemented,
            Code::DeadlineExceeded => Self::Timeout,
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => Self::Internal,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::NotPaired => 403,
            Self::NotFound => 404,
            Self::AlreadyExists => 409,
            Self::FailedPrecondition => 412,
            Self::ResourceExhausted => 429,
            Self::Internal => 500,
            Self::Unimplemented => 501,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// Wire code of the OpenClaw v3 dialect, whose code set is small:
    /// everything the caller did wrong is `INVALID_REQUEST`, server-side trouble is
    /// `UNAVAILABLE`.
    pub fn openclaw_code(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::Unauthorized
            | Self::Forbidden
            | Self::NotFound
            | Self::AlreadyExists
            | Self::FailedPrecondition
            | Self::Unimplemented => "INVALID_REQUEST",
            Self::NotPaired => "NOT_PAIRED",
            Self::Unavailable | Self::ResourceExhausted | Self::Internal => "UNAVAILABLE",
            Self::Timeout => "AGENT_TIMEOUT",
        }
    }

    /// Wire code of OpenClaw protocol v4: v3's, except that a refusal for
    /// want of permission is `FORBIDDEN` (v4 added the code).
    pub fn openclaw_v4_code(self) -> &'static str {
        match self {
            Self::Forbidden => "FORBIDDEN",
            other => other.openclaw_code(),
        }
    }

    /// Wire code of the goclaw dialect.
    pub fn goclaw_code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized | Self::Forbidden => "UNAUTHORIZED",
            Self::NotPaired => "NOT_PAIRED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Unavailable => "UNAVAILABLE",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Internal => "INTERNAL",
            Self::Unimplemented => "NOT_IMPLEMENTED",
            Self::Timeout => "AGENT_TIMEOUT",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a service returns to its caller. The message is safe to show to a
/// client; internal detail is logged where the error is made, never put here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Structured detail for the client (e.g. `{"reason": "session-busy"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: matches!(code, ErrorCode::Unavailable),
            retry_after_ms: None,
            details: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// An unexpected failure. `detail` is logged here and not returned to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retryable = true;
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn not_retryable(mut self) -> Self {
        self.retryable = false;
        self.retry_after_ms = None;
        self
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(err: ServiceError) -> Self {
        let body = serde_json::to_vec(&err).unwrap_or_default();
        tonic::Status::with_details(err.code.grpc_code(), err.message, body.into())
    }
}

impl From<tonic::Status> for ServiceError {
    fn from(status: tonic::Status) -> Self {
        if let Ok(err) = serde_json::from_slice::<ServiceError>(status.details()) {
            return err;
        }
        let code = ErrorCode::from_grpc_code(status.code());
        match code {
            // A transport failure: the service could not be reached.
            ErrorCode::Unavailable => {
                tracing::warn!(status = %status, "service unavailable");
                ServiceError::unavailable("service unavailable")
            }
            ErrorCode::Internal => ServiceError::internal(status),
            _ => ServiceError::new(code, status.message().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_grpc_hop() {
        let err = ServiceError::failed_precondition("session busy")
            .retry_after(250)
            .with_details(serde_json::json!({"reason": "session-busy"}));
        let status: tonic::Status = err.clone().into();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(ServiceError::from(status), err);
    }

    #[test]
    fn foreign_status_maps_by_code() {
        let err = ServiceError::from(tonic::Status::not_found("nope"));
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(err.message, "nope");
        let err = ServiceError::from(tonic::Status::internal("secret detail"));
        assert_eq!(err.code, ErrorCode::Internal);
        assert_eq!(err.message, "internal error");
    }

    #[test]
    fn dialect_codes() {
        assert_eq!(ErrorCode::Forbidden.openclaw_code(), "INVALID_REQUEST");
        assert_eq!(ErrorCode::Forbidden.goclaw_code(), "UNAUTHORIZED");
        assert_eq!(ErrorCode::Internal.openclaw_code(), "UNAVAILABLE");
        assert_eq!(ErrorCode::NotPaired.openclaw_code(), "NOT_PAIRED");
    }
}
