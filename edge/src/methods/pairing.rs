//! Pairing, for both dialects: OpenClaw devices (`device.pair.list`,
//! `device.pair.approve`, `device.pair.reject`, `device.pair.remove`,
//! `device.token.rotate`, `device.token.revoke`; OpenClaw §3.5, §3.6) and goclaw
//! pairing codes of senders (`device.pair.request`, `device.pair.approve`,
//! `device.pair.deny`, `device.pair.list`, `device.pair.revoke`, and the public
//! `browser.pairing.status`; goclaw notes §2.4). `device.pair.approve` and
//! `device.pair.list` exist in both, with each dialect's params and answers.
//!
//! Params: OpenClaw's are closed objects (`requestId`, `deviceId`, …);
//! goclaw's are read leniently with goclaw's names (`senderId` for
//! `device.pair.*`, `sender_id` for the status poll, codes upper-cased).
//!
//! Invariants: the auth service decides (tenant, the caller's own-device
//! rule, scopes, code expiry); this module shapes the answers and says what to
//! publish afterwards: `device.pair.requested` for a new code,
//! `device.pair.resolved` for approve, reject/deny and revoke, a 4001
//! disconnect of a removed device (or of a rotated or revoked role) and of the
//! sockets paired as a revoked sender, on every edge. OpenClaw connections see
//! devices, goclaw ones codes and senders. Token secrets appear only in a
//! rotate answer the auth service filled in for the device itself.

use clawgate_proto::auth::{
    ApprovePairingRequest, AuthApi, DeviceTokenInfo, ListPairingRequest, PairedDevice,
    PairingRequest, PairingStatusRequest, RejectPairingRequest, RemoveDeviceRequest,
    RequestPairingRequest, RevokeDeviceTokenRequest, RotateDeviceTokenRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Map, Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::notify::{self, Decision, Notice};
use crate::params::{Obj, Style};
use crate::state::EdgeState;

/// The channel of goclaw browser senders (the default of `device.pair.revoke`).
pub const BROWSER_CHANNEL: &str = "browser";

pub const METHODS: &[Method] = &[
    Method::call(
        "device.pair.list",
        Some(Scope::Pairing),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "device.pair.approve",
        Some(Scope::Pairing),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call("device.pair.reject", Some(Scope::Pairing), None, parse_call),
    Method::call("device.pair.remove", Some(Scope::Pairing), None, parse_call),
    Method::call(
        "device.token.rotate",
        Some(Scope::Pairing),
        None,
        parse_call,
    ),
    Method::call(
        "device.token.revoke",
        Some(Scope::Pairing),
        None,
        parse_call,
    ),
    Method::call(
        "device.pair.request",
        None,
        Some(Role::Operator),
        parse_call,
    ),
    Method::call("device.pair.deny", None, Some(Role::Admin), parse_call),
    Method::call("device.pair.revoke", None, Some(Role::Admin), parse_call),
    // Public: a goclaw browser polls it while its pairing is pending.
    Method::call(
        "browser.pairing.status",
        None,
        Some(Role::Viewer),
        parse_call,
    ),
];

/// A validated pairing call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    List,
    /// OpenClaw names a request, goclaw a code.
    Approve {
        request_id: String,
        code: String,
    },
    /// OpenClaw `device.pair.reject`, goclaw `device.pair.deny`.
    Reject {
        request_id: String,
        code: String,
    },
    RemoveDevice {
        device_id: String,
    },
    Rotate {
        device_id: String,
        role: String,
        scopes: Vec<String>,
    },
    RevokeToken {
        device_id: String,
        role: String,
    },
    Request {
        sender_id: String,
        channel: String,
        chat_id: String,
        account_id: String,
    },
    RevokeSender {
        sender_id: String,
        channel: String,
    },
    Status {
        sender_id: String,
    },
}

fn parse_call(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let call = match request.style {
        Style::Camel => parse_openclaw(request),
        Style::Snake => parse_goclaw(request),
    }?;
    declared(call)
}

fn parse_openclaw(request: &Request<'_>) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let call = match request.method {
        "device.pair.list" => {
            request.closed(&[])?;
            Call::List
        }
        "device.pair.approve" | "device.pair.reject" => {
            let obj = request.closed(&["requestId"])?;
            let request_id = obj.req_str_len("requestId", 128).map_err(bad)?.to_owned();
            if request.method == "device.pair.approve" {
                Call::Approve {
                    request_id,
                    code: String::new(),
                }
            } else {
                Call::Reject {
                    request_id,
                    code: String::new(),
                }
            }
        }
        "device.pair.remove" => {
            let obj = request.closed(&["deviceId"])?;
            Call::RemoveDevice {
                device_id: obj.req_nonempty_str("deviceId").map_err(bad)?.to_owned(),
            }
        }
        "device.token.rotate" => {
            let obj = request.closed(&["deviceId", "role", "scopes"])?;
            Call::Rotate {
                device_id: obj.req_nonempty_str("deviceId").map_err(bad)?.to_owned(),
                role: obj.req_nonempty_str("role").map_err(bad)?.to_owned(),
                scopes: obj
                    .opt_str_array("scopes")
                    .map_err(bad)?
                    .unwrap_or_default(),
            }
        }
        "device.token.revoke" => {
            let obj = request.closed(&["deviceId", "role"])?;
            Call::RevokeToken {
                device_id: obj.req_nonempty_str("deviceId").map_err(bad)?.to_owned(),
                role: obj.req_nonempty_str("role").map_err(bad)?.to_owned(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

fn parse_goclaw(request: &Request<'_>) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let text = |obj: &Obj<'_>, key: &str| {
        obj.opt_str(key)
            .map(|v| v.unwrap_or_default().trim().to_owned())
            .map_err(bad)
    };
    let required = |obj: &Obj<'_>, key: &str| {
        let value = text(obj, key)?;
        if value.is_empty() {
            return Err(ServiceError::invalid(format!("{key} is required")));
        }
        Ok(value)
    };
    let call = match request.method {
        "device.pair.request" => {
            let obj = request.obj()?;
            Call::Request {
                sender_id: required(&obj, "senderId")?,
                channel: text(&obj, "channel")?,
                chat_id: text(&obj, "chatId")?,
                account_id: text(&obj, "accountId")?,
            }
        }
        "device.pair.approve" => {
            let obj = request.obj()?;
            // `approvedBy` is accepted but not trusted: the approver is the caller.
            text(&obj, "approvedBy")?;
            Call::Approve {
                request_id: String::new(),
                code: required(&obj, "code")?.to_ascii_uppercase(),
            }
        }
        "device.pair.deny" => Call::Reject {
            request_id: String::new(),
            code: required(&request.obj()?, "code")?.to_ascii_uppercase(),
        },
        "device.pair.list" => Call::List,
        "device.pair.revoke" => {
            let obj = request.obj()?;
            let channel = text(&obj, "channel")?;
            Call::RevokeSender {
                sender_id: required(&obj, "senderId")?,
                channel: if channel.is_empty() {
                    BROWSER_CHANNEL.to_owned()
                } else {
                    channel
                },
            }
        }
        "browser.pairing.status" => Call::Status {
            sender_id: required(&request.obj()?, "sender_id")?,
        },
        _ => return Ok(None),
    };
    Ok(Some(call))
}

fn put_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), json!(value));
    }
}

