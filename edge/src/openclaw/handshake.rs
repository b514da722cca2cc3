//! OpenClaw `connect`: params schema (§2.2), validation order (§2.3), the auth
//! call, and the `hello-ok` payload (§2.4).
//!
//! Invariants: params are a closed object with `client.id`/`client.mode` from the
//! v4 enums (a superset of v3's; v3 clients send only v3 values) and a `device`
//! object whose five fields are all required; the protocol check runs before
//! auth, negotiates the connection's [`Protocol`] (the highest of `{3, 4}` in
//! the client's range) and otherwise answers the mismatch in the shape of the
//! version the client asked for (v4: `details.code: "PROTOCOL_MISMATCH"`) and
//! closes 1002; the device-less scope and silent scope-upgrade policies are the
//! version's, passed to the auth service as policy flags; every refusal is an error
//! `res` followed by a close (an auth failure, `AUTH_*`, is `INVALID_REQUEST
//! "unauthorized: …"` and 1008, lockouts included); pairing events a connect
//! caused are published before it is answered; `hello-ok.auth.scopes` are the
//! device token's when one was issued, else the principal's (possibly cleared),
//! normalized (sorted, deduplicated, `admin` ⇒ +read +write, `write` ⇒ +read).

use std::sync::Arc;

use clawgate_proto::auth::{
    AuthApi, AuthenticateConnectRequest, ClientInfo, DeviceProof, OpenClawConnect, PairingPending,
};
use clawgate_proto::pb::auth::v1::{authenticate_connect_request, authenticate_connect_response};
use clawgate_proto::principal::normalize_scopes;
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};

use super::hello;
use crate::conn::{Accepted, Rejected};
use crate::frames::{
    CLOSE_INTERNAL, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_TRY_AGAIN_LATER, ErrorShape,
};
use crate::notify::{self, Decision, Notice};
use crate::params::Obj;
use crate::state::{EdgeState, SocketInfo};
use crate::version::Protocol;

/// `client.id` values of the v4 schema (v3's and four more).
pub const CLIENT_IDS: [&str; 17] = [
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-ios",
    "openclaw-android",
    "node-host",
    "test",
    "fingerprint",
    "openclaw-probe",
    "openclaw-browser-copilot",
    "openclaw-linux",
    "openclaw-watchos",
    "openclaw-worker",
];

/// `client.mode` values of the v4 schema (v3's and `worker`).
pub const CLIENT_MODES: [&str; 8] = [
    "webchat", "cli", "ui", "backend", "node", "probe", "test", "worker",
];

const CONNECT_KEYS: [&str; 16] = [
    "minProtocol",
    "maxProtocol",
    "client",
    "caps",
    "commands",
    "permissions",
    "pathEnv",
    "role",
    "scopes",
    "device",
    "auth",
    "locale",
    "userAgent",
    // v4: what a worker or computer-use client offers; clawgate runs neither
    // and uses no model catalog from clients, so they are checked for shape
    // and not acted on.
    "computerUse",
    "workerRuns",
    "modelCatalog",
];
const CLIENT_KEYS: [&str; 10] = [
    "id",
    "displayName",
    "version",
    "platform",
    "deviceFamily",
    "modelIdentifier",
    "mode",
    "instanceId",
    "buildId",
    "timeZone",
];
const DEVICE_KEYS: [&str; 5] = ["id", "publicKey", "signature", "signedAt", "nonce"];
/// v4 adds two runtime tokens clawgate does not issue: a connect offering only
/// them is a connect without credentials.
const AUTH_KEYS: [&str; 6] = [
    "token",
    "bootstrapToken",
    "deviceToken",
    "password",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];

/// Validated connect params.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectParams {
    pub min_protocol: i64,
    pub max_protocol: i64,
    pub client: ClientInfo,
    pub caps: Vec<String>,
    pub role: Option<String>,
    pub scopes: Vec<String>,
    pub device: Option<DeviceProof>,
    pub token: Option<String>,
    pub bootstrap_token: Option<String>,
    pub device_token: Option<String>,
    pub password: Option<String>,
}

fn owned(value: Option<&str>) -> String {
    value.unwrap_or_default().to_owned()
}

