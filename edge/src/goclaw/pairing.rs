//! goclaw pairing methods (goclaw notes §2.4): `device.pair.request`,
//! `device.pair.approve`, `device.pair.deny`, `device.pair.list`,
//! `device.pair.revoke`, and the public `browser.pairing.status`.
//!
//! Invariants: parameter names are goclaw's (`senderId` for `device.pair.*`,
//! `sender_id` for the status poll), read leniently; the auth service decides
//! (tenant, scopes, code expiry) and this module shapes the answers and says what
//! to publish afterwards: `device.pair.requested` for a new code,
//! `device.pair.resolved {action}` for approve, deny and revoke, and on revoke a
//! disconnect of the sockets paired as that sender, on every edge.

use clawgate_proto::auth::{
    ApprovePairingRequest, AuthApi, ListPairingRequest, PairingStatusRequest, RejectPairingRequest,
    RemoveDeviceRequest, RequestPairingRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::connect::BROWSER_CHANNEL;
use crate::notify::{self, Decision, Notice};
use crate::params::Obj;
use crate::server::EdgeState;

/// A validated pairing call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Request {
        sender_id: String,
        channel: String,
        chat_id: String,
        account_id: String,
    },
    Approve {
        code: String,
    },
    Deny {
        code: String,
    },
    List,
    Revoke {
        sender_id: String,
        channel: String,
    },
    Status {
        sender_id: String,
    },
}

fn bad(method: &str) -> impl Fn(String) -> ServiceError + '_ {
    move |why| ServiceError::invalid(format!("invalid {method} params: {why}"))
}

/// Validates `params` of `method`; `Ok(None)` when `method` is not a pairing method.
pub fn parse(method: &str, params: &Value) -> Result<Option<Call>, ServiceError> {
    let bad = bad(method);
    let obj = || Obj::new(params, "").map_err(&bad);
    let text = |obj: &Obj<'_>, key: &str| {
        obj.opt_str(key)
            .map(|v| v.unwrap_or_default().trim().to_owned())
            .map_err(&bad)
    };
    let required = |obj: &Obj<'_>, key: &str| {
        let value = text(obj, key)?;
        if value.is_empty() {
            return Err(ServiceError::invalid(format!("{key} is required")));
        }
        Ok(value)
    };
    let call = match method {
        "device.pair.request" => {
            let obj = obj()?;
            Call::Request {
                sender_id: required(&obj, "senderId")?,
                channel: text(&obj, "channel")?,
                chat_id: text(&obj, "chatId")?,
                account_id: text(&obj, "accountId")?,
            }
        }
        "device.pair.approve" => {
            let obj = obj()?;
            // `approvedBy` is accepted but not trusted: the approver is the caller.
            text(&obj, "approvedBy")?;
            Call::Approve {
                code: required(&obj, "code")?.to_ascii_uppercase(),
            }
        }
        "device.pair.deny" => Call::Deny {
            code: required(&obj()?, "code")?.to_ascii_uppercase(),
        },
        "device.pair.list" => Call::List,
        "device.pair.revoke" => {
            let obj = obj()?;
            let channel = text(&obj, "channel")?;
            Call::Revoke {
                sender_id: required(&obj, "senderId")?,
                channel: if channel.is_empty() {
                    BROWSER_CHANNEL.to_owned()
                } else {
                    channel
                },
            }
        }
        "browser.pairing.status" => Call::Status {
            sender_id: required(&obj()?, "sender_id")?,
        },
        _ => return Ok(None),
    };
    Ok(Some(call))
}

