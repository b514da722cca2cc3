//! OpenClaw pairing and device-token methods (§3.5, §3.6): `device.pair.list`,
//! `device.pair.approve`, `device.pair.reject`, `device.pair.remove`,
//! `device.token.rotate`, `device.token.revoke`.
//!
//! Invariants: params are closed objects; the auth service decides (tenant, the
//! caller's own-device rule, scopes) and this module only shapes the answers and
//! says what to publish afterwards: `device.pair.resolved` for approve and reject,
//! a 4001 disconnect of the device (remove) or of its role (rotate, revoke) on
//! every edge. Token secrets appear only in a rotate answer the auth service
//! filled in for the device itself.

use clawgate_proto::auth::{
    ApprovePairingRequest, AuthApi, DeviceTokenInfo, ListPairingRequest, PairedDevice,
    RejectPairingRequest, RemoveDeviceRequest, RevokeDeviceTokenRequest, RotateDeviceTokenRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use crate::notify::{self, Decision, Notice};
use crate::params::Obj;
use crate::server::EdgeState;

/// A validated pairing call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    List,
    Approve {
        request_id: String,
    },
    Reject {
        request_id: String,
    },
    Remove {
        device_id: String,
    },
    Rotate {
        device_id: String,
        role: String,
        scopes: Vec<String>,
    },
    Revoke {
        device_id: String,
        role: String,
    },
}

fn bad(method: &str) -> impl Fn(String) -> ServiceError + '_ {
    move |why| ServiceError::invalid(format!("invalid {method} params: {why}"))
}