/// Checks `params` against the closed `ConnectParamsSchema`.
pub fn parse_connect(params: &Value) -> Result<ConnectParams, String> {
    let obj = Obj::new(params, "")?;
    obj.closed(&CONNECT_KEYS)?;
    let min_protocol = obj.req_int("minProtocol", 1, i64::MAX)?;
    let max_protocol = obj.req_int("maxProtocol", 1, i64::MAX)?;
    let client_obj = obj.req_obj("client")?;
    client_obj.closed(&CLIENT_KEYS)?;
    let client = ClientInfo {
        id: client_obj.req_enum("id", &CLIENT_IDS)?.to_owned(),
        display_name: owned(client_obj.opt_nonempty_str("displayName")?),
        version: client_obj.req_nonempty_str("version")?.to_owned(),
        platform: client_obj.req_nonempty_str("platform")?.to_owned(),
        device_family: owned(client_obj.opt_str("deviceFamily")?),
        model_identifier: owned(client_obj.opt_str("modelIdentifier")?),
        mode: client_obj.req_enum("mode", &CLIENT_MODES)?.to_owned(),
        instance_id: owned(client_obj.opt_str("instanceId")?),
    };
    client_obj.opt_str_len("buildId", 96)?;
    client_obj.opt_str_len("timeZone", 64)?;
    let caps = obj.opt_str_array("caps")?.unwrap_or_default();
    obj.opt_str_array("commands")?;
    obj.opt_bool_map("permissions")?;
    obj.opt_str("pathEnv")?;
    let role = obj.opt_str("role")?.map(str::to_owned);
    let scopes = obj.opt_str_array("scopes")?.unwrap_or_default();
    let device = match obj.opt_obj("device")? {
        None => None,
        Some(device) => {
            device.closed(&DEVICE_KEYS)?;
            Some(DeviceProof {
                id: device.req_nonempty_str("id")?.to_owned(),
                public_key: device.req_nonempty_str("publicKey")?.to_owned(),
                signature: device.req_nonempty_str("signature")?.to_owned(),
                signed_at_ms: device.req_int("signedAt", 0, i64::MAX)?,
                nonce: device.req_nonempty_str("nonce")?.to_owned(),
            })
        }
    };
    let (mut token, mut bootstrap_token, mut device_token, mut password) = (None, None, None, None);
    if let Some(auth) = obj.opt_obj("auth")? {
        auth.closed(&AUTH_KEYS)?;
        token = auth.opt_str("token")?.map(str::to_owned);
        bootstrap_token = auth.opt_str("bootstrapToken")?.map(str::to_owned);
        device_token = auth.opt_str("deviceToken")?.map(str::to_owned);
        password = auth.opt_str("password")?.map(str::to_owned);
        auth.opt_str("approvalRuntimeToken")?;
        auth.opt_str("agentRuntimeIdentityToken")?;
    }
    obj.opt_str("locale")?;
    obj.opt_str("userAgent")?;
    for key in ["computerUse", "workerRuns", "modelCatalog"] {
        obj.opt_obj(key)?;
    }
    Ok(ConnectParams {
        min_protocol,
        max_protocol,
        client,
        caps,
        role,
        scopes,
        device,
        token,
        bootstrap_token,
        device_token,
        password,
    })
}

/// The version `connect` asked for, or the mismatch in that version's shape.
fn negotiate(connect: &ConnectParams) -> Result<Protocol, ServiceError> {
    let (min, max) = (connect.min_protocol, connect.max_protocol);
    if let Some(protocol) = Protocol::negotiate(min, max) {
        return Ok(protocol);
    }
    let details = if max >= Protocol::V4.number() {
        json!({
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": min,
            "clientMaxProtocol": max,
            "expectedProtocol": Protocol::NEWEST.number(),
            "minimumProbeProtocol": Protocol::OLDEST.number(),
        })
    } else {
        json!({ "expectedProtocol": Protocol::OLDEST.number() })
    };
    Err(ServiceError::invalid("protocol mismatch").with_details(details))
}

