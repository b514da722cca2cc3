//! goclaw `connect` (goclaw notes §2.3): params, the auth call, the reply.
//!
//! Invariants: a connect whose params carry neither `minProtocol` nor
//! `maxProtocol` is goclaw's; params are read leniently (unknown keys ignored, as
//! Go does) but known keys must be strings; every refusal is an error `res` with
//! a goclaw code followed by a close 1008 (one handshake attempt per socket, as in
//! OpenClaw — goclaw itself would keep the socket); a connect without a token that
//! starts browser pairing is answered **ok** with `status: "pending_pairing"`, and
//! the socket stays open, unauthenticated, until the code expires; a new code is
//! announced (`device.pair.requested`) to the tenant's admins before the answer.

use std::sync::Arc;

use clawgate_proto::auth::{AuthApi, AuthenticateConnectRequest, GoclawConnect};
use clawgate_proto::pb::auth::v1::{authenticate_connect_request, authenticate_connect_response};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use crate::conn::{Accepted, Rejected};
use crate::frames::{CLOSE_INTERNAL, CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER, ErrorShape};
use crate::methods::pairing::BROWSER_CHANNEL;
use crate::notify;
use crate::params::Obj;

/// How long a pending socket may stay when the auth service names no expiry.
const PENDING_FALLBACK_MS: i64 = 60 * 60 * 1000;
use crate::state::{EdgeState, SocketInfo};

/// Whether a `connect` request's params are goclaw's.
pub fn is_goclaw_connect(params: &Value) -> bool {
    params
        .as_object()
        .is_some_and(|map| !map.contains_key("minProtocol") && !map.contains_key("maxProtocol"))
}

/// Validated goclaw connect params.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectParams {
    pub token: String,
    pub user_id: String,
    pub sender_id: String,
    pub locale: String,
    pub tenant_id: String,
}

pub fn parse_connect(params: &Value) -> Result<ConnectParams, String> {
    let obj = Obj::new(params, "")?;
    let text = |key: &str| obj.opt_str(key).map(|v| v.unwrap_or_default().to_owned());
    let tenant_id = text("tenant_id")?;
    let tenant_hint = text("tenant_hint")?;
    let tenant_scope = text("tenant_scope")?;
    let tenant_id = [tenant_id, tenant_hint, tenant_scope]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    Ok(ConnectParams {
        token: text("token")?,
        user_id: text("user_id")?,
        sender_id: text("sender_id")?,
        locale: text("locale")?,
        tenant_id,
    })
}

fn refuse(err: &ServiceError, payload: Option<Value>, close_code: u16, reason: &str) -> Rejected {
    Rejected {
        error: ErrorShape::goclaw(err),
        payload,
        close_code,
        close_reason: reason.to_owned(),
    }
}

/// Runs the goclaw handshake for `params`.
pub async fn handshake(
    state: &Arc<EdgeState>,
    info: &SocketInfo,
    params: &Value,
) -> Result<Accepted, Rejected> {
    let connect = parse_connect(params).map_err(|why| {
        let err = ServiceError::invalid(format!("invalid connect params: {why}"));
        refuse(&err, None, CLOSE_POLICY, "invalid connect params")
    })?;
    // A connect without a token that names a sender authenticates as that
    // (browser) sender when it succeeds (goclaw notes §2.3 step 4).
    let paired_sender = (connect.token.trim().is_empty() && !connect.sender_id.trim().is_empty())
        .then(|| {
            (
                connect.sender_id.trim().to_owned(),
                BROWSER_CHANNEL.to_owned(),
            )
        });
    let request = AuthenticateConnectRequest {
        connection_id: info.conn_id.clone(),
        remote_addr: info.peer.remote_addr.clone(),
        is_local: info.peer.is_local,
        connect: Some(authenticate_connect_request::Connect::Goclaw(
            GoclawConnect {
                token: connect.token,
                user_id: connect.user_id,
                sender_id: connect.sender_id,
                tenant_id: connect.tenant_id,
                locale: connect.locale,
            },
        )),
    };
    let server = json!({ "name": "clawgate", "version": state.config.version });
    let response = state
        .services
        .auth
        .authenticate_connect(&Principal::default(), request)
        .await
        .map_err(|err| {
            let (close, reason) = match err.code {
                ErrorCode::Internal => (CLOSE_INTERNAL, "internal error"),
                ErrorCode::Unavailable | ErrorCode::ResourceExhausted => {
                    (CLOSE_TRY_AGAIN_LATER, "try again later")
                }
                ErrorCode::InvalidRequest => (CLOSE_POLICY, "invalid connect params"),
                _ => (CLOSE_POLICY, "unauthorized"),
            };
            refuse(&err, None, close, reason)
        })?;
    if let Some(created) = &response.created_request {
        let notices = vec![notify::requested(created).into()];
        notify::publish(
            state.services.bus.as_ref(),
            state.services.devices.as_ref(),
            notices,
        )
        .await;
    }
    match response.outcome {
        Some(authenticate_connect_response::Outcome::Principal(principal)) => {
            let reply = json!({
                "protocol": 3,
                "role": principal.role,
                "user_id": principal.user_id,
                "tenant_id": principal.tenant_id,
                "is_owner": principal.role == "owner",
                "is_master_scope": principal.role == "owner",
                "server": server,
            });
            let mut accepted = Accepted::new(principal, reply);
            accepted.paired_sender = paired_sender;
            Ok(accepted)
        }
        Some(authenticate_connect_response::Outcome::Pairing(pending)) => {
            // The socket stays, unauthenticated, polling `browser.pairing.status`;
            // once approved the client reconnects with its sender_id.
            let reply = json!({
                "protocol": 3,
                "status": "pending_pairing",
                "pairing_code": pending.pairing_code,
                "sender_id": pending.sender_id,
                "server": server,
            });
            let until = if pending.expires_at_ms > 0 {
                pending.expires_at_ms
            } else {
                now_ms().saturating_add(PENDING_FALLBACK_MS)
            };
            let mut accepted = Accepted::new(Principal::default(), reply);
            accepted.pending_until_ms = Some(until);
            Ok(accepted)
        }
        None => Err(refuse(
            &ServiceError::internal("auth returned no outcome"),
            None,
            CLOSE_INTERNAL,
            "internal error",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_dialect() {
        assert!(is_goclaw_connect(
            &json!({"token": "t", "user_id": "alice"})
        ));
        assert!(is_goclaw_connect(&json!({})));
        assert!(!is_goclaw_connect(
            &json!({"minProtocol": 3, "maxProtocol": 3})
        ));
        assert!(!is_goclaw_connect(&json!({"maxProtocol": 3})));
        assert!(!is_goclaw_connect(&json!("x")));
    }

    #[test]
    fn parses_params() {
        let params = parse_connect(
            &json!({"token": "t", "user_id": "alice", "tenant_hint": "acme", "extra": 1}),
        )
        .expect("valid");
        assert_eq!(params.user_id, "alice");
        assert_eq!(params.tenant_id, "acme");
        assert!(
            parse_connect(&json!({"token": 5}))
                .unwrap_err()
                .contains("/token")
        );
    }
}
