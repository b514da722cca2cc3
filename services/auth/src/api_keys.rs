//! API key RPCs (admin only). A key is shown once, at creation; only its SHA-256
//! and a short display prefix are kept.
//!
//! Invariants: every key belongs to the creator's tenant and acts as a user of
//! it (its `owner_id`, or the creator when unset); there are no keys without a
//! tenant; listing and revoking are confined to the caller's tenant (and, for a
//! caller that does not see the whole tenant, to its own keys); a key of
//! another tenant or user is "unknown", like a missing one; scopes are operator
//! scopes; an expiry, when given, lies in the future.

use clawgate_proto::auth::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, ListApiKeysResponse, RevokeApiKeyRequest,
};
use clawgate_proto::principal::{
    SCOPE_ADMIN, SCOPE_APPROVALS, SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE,
};
use clawgate_proto::{Principal, ServiceError};

use crate::store::{NewApiKey, Scope};
use crate::{AuthService, convert, scopes, secret};

/// Scopes an API key may carry.
const KEY_SCOPES: &[&str] = &[
    SCOPE_ADMIN,
    SCOPE_READ,
    SCOPE_WRITE,
    SCOPE_APPROVALS,
    SCOPE_PAIRING,
    "operator.provision",
];
const MAX_NAME_LEN: usize = 100;
const MAX_OWNER_LEN: usize = 255;

fn require_admin(principal: &Principal) -> Result<(), ServiceError> {
    principal.require()?;
    principal.require_scope(SCOPE_ADMIN)
}

pub async fn create(
    svc: &AuthService,
    principal: &Principal,
    request: CreateApiKeyRequest,
) -> Result<CreateApiKeyResponse, ServiceError> {
    require_admin(principal)?;
    let name = request.name.trim();
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid name"));
    }
    if request.scopes.is_empty() {
        return Err(ServiceError::invalid("at least one scope is required"));
    }
    scopes::validate(&request.scopes)?;
    if let Some(scope) = request
        .scopes
        .iter()
        .find(|s| !KEY_SCOPES.contains(&s.as_str()))
    {
        return Err(ServiceError::invalid(format!("unknown scope {scope:?}")));
    }
    let owner_id = request.owner_id.trim();
    if owner_id.len() > MAX_OWNER_LEN || owner_id.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid owner_id"));
    }
    let now = svc.now();
    if request.expires_at_ms != 0 && request.expires_at_ms <= now {
        return Err(ServiceError::invalid(
            "expires_at_ms must lie in the future",
        ));
    }
    let key = secret::api_key();
    let record = svc
        .store
        .insert_api_key(
            &NewApiKey {
                tenant_id: principal.tenant_id.clone(),
                owner_id: owner_id.to_owned(),
                name: name.to_owned(),
                prefix: secret::api_key_display_prefix(&key),
                key_hash: key.hash(),
                scopes: scopes::union(&[], &request.scopes),
                created_by: principal.user_id.clone(),
                expires_at: request.expires_at_ms,
            },
            now,
        )
        .await?;
    tracing::info!(key = %record.id, tenant = %record.tenant_id, "api key created");
    Ok(CreateApiKeyResponse {
        key: Some(convert::api_key(&record)),
        secret: key.into_inner(),
    })
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
) -> Result<ListApiKeysResponse, ServiceError> {
    require_admin(principal)?;
    let keys: Vec<ApiKey> = svc
        .store
        .api_keys(Scope::of(principal))
        .await?
        .iter()
        .map(convert::api_key)
        .collect();
    Ok(ListApiKeysResponse { keys })
}

pub async fn revoke(
    svc: &AuthService,
    principal: &Principal,
    request: RevokeApiKeyRequest,
) -> Result<ApiKey, ServiceError> {
    require_admin(principal)?;
    let record = svc
        .store
        .revoke_api_key(Scope::of(principal), &request.id, svc.now())
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown api key"))?;
    tracing::info!(key = %record.id, "api key revoked");
    Ok(convert::api_key(&record))
}

/// The live key `token` is, if it is one (its last use recorded). Only the
/// digest of the presented key is looked up; a key without a tenant or user
/// never authenticates.
pub async fn authenticate(
    svc: &AuthService,
    token: &str,
) -> Result<Option<crate::store::ApiKeyRecord>, ServiceError> {
    let now = svc.now();
    let Some(key) = svc.store.find_api_key(&secret::hash(token)).await? else {
        return Ok(None);
    };
    if !secret::matches_hash(token, &key.key_hash)
        || !key.is_live(now)
        || key.tenant_id.is_empty()
        || key.user().is_empty()
    {
        return Ok(None);
    }
    svc.store
        .touch_api_key(&key.tenant_id, &key.id, now)
        .await?;
    Ok(Some(key))
}
