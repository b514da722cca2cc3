//! The goclaw connect chain, in goclaw's order: gateway token, API key, paired
//! browser sender, and — with no token at all — browser pairing. Anything else
//! (a wrong token) is refused: fail-closed.
//!
//! Invariants: an API key is found by the hash of the presented key only and
//! must be live (not revoked, not expired); its owner binding forces the user,
//! its tenant binding fixes the tenant, and it never yields the `owner` role.
//! A paired sender gets `operator` in the tenant it was paired in.

use clawgate_proto::auth::{
    AuthenticateConnectResponse, GoclawConnect, PairingPending,
    authenticate_connect_response::Outcome,
};
use clawgate_proto::principal::{Dialect, SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::limits::AuthScope;

use crate::pairing::{self, BROWSER_CHANNEL};
use crate::store::NewCode;
use crate::{API_KEY_PREFIX, AuthService, Origin, PAIRING_CODE_TTL_MS, convert, scopes, secret};

/// Longest accepted goclaw `user_id` or tenant id.
const MAX_USER_ID_LEN: usize = 255;

fn principal(
    origin: &Origin,
    tenant: String,
    user: String,
    role: &str,
    scopes: Vec<String>,
) -> AuthenticateConnectResponse {
    AuthenticateConnectResponse {
        outcome: Some(Outcome::Principal(Principal {
            tenant_id: tenant,
            user_id: user,
            role: role.to_owned(),
            scopes,
            device_id: String::new(),
            connection_id: origin.connection_id.clone(),
            dialect: Dialect::Goclaw as i32,
        })),
        ..Default::default()
    }
}

fn bounded(name: &str, value: &str) -> Result<String, ServiceError> {
    let value = value.trim();
    if value.len() > MAX_USER_ID_LEN {
        return Err(ServiceError::invalid(format!(
            "{name} longer than 255 characters"
        )));
    }
    Ok(value.to_owned())
}

pub async fn connect(
    svc: &AuthService,
    origin: &Origin,
    connect: GoclawConnect,
) -> Result<AuthenticateConnectResponse, ServiceError> {
    let user_id = bounded("user_id", &connect.user_id)?;
    let tenant_hint = bounded("tenant_id", &connect.tenant_id)?;
    let token = connect.token.trim();

    if !token.is_empty() {
        // 1. Gateway token.
        svc.check_lockout(origin.ip, AuthScope::SharedSecret)
            .await?;
        if svc.config.gateway_token.matches(token) {
            let user = if user_id.is_empty() {
                svc.config.default_user_id.clone()
            } else {
                user_id
            };
            let owner = svc.config.owner_ids.contains(&user);
            // An owner may narrow to another tenant; everyone else gets the default one.
            let tenant = if owner && !tenant_hint.is_empty() {
                tenant_hint
            } else {
                svc.config.default_tenant_id.clone()
            };
            let role = if owner { "owner" } else { "admin" };
            return Ok(principal(
                origin,
                tenant,
                user,
                role,
                vec![SCOPE_ADMIN.to_owned()],
            ));
        }
        // 1b. API key.
        if token.starts_with(API_KEY_PREFIX) {
            svc.check_lockout(origin.ip, AuthScope::ApiKey).await?;
            if let Some(response) = api_key(svc, origin, token, user_id, tenant_hint).await? {
                return Ok(response);
            }
            svc.record_failure(origin.ip, AuthScope::ApiKey).await;
        } else {
            svc.record_failure(origin.ip, AuthScope::SharedSecret).await;
        }
        return Err(ServiceError::unauthorized("invalid token"));
    }

    // 4. A paired browser reconnecting with its sender id.
    let sender_id = connect.sender_id.trim();
    if !sender_id.is_empty() {
        pairing::validate_sender_id(sender_id)?;
        let now = svc.now();
        if let Some(sender) = svc
            .store
            .paired_sender(sender_id, BROWSER_CHANNEL, &tenant_hint, now)
            .await?
        {
            let user = if user_id.is_empty() {
                sender.user_id
            } else {
                user_id
            };
            let scopes = vec![SCOPE_READ.to_owned(), SCOPE_WRITE.to_owned()];
            return Ok(principal(
                origin,
                sender.tenant_id,
                user,
                "operator",
                scopes,
            ));
        }
    }

    // 5. No token: start (or resume) browser pairing.
    let sender_id = if sender_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        sender_id.to_owned()
    };
    let now = svc.now();
    let (code, created) = pairing::code_for_sender(
        svc,
        NewCode {
            tenant_id: svc.config.default_tenant_id.clone(),
            user_id: if user_id.is_empty() {
                svc.config.default_user_id.clone()
            } else {
                user_id
            },
            sender_id: sender_id.clone(),
            channel: BROWSER_CHANNEL.to_owned(),
            chat_id: String::new(),
            account_id: String::new(),
            remote_ip: origin.remote_ip.clone(),
            expires_at: now + PAIRING_CODE_TTL_MS,
        },
    )
    .await?;
    Ok(AuthenticateConnectResponse {
        outcome: Some(Outcome::Pairing(PairingPending {
            request_id: code.request_id.clone(),
            pairing_code: code.code.clone(),
            sender_id,
            reason: "not-paired".to_owned(),
            requested_role: "operator".to_owned(),
            expires_at_ms: code.expires_at,
            ..Default::default()
        })),
        created_request: created.then(|| convert::pairing_code(&code)),
        ..Default::default()
    })
}

/// The principal of a live API key, or `None` when `token` is no such key.
async fn api_key(
    svc: &AuthService,
    origin: &Origin,
    token: &str,
    user_id: String,
    tenant_hint: String,
) -> Result<Option<AuthenticateConnectResponse>, ServiceError> {
    let now = svc.now();
    let Some(key) = svc.store.api_key_by_hash(&secret::hash(token)).await? else {
        return Ok(None);
    };
    if !secret::matches_hash(token, &key.key_hash) || !key.is_live(now) {
        return Ok(None);
    }
    svc.store.touch_api_key(&key.id, now).await?;
    let tenant = if !key.tenant_id.is_empty() {
        key.tenant_id.clone()
    } else if !tenant_hint.is_empty() {
        tenant_hint
    } else {
        svc.config.default_tenant_id.clone()
    };
    let user = if !key.owner_id.is_empty() {
        key.owner_id.clone()
    } else if !user_id.is_empty() {
        user_id
    } else {
        svc.config.default_user_id.clone()
    };
    let role = scopes::goclaw_role(&key.scopes);
    Ok(Some(principal(
        origin,
        tenant,
        user,
        role,
        key.scopes.clone(),
    )))
}