/// How the connection authenticated, as v4 `hello-ok.auth.method` names it
/// (the auth service accepted it, so the credential presented first is the
/// one that counted: a shared token is checked before device credentials).
fn auth_method(connect: &ConnectParams) -> &'static str {
    let present = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if present(&connect.token) {
        "token"
    } else if present(&connect.password) {
        "password"
    } else if present(&connect.bootstrap_token) {
        "bootstrap-token"
    } else if present(&connect.device_token) {
        "device-token"
    } else {
        "none"
    }
}

fn refuse(err: &ServiceError, close_code: u16, close_reason: &str) -> Rejected {
    Rejected {
        error: ErrorShape::openclaw(err),
        payload: None,
        close_code,
        close_reason: close_reason.to_owned(),
    }
}

/// Whether `err` is an authentication failure of the reference's `AUTH_*` family.
fn is_auth_failure(err: &ServiceError) -> bool {
    err.details
        .as_ref()
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
        .is_some_and(|code| code.starts_with("AUTH_"))
}

/// Maps an auth-service refusal to the OpenClaw error and close code.
fn auth_refusal(mut err: ServiceError) -> Rejected {
    if is_auth_failure(&err) {
        // §2.3 step 10: every auth failure (a lockout too) is `unauthorized: …`.
        err.code = ErrorCode::Unauthorized;
    }
    match err.code {
        ErrorCode::Unauthorized => {
            if !err.message.starts_with("unauthorized") {
                err.message = format!("unauthorized: {}", err.message);
            }
            let reason = err.message.clone();
            refuse(&err, CLOSE_POLICY, &reason)
        }
        ErrorCode::Unavailable | ErrorCode::ResourceExhausted => {
            refuse(&err, CLOSE_TRY_AGAIN_LATER, "try again later")
        }
        ErrorCode::Internal => refuse(&err, CLOSE_INTERNAL, "internal error"),
        _ => {
            let reason = err.message.clone();
            refuse(&err, CLOSE_POLICY, &reason)
        }
    }
}

/// Runs the OpenClaw handshake for `params`.
pub async fn handshake(
    state: &Arc<EdgeState>,
    info: &SocketInfo,
    params: &Value,
) -> Result<Accepted, Rejected> {
    let connect = parse_connect(params).map_err(|why| {
        let err = ServiceError::invalid(format!("invalid connect params: {why}"));
        refuse(&err, CLOSE_POLICY, "invalid connect params")
    })?;
    let protocol = negotiate(&connect)
        .map_err(|err| refuse(&err, CLOSE_PROTOCOL_ERROR, "protocol mismatch"))?;
    let role = connect
        .role
        .clone()
        .unwrap_or_else(|| "operator".to_owned());
    if role != "operator" && role != "node" {
        return Err(refuse(
            &ServiceError::invalid("invalid role"),
            CLOSE_POLICY,
            "invalid role",
        ));
    }
    let request = AuthenticateConnectRequest {
        connection_id: info.conn_id.clone(),
        remote_addr: info.peer.remote_addr.clone(),
        is_local: info.peer.is_local,
        connect: Some(authenticate_connect_request::Connect::Openclaw(
            OpenClawConnect {
                client: Some(connect.client.clone()),
                role: role.clone(),
                scopes: connect.scopes.clone(),
                token: connect.token.clone(),
                device_token: connect.device_token.clone(),
                bootstrap_token: connect.bootstrap_token.clone(),
                password: connect.password.clone(),
                device: connect.device.clone(),
                challenge_nonce: info.nonce.clone(),
                // v4 keeps the scopes of a local `cli` without a browser
                // Origin, and approves local scope upgrades silently.
                keep_local_cli_scopes: protocol == Protocol::V4 && !info.peer.has_origin,
                silent_local_scope_upgrade: protocol == Protocol::V4,
            },
        )),
    };
    let response = state
        .services
        .auth
        .authenticate_connect(&Principal::default(), request)
        .await
        .map_err(auth_refusal)?;
    let mut notices: Vec<Notice> = Vec::new();
    if let Some(created) = &response.created_request {
        notices.push(notify::requested(created).into());
    }
    if response.auto_approved
        && let Some(resolved) = &response.resolved_request
    {
        notices.push(notify::resolved(resolved, Decision::Approved).into());
    }
    notify::publish(
        state.services.bus.as_ref(),
        state.services.devices.as_ref(),
        notices,
    )
    .await;
    let principal = match response.outcome {
        Some(authenticate_connect_response::Outcome::Principal(principal)) => principal,
        Some(authenticate_connect_response::Outcome::Pairing(pending)) => {
            return Err(pairing_required(&pending));
        }
        None => {
            return Err(refuse(
                &ServiceError::internal("auth returned no outcome"),
                CLOSE_INTERNAL,
                "internal error",
            ));
        }
    };
    let role = if principal.role.is_empty() {
        role
    } else {
        principal.role.clone()
    };
    let mut auth = if response.device_token.is_empty() {
        json!({ "role": role, "scopes": normalize_scopes(&principal.scopes) })
    } else {
        let token_role = if response.device_token_role.is_empty() {
            role
        } else {
            response.device_token_role.clone()
        };
        json!({
            "role": token_role,
            "scopes": normalize_scopes(&response.device_token_scopes),
            "deviceToken": response.device_token,
            "issuedAtMs": response.device_token_issued_at_ms,
        })
    };
    if protocol == Protocol::V4 {
        auth["method"] = json!(auth_method(&connect));
    }
    let reply = hello::hello_ok(state, &info.conn_id, protocol, auth);
    Ok(Accepted::new(principal, reply).with_protocol(protocol))
}

