//! The goclaw connect chain, in goclaw's order: gateway token, API key, paired
//! browser sender, and — with no token at all — browser pairing. Anything else
//! (a wrong token) is refused: fail-closed.
//!
//! Invariants: an API key is found by the hash of the presented key only and
//! must be live (not revoked, not expired); it fixes tenant and user (its
//! owner, else its creator) whatever the client asks, and never yields the
//! `owner` role. A tenant hint is honoured for an owner (any existing tenant)
//! or a member of that tenant (with the membership's role), and is refused as
//! `TENANT_ACCESS_REVOKED` otherwise. A paired sender gets `operator` as the
//! user it was paired as, in the tenant it was paired in. Every principal goes
//! through [`AuthService::admit`] (active tenant, membership not removed).

use clawgate_proto::auth::{
    AuthenticateConnectResponse, GoclawConnect, PairingPending,
    authenticate_connect_response::Outcome,
};
use clawgate_proto::principal::{Dialect, SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::limits::AuthScope;

use crate::pairing::{self, BROWSER_CHANNEL};
use crate::store::NewCode;
use crate::{
    API_KEY_PREFIX, AuthService, Origin, PAIRING_CODE_TTL_MS, api_keys, connect_errors, convert,
    scopes,
};

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
            return gateway(svc, origin, user_id, &tenant_hint).await;
        }
        // 1b. API key.
        if token.starts_with(API_KEY_PREFIX) {
            svc.check_lockout(origin.ip, AuthScope::ApiKey).await?;
            if let Some(key) = api_keys::authenticate(svc, token).await? {
                let user = key.user().to_owned();
                svc.admit(&key.tenant_id, &user, false).await?;
                let role = scopes::goclaw_role(&key.scopes);
                return Ok(principal(
                    origin,
                    key.tenant_id.clone(),
                    user,
                    role,
                    key.scopes.clone(),
                ));
            }
            svc.record_failure(origin.ip, AuthScope::ApiKey).await;
        } else {
            svc.record_failure(origin.ip, AuthScope::SharedSecret).await;
        }
        return Err(ServiceError::unauthorized("invalid token"));
    }

    // 4. A paired browser reconnecting with its sender id: the user it was
    // paired as, in the tenant it was paired in.
    let sender_id = connect.sender_id.trim();
    if !sender_id.is_empty() {
        pairing::validate_sender_id(sender_id)?;
        let now = svc.now();
        let hint = match tenant_hint.as_str() {
            "" => String::new(),
            hint => svc
                .find_tenant(hint)
                .await?
                .map_or_else(|| hint.to_owned(), |t| t.id),
        };
        if let Some(sender) = svc
            .store
            .paired_sender(sender_id, BROWSER_CHANNEL, &hint, now)
            .await?
        {
            svc.admit(&sender.tenant_id, &sender.user_id, false).await?;
            let scopes = vec![SCOPE_READ.to_owned(), SCOPE_WRITE.to_owned()];
            return Ok(principal(
                origin,
                sender.tenant_id,
                sender.user_id,
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

/// Step 1, the gateway token: an owner (configured `owner_ids`) gets any
/// existing tenant it names, else the default one; anyone else is admin of the
/// default tenant, or — naming another tenant — gets the role of its
/// membership there. Every other case is refused as tenant access revoked.
async fn gateway(
    svc: &AuthService,
    origin: &Origin,
    user_id: String,
    hint: &str,
) -> Result<AuthenticateConnectResponse, ServiceError> {
    let user = if user_id.is_empty() {
        svc.config.default_user_id.clone()
    } else {
        user_id
    };
    let owner = svc.config.owner_ids.contains(&user);
    let default = svc.config.default_tenant_id.clone();
    let named = match hint {
        "" => None,
        hint => Some(
            svc.find_tenant(hint)
                .await?
                .ok_or_else(connect_errors::tenant_access_revoked)?,
        ),
    };
    if owner {
        let tenant = named.map_or(default, |t| t.id);
        svc.admit(&tenant, &user, true).await?;
        return Ok(principal(
            origin,
            tenant,
            user,
            "owner",
            vec![SCOPE_ADMIN.to_owned()],
        ));
    }
    let (tenant, role) = match named {
        Some(tenant) if tenant.id != default => {
            let member = svc
                .store
                .user(&tenant.id, &user)
                .await?
                .filter(|m| !m.is_removed())
                .ok_or_else(connect_errors::tenant_access_revoked)?;
            (tenant.id, member.role)
        }
        _ => (default, "admin".to_owned()),
    };
    svc.admit(&tenant, &user, false).await?;
    let scopes = membership_scopes(&role);
    Ok(principal(origin, tenant, user, &role, scopes))
}

/// Operator scopes of a goclaw membership role.
fn membership_scopes(role: &str) -> Vec<String> {
    let scopes: &[&str] = match role {
        "admin" => &[SCOPE_ADMIN],
        "operator" => &[SCOPE_READ, SCOPE_WRITE],
        _ => &[SCOPE_READ],
    };
    scopes.iter().map(|s| (*s).to_owned()).collect()
}