/// Runs a validated call; returns the answer and what to publish once it is sent.
pub async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
) -> (Result<Value, ServiceError>, Vec<Notice>) {
    let auth = &state.services.auth;
    match call {
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
            match auth.request_pairing(principal, request).await {
                Ok(code) => {
                    let notices = if code.created {
                        vec![notify::requested(&code).into()]
                    } else {
                        Vec::new()
                    };
                    (Ok(json!({ "code": code.pairing_code })), notices)
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Approve { code } => {
            let request = ApprovePairingRequest {
                request_id: String::new(),
                pairing_code: code,
            };
            match auth.approve_pairing(principal, request).await {
                Ok(res) => {
                    let request = res.request.unwrap_or_default();
                    let device = res.device.unwrap_or_default();
                    let paired = json!({
                        "sender_id": device.sender_id,
                        "channel": device.channel,
                        "chat_id": request.chat_id,
                        "paired_at": device.approved_at_ms,
                        "paired_by": principal.user_id,
                        "metadata": {},
                    });
                    let notice = notify::resolved(&request, Decision::Approved).into();
                    (Ok(json!({ "paired": paired })), vec![notice])
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Deny { code } => {
            let request = RejectPairingRequest {
                request_id: String::new(),
                pairing_code: code,
            };
            match auth.reject_pairing(principal, request).await {
                Ok(res) => {
                    let notices = res
                        .request
                        .iter()
                        .map(|r| notify::resolved(r, Decision::Rejected).into())
                        .collect();
                    (Ok(json!({ "denied": true })), notices)
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::List => {
            let result = auth
                .list_pairing(principal, ListPairingRequest {})
                .await
                .map(|list| {
                    // goclaw connections see codes and senders, not OpenClaw devices.
                    let pending: Vec<Value> = list
                        .pending
                        .iter()
                        .filter(|r| !r.pairing_code.is_empty())
                        .map(notify::goclaw_pending)
                        .collect();
                    let paired: Vec<Value> = list
                        .paired
                        .iter()
                        .filter(|d| !d.sender_id.is_empty())
                        .map(|d| {
                            json!({
                                "sender_id": d.sender_id,
                                "channel": d.channel,
                                "paired_at": d.approved_at_ms,
                                "user_id": d.user_id,
                            })
                        })
                        .collect();
                    json!({ "pending": pending, "paired": paired })
                });
            (result, Vec::new())
        }
        Call::Revoke { sender_id, channel } => {
            let request = RemoveDeviceRequest {
                device_id: String::new(),
                sender_id,
                channel,
            };
            match auth.remove_device(principal, request).await {
                Ok(res) => {
                    let tenant = if res.tenant_id.is_empty() {
                        principal.tenant_id.as_str()
                    } else {
                        res.tenant_id.as_str()
                    };
                    let notices = vec![
                        notify::disconnect_sender(tenant, &res.sender_id, &res.channel).into(),
                        notify::sender_revoked(tenant, &res.sender_id, &res.channel).into(),
                    ];
                    (Ok(json!({ "revoked": true })), notices)
                }
                Err(err) => (Err(err), Vec::new()),
            }
        }
        Call::Status { sender_id } => {
            let result = auth
                .pairing_status(principal, PairingStatusRequest { sender_id })
                .await
                .map(|res| json!({ "status": res.status }));
            (result, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goclaw_parameter_names() {
        assert_eq!(
            parse(
                "device.pair.request",
                &json!({"senderId": "s1", "channel": "telegram", "chatId": "c", "accountId": "a"})
            ),
            Ok(Some(Call::Request {
                sender_id: "s1".into(),
                channel: "telegram".into(),
                chat_id: "c".into(),
                account_id: "a".into(),
            }))
        );
        assert_eq!(
            parse(
                "device.pair.approve",
                &json!({"code": "abcd2345", "approvedBy": "x"})
            ),
            Ok(Some(Call::Approve {
                code: "ABCD2345".into()
            }))
        );
        assert_eq!(
            parse("device.pair.revoke", &json!({"senderId": "s1"})),
            Ok(Some(Call::Revoke {
                sender_id: "s1".into(),
                channel: "browser".into()
            }))
        );
        assert_eq!(
            parse(
                "browser.pairing.status",
                &json!({"sender_id": "s1", "x": 1})
            ),
            Ok(Some(Call::Status {
                sender_id: "s1".into()
            }))
        );
        assert!(parse("browser.pairing.status", &json!({"senderId": "s1"})).is_err());
        assert!(parse("device.pair.approve", &json!({})).is_err());
        assert_eq!(parse("chat.send", &json!({})), Ok(None));
    }
}