/// `NOT_PAIRED "pairing required: …"` with the auth service's details, closed
/// 1008 `pairing required: … (requestId: …)` (§2.3 step 12).
fn pairing_required(pending: &PairingPending) -> Rejected {
    let message = if pending.error_message.is_empty() {
        format!("pairing required: {}", pending.reason)
    } else {
        pending.error_message.clone()
    };
    let details = serde_json::from_str::<Value>(&pending.error_details_json)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            json!({
                "code": "PAIRING_REQUIRED",
                "reason": pending.reason,
                "requestId": pending.request_id,
                "deviceId": pending.device_id,
            })
        });
    let err = ServiceError::new(ErrorCode::NotPaired, message.clone()).with_details(details);
    let reason = format!("{message} (requestId: {})", pending.request_id);
    refuse(&err, CLOSE_POLICY, &reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "minProtocol": 3, "maxProtocol": 3,
            "client": {"id": "cli", "version": "1.0", "platform": "linux", "mode": "cli"},
            "role": "operator", "scopes": ["operator.read"],
            "auth": {"token": "t"}
        })
    }

    #[test]
    fn accepts_valid_params() {
        let params = parse_connect(&valid()).expect("valid");
        assert_eq!(params.client.id, "cli");
        assert_eq!(params.token.as_deref(), Some("t"));
    }

    #[test]
    fn rejects_bad_params() {
        let mut extra = valid();
        extra["bogus"] = json!(1);
        assert!(parse_connect(&extra).unwrap_err().contains("bogus"));
        let mut bad_id = valid();
        bad_id["client"]["id"] = json!("nope");
        assert!(parse_connect(&bad_id).unwrap_err().contains("/client/id"));
        let mut bad_mode = valid();
        bad_mode["client"]["mode"] = json!("operator");
        assert!(
            parse_connect(&bad_mode)
                .unwrap_err()
                .contains("/client/mode")
        );
        let mut no_version = valid();
        no_version["client"]
            .as_object_mut()
            .expect("object")
            .remove("version");
        assert!(
            parse_connect(&no_version)
                .unwrap_err()
                .contains("'version'")
        );
        let mut bad_min = valid();
        bad_min["minProtocol"] = json!("3");
        assert!(
            parse_connect(&bad_min)
                .unwrap_err()
                .contains("/minProtocol")
        );
        let mut bad_auth = valid();
        bad_auth["auth"]["secret"] = json!("x");
        assert!(parse_connect(&bad_auth).unwrap_err().contains("secret"));
        assert!(parse_connect(&json!("x")).is_err());
    }

    #[test]
    fn scopes_are_normalized() {
        let scopes = |list: &[&str]| {
            normalize_scopes(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            scopes(&["operator.admin"]),
            vec!["operator.admin", "operator.read", "operator.write"]
        );
        assert_eq!(
            scopes(&["operator.write", " operator.write "]),
            vec!["operator.read", "operator.write"]
        );
        assert!(scopes(&[]).is_empty());
    }
}