/// The OpenClaw pending request object (§3.4): the `device.pair.requested`
/// payload and an entry of `device.pair.list`'s `pending`.
pub fn openclaw_pending(request: &PairingRequest) -> Value {
    let mut map = Map::new();
    map.insert("requestId".into(), json!(request.request_id));
    map.insert("deviceId".into(), json!(request.device_id));
    map.insert("publicKey".into(), json!(request.public_key));
    put_str(&mut map, "displayName", &request.display_name);
    put_str(&mut map, "platform", &request.platform);
    put_str(&mut map, "deviceFamily", &request.device_family);
    put_str(&mut map, "clientId", &request.client_id);
    put_str(&mut map, "clientMode", &request.client_mode);
    put_str(&mut map, "role", &request.role);
    if !request.roles.is_empty() {
        map.insert("roles".into(), json!(request.roles));
    }
    map.insert("scopes".into(), json!(request.scopes));
    put_str(&mut map, "remoteIp", &request.remote_ip);
    map.insert("silent".into(), json!(false));
    let repair = !request.reason.is_empty() && request.reason != "not-paired";
    map.insert("isRepair".into(), json!(repair));
    map.insert("ts".into(), json!(request.created_at_ms));
    Value::Object(map)
}

/// A goclaw pending code as `device.pair.requested` and `device.pair.list` show it.
pub fn goclaw_pending(request: &PairingRequest) -> Value {
    json!({
        "code": request.pairing_code,
        "sender_id": request.sender_id,
        "channel": request.channel,
        "chat_id": request.chat_id,
        "account_id": request.account_id,
        "created_at": request.created_at_ms,
        "expires_at": request.expires_at_ms,
    })
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

/// A paired goclaw sender as `device.pair.list` shows it.
fn paired_sender(device: &PairedDevice) -> Value {
    json!({
        "sender_id": device.sender_id,
        "channel": device.channel,
        "paired_at": device.approved_at_ms,
        "user_id": device.user_id,
    })
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await
    }
}

/// Runs a validated call; the answer, and what to publish once it is sent.
pub async fn run(call: Call, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
    match run_call(call, state, principal, style).await {
        Ok((payload, notices)) => Outcome {
            result: Ok(payload),
            notices,
        },
        Err(err) => Err(err).into(),
    }
}

