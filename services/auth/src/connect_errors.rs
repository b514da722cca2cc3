//! The refusals of a connect, with the `details` the reference servers send, so
//! clients branch on the same `details.code` (and stop or retry the same way).

use clawgate_proto::{ErrorCode, ServiceError};
use serde_json::{Value, json};

/// An OpenClaw authentication failure: `unauthorized: <reason>` with
/// `{code, authReason, canRetryWithDeviceToken, recommendedNextStep}`.
fn auth_error(
    reason: &str,
    code: &str,
    can_retry_with_device_token: bool,
    next_step: &str,
) -> ServiceError {
    ServiceError::unauthorized(format!("unauthorized: {reason}")).with_details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry_with_device_token,
        "recommendedNextStep": next_step,
    }))
}

pub fn token_missing() -> ServiceError {
    auth_error(
        "gateway token missing",
        "AUTH_TOKEN_MISSING",
        false,
        "update_auth_configuration",
    )
}

/// The shared token was wrong. A client that proved a device and sent no device
/// token may retry once with the device token it stored.
pub fn token_mismatch(can_retry_with_device_token: bool) -> ServiceError {
    let next = if can_retry_with_device_token {
        "retry_with_device_token"
    } else {
        "update_auth_credentials"
    };
    auth_error(
        "gateway token mismatch",
        "AUTH_TOKEN_MISMATCH",
        can_retry_with_device_token,
        next,
    )
}

pub fn device_token_mismatch() -> ServiceError {
    auth_error(
        "device token mismatch",
        "AUTH_DEVICE_TOKEN_MISMATCH",
        false,
        "update_auth_credentials",
    )
}

/// The tenant is unknown or disabled, or the user's membership there was
/// removed: one refusal for all of them (goclaw's `TENANT_ACCESS_REVOKED`).
pub fn tenant_access_revoked() -> ServiceError {
    auth_error(
        "tenant access revoked",
        "TENANT_ACCESS_REVOKED",
        false,
        "update_auth_credentials",
    )
}

/// An API key presented with a proven device that is paired to another
/// tenant or user than the key's.
pub fn api_key_device_mismatch() -> ServiceError {
    auth_error(
        "api key does not match the paired device",
        "AUTH_TOKEN_MISMATCH",
        false,
        "update_auth_credentials",
    )
}

/// A device-less connection that needs a device (a node).
pub fn device_identity_required() -> ServiceError {
    ServiceError::new(ErrorCode::NotPaired, "device identity required").with_details(json!({
        "code": "DEVICE_IDENTITY_REQUIRED",
        "reason": "device-identity-required",
    }))
}

/// A locked-out client: the limiter's error, with the OpenClaw auth details added.
pub fn rate_limited(mut err: ServiceError) -> ServiceError {
    let mut details = match err.details.take() {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    details.insert("code".into(), json!("AUTH_RATE_LIMITED"));
    details.insert("authReason".into(), json!("rate_limited"));
    details.insert("canRetryWithDeviceToken".into(), json!(false));
    details.insert("recommendedNextStep".into(), json!("wait_then_retry"));
    err.details = Some(Value::Object(details));
    err
}

/// The `details` of an OpenClaw `NOT_PAIRED "pairing required: <reason>"` refusal.
pub struct PairingDetails<'a> {
    pub reason: &'a str,
    pub request_id: &'a str,
    pub device_id: &'a str,
    pub requested_role: &'a str,
    pub requested_scopes: &'a [String],
    /// The device's approved roles and scopes, when it is paired.
    pub approved: Option<(&'a [String], &'a [String])>,
}

impl PairingDetails<'_> {
    pub fn message(&self) -> String {
        format!("pairing required: {}", self.reason)
    }

    pub fn to_json(&self) -> Value {
        let mut details = json!({
            "code": "PAIRING_REQUIRED",
            "reason": self.reason,
            "requestId": self.request_id,
            "remediationHint": "approve this device (device.pair.approve with the requestId) \
                                from a connection holding operator.pairing, then reconnect",
            "deviceId": self.device_id,
            "requestedRole": self.requested_role,
            "requestedScopes": self.requested_scopes,
        });
        if let Some((roles, scopes)) = self.approved {
            details["approvedRoles"] = json!(roles);
            details["approvedScopes"] = json!(scopes);
        }
        details
    }
}