/// Validates `params` of `method`; `Ok(None)` when `method` is not a pairing method.
pub fn parse(method: &str, params: &Value) -> Result<Option<Call>, ServiceError> {
    let bad = bad(method);
    let call = match method {
        "device.pair.list" => {
            Obj::new(params, "")
                .and_then(|o| o.closed(&[]))
                .map_err(&bad)?;
            Call::List
        }
        "device.pair.approve" | "device.pair.reject" => {
            let obj = Obj::new(params, "").map_err(&bad)?;
            obj.closed(&["requestId"]).map_err(&bad)?;
            let request_id = obj.req_str_len("requestId", 128).map_err(&bad)?.to_owned();
            if request_id.is_empty() {
                return Err(bad(
                    "at /requestId: must NOT have fewer than 1 characters".into()
                ));
            }
            if method == "device.pair.approve" {
                Call::Approve { request_id }
            } else {
                Call::Reject { request_id }
            }
        }
        "device.pair.remove" => {
            let obj = Obj::new(params, "").map_err(&bad)?;
            obj.closed(&["deviceId"]).map_err(&bad)?;
            Call::Remove {
                device_id: obj.req_nonempty_str("deviceId").map_err(&bad)?.to_owned(),
            }
        }
        "device.token.rotate" => {
            let obj = Obj::new(params, "").map_err(&bad)?;
            obj.closed(&["deviceId", "role", "scopes"]).map_err(&bad)?;
            Call::Rotate {
                device_id: obj.req_nonempty_str("deviceId").map_err(&bad)?.to_owned(),
                role: obj.req_nonempty_str("role").map_err(&bad)?.to_owned(),
                scopes: obj
                    .opt_str_array("scopes")
                    .map_err(&bad)?
                    .unwrap_or_default(),
            }
        }
        "device.token.revoke" => {
            let obj = Obj::new(params, "").map_err(&bad)?;
            obj.closed(&["deviceId", "role"]).map_err(&bad)?;
            Call::Revoke {
                device_id: obj.req_nonempty_str("deviceId").map_err(&bad)?.to_owned(),
                role: obj.req_nonempty_str("role").map_err(&bad)?.to_owned(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

/// A token as `device.pair.list` shows it: no secret.
fn token_summary(token: &DeviceTokenInfo) -> Value {
    let mut out = json!({
        "role": token.role,
        "scopes": token.scopes,
        "createdAtMs": token.created_at_ms,
    });
    for (key, value) in [
        ("rotatedAtMs", token.rotated_at_ms),
        ("revokedAtMs", token.revoked_at_ms),
        ("lastUsedAtMs", token.last_used_at_ms),
    ] {
        if value > 0 {
            out[key] = json!(value);
        }
    }
    out
}

/// A paired device (§3.6: tokens summarized, approved scopes not shown apart).
fn paired_device(device: &PairedDevice) -> Value {
    let mut out = json!({
        "deviceId": device.device_id,
        "publicKey": device.public_key,
        "roles": device.roles,
        "scopes": device.scopes,
        "tokens": device.tokens.iter().map(token_summary).collect::<Vec<_>>(),
        "createdAtMs": device.created_at_ms,
        "approvedAtMs": device.approved_at_ms,
    });
    for (key, value) in [
        ("displayName", &device.display_name),
        ("platform", &device.platform),
        ("deviceFamily", &device.device_family),
    ] {
        if !value.is_empty() {
            out[key] = json!(value);
        }
    }
    if let Some(role) = device.roles.first() {
        out["role"] = json!(role);
    }
    out
}

/// Runs a validated call; returns the answer and what to publish once it is sent.
pub async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
) -> (Result<Value, ServiceError>, Vec<Notice>) {
    let auth = &state.services.auth;
    let tenant = principal.tenant_id.as_str();
    match call {
        Call::List => {
            let result = auth
                .list_pairing(principal, ListPairingRequest {})
                .await
                .map(|list| {
                    // OpenClaw connections see devices, not goclaw codes or senders.
                    let pending: Vec<Value> = list
                        .pending
                        .iter()
                        .filter(|r| !r.device_id.is_empty())
                        .map(notify::openclaw_pending)
                        .collect();
                    let paired: Vec<Value> = list
                        .paired
                        .iter()
                        .filter(|d| !d.device_id.is_empty())
                        .map(paired_device)
                        .collect();
                    json!({ "pending": pending, "paired": paired })
                });
            (result, Vec::new())
        }
        Call::Approve { request_id } => {
            let request = ApprovePairingRequest {
                request_id,
                pairing_code: String::new(),
            };
            match auth.approve_pairing(principal, request).await {
                Ok(res) => {
                    let notices = res
                        .request
                        .iter()
                        .map(|r| notify::resolved(r, Decision::Approved).into())
                        .collect();
                    let device = res.device.as_ref().map(paired_device);
                    let payload = json!({ "requestId": res.request_id, "device": device });
                    (Ok(payload), notices)
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Reject { request_id } => {
            let request = RejectPairingRequest {
                request_id,
                pairing_code: String::new(),
            };
            match auth.reject_pairing(principal, request).await {
                Ok(res) => {
                    let notices = res
                        .request
                        .iter()
                        .map(|r| notify::resolved(r, Decision::Rejected).into())
                        .collect();
                    let payload = json!({ "requestId": res.request_id, "deviceId": res.device_id });
                    (Ok(payload), notices)
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Remove { device_id } => {
            let request = RemoveDeviceRequest {
                device_id,
                ..Default::default()
            };
            match auth.remove_device(principal, request).await {
                Ok(res) => {
                    let tenant = if res.tenant_id.is_empty() {
                        tenant
                    } else {
                        &res.tenant_id
                    };
                    let notice = notify::disconnect_device(tenant, &res.device_id, "").into();
                    (Ok(json!({ "deviceId": res.device_id })), vec![notice])
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Rotate {
            device_id,
            role,
            scopes,
        } => {
            let request = RotateDeviceTokenRequest {
                device_id,
                role,
                scopes,
            };
            match auth.rotate_device_token(principal, request).await {
                Ok(info) => {
                    let notice = notify::disconnect_device(tenant, &info.device_id, &info.role);
                    let mut payload = json!({
                        "deviceId": info.device_id,
                        "role": info.role,
                        "scopes": info.scopes,
                        "rotatedAtMs": info.rotated_at_ms,
                    });
                    if !info.token.is_empty() {
                        payload["token"] = json!(info.token);
                    }
                    (Ok(payload), vec![notice.into()])
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Revoke { device_id, role } => {
            let request = RevokeDeviceTokenRequest { device_id, role };
            match auth.revoke_device_token(principal, request).await {
                Ok(info) => {
                    let notice = notify::disconnect_device(tenant, &info.device_id, &info.role);
                    let payload = json!({
                        "deviceId": info.device_id,
                        "role": info.role,
                        "revokedAtMs": info.revoked_at_ms,
                    });
                    (Ok(payload), vec![notice.into()])
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_closed_and_required() {
        assert_eq!(parse("device.pair.list", &json!({})), Ok(Some(Call::List)));
        assert!(parse("device.pair.list", &json!({"x": 1})).is_err());
        assert_eq!(
            parse("device.pair.approve", &json!({"requestId": "r"})),
            Ok(Some(Call::Approve {
                request_id: "r".into()
            }))
        );
        assert!(parse("device.pair.reject", &json!({})).is_err());
        assert!(parse("device.pair.approve", &json!({"requestId": ""})).is_err());
        assert!(parse("device.pair.remove", &json!({"deviceId": "d", "x": 1})).is_err());
        assert_eq!(
            parse(
                "device.token.rotate",
                &json!({"deviceId": "d", "role": "operator"})
            ),
            Ok(Some(Call::Rotate {
                device_id: "d".into(),
                role: "operator".into(),
                scopes: Vec::new()
            }))
        );
        assert!(parse("device.token.revoke", &json!({"deviceId": "d"})).is_err());
        assert_eq!(parse("chat.send", &json!({})), Ok(None));
    }

    #[test]
    fn token_summaries_hold_no_secret() {
        let token = DeviceTokenInfo {
            device_id: "d".into(),
            role: "operator".into(),
            created_at_ms: 1,
            revoked_at_ms: 2,
            token: "secret".into(),
            ..Default::default()
        };
        let summary = token_summary(&token);
        assert!(!summary.to_string().contains("secret"));
        assert_eq!(summary["revokedAtMs"], 2);
        assert!(summary.get("rotatedAtMs").is_none());
    }
}