async fn run_call(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<(Value, Vec<Notice>), ServiceError> {
    let auth = &state.services.auth;
    let tenant = principal.tenant_id.as_str();
    let resolved = |requests: Option<&PairingRequest>, decision| -> Vec<Notice> {
        requests
            .iter()
            .map(|r| notify::resolved(r, decision).into())
            .collect()
    };
    Ok(match call {
        Call::List => {
            let list = auth.list_pairing(principal, ListPairingRequest {}).await?;
            let (pending, paired): (Vec<Value>, Vec<Value>) = match style {
                Style::Camel => (
                    list.pending
                        .iter()
                        .filter(|r| !r.device_id.is_empty())
                        .map(openclaw_pending)
                        .collect(),
                    list.paired
                        .iter()
                        .filter(|d| !d.device_id.is_empty())
                        .map(paired_device)
                        .collect(),
                ),
                Style::Snake => (
                    list.pending
                        .iter()
                        .filter(|r| !r.pairing_code.is_empty())
                        .map(goclaw_pending)
                        .collect(),
                    list.paired
                        .iter()
                        .filter(|d| !d.sender_id.is_empty())
                        .map(paired_sender)
                        .collect(),
                ),
            };
            (json!({ "pending": pending, "paired": paired }), Vec::new())
        }
        Call::Approve { request_id, code } => {
            let request = ApprovePairingRequest {
                request_id,
                pairing_code: code,
            };
            let res = auth.approve_pairing(principal, request).await?;
            let notices = resolved(res.request.as_ref(), Decision::Approved);
            let payload = match style {
                Style::Camel => {
                    let device = res.device.as_ref().map(paired_device);
                    json!({ "requestId": res.request_id, "device": device })
                }
                Style::Snake => {
                    let request = res.request.unwrap_or_default();
                    let device = res.device.unwrap_or_default();
                    json!({ "paired": {
                        "sender_id": device.sender_id,
                        "channel": device.channel,
                        "chat_id": request.chat_id,
                        "paired_at": device.approved_at_ms,
                        "paired_by": principal.user_id,
                        "metadata": {},
                    }})
                }
            };
            (payload, notices)
        }
        Call::Reject { request_id, code } => {
            let request = RejectPairingRequest {
                request_id,
                pairing_code: code,
            };
            let res = auth.reject_pairing(principal, request).await?;
            let notices = resolved(res.request.as_ref(), Decision::Rejected);
            let payload = match style {
                Style::Camel => json!({ "requestId": res.request_id, "deviceId": res.device_id }),
                Style::Snake => json!({ "denied": true }),
            };
            (payload, notices)
        }
        Call::RemoveDevice { device_id } => {
            let request = RemoveDeviceRequest {
                device_id,
                ..Default::default()
            };
            let res = auth.remove_device(principal, request).await?;
            let tenant = if res.tenant_id.is_empty() {
                tenant
            } else {
                &res.tenant_id
            };
            let notice = notify::disconnect_device(tenant, &res.device_id, "").into();
            (json!({ "deviceId": res.device_id }), vec![notice])
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
            let info = auth.rotate_device_token(principal, request).await?;
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
            (payload, vec![notice.into()])
        }
        Call::RevokeToken { device_id, role } => {
            let request = RevokeDeviceTokenRequest { device_id, role };
            let info = auth.revoke_device_token(principal, request).await?;
            let notice = notify::disconnect_device(tenant, &info.device_id, &info.role);
            let payload = json!({
                "deviceId": info.device_id,
                "role": info.role,
                "revokedAtMs": info.revoked_at_ms,
            });
            (payload, vec![notice.into()])
        }
        Call::Request {
            sender_id,
            channel,
            chat_id,
            account_id,
        } => {
            let request = RequestPairingRequest {
                sender_id,
                channel,
                chat_id,
                account_id,
            };
            let code = auth.request_pairing(principal, request).await?;
            let notices = if code.created {
                vec![notify::requested(&code).into()]
            } else {
                Vec::new()
            };
            (json!({ "code": code.pairing_code }), notices)
        }
        Call::RevokeSender { sender_id, channel } => {
            let request = RemoveDeviceRequest {
                device_id: String::new(),
                sender_id,
                channel,
            };
            let res = auth.remove_device(principal, request).await?;
            let tenant = if res.tenant_id.is_empty() {
                tenant
            } else {
                res.tenant_id.as_str()
            };
            let notices = vec![
                notify::disconnect_sender(tenant, &res.sender_id, &res.channel).into(),
                notify::sender_revoked(tenant, &res.sender_id, &res.channel).into(),
            ];
            (json!({ "revoked": true }), notices)
        }
        Call::Status { sender_id } => {
            let res = auth
                .pairing_status(principal, PairingStatusRequest { sender_id })
                .await?;
            (json!({ "status": res.status }), Vec::new())
        }
    })
}

#[cfg(test)]
#[path = "pairing_tests.rs"]
mod tests;
