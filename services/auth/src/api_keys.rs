//! API key RPCs (admin only). A key is shown once, at creation; only its SHA-256
//! and a short display prefix are kept.
//!
//! Invariants: keys belong to the creator's tenant, except system keys (no
//! tenant), which only an `owner` may create, list and revoke; scopes are
//! operator scopes; an expiry, when given, lies in the future.

use clawgate_proto::auth::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, ListApiKeysResponse, RevokeApiKeyRequest,
};
use clawgate_proto::principal::{
    SCOPE_ADMIN, SCOPE_APPROVALS, SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE,
};
use clawgate_proto::{Principal, ServiceError};

use crate::store::NewApiKey;
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

fn is_owner(principal: &Principal) -> bool {
    principal.role == "owner"
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
    let mut keys: Vec<ApiKey> = svc
        .store
        .api_keys(&principal.tenant_id)
        .await?
        .iter()
        .map(convert::api_key)
        .collect();
    if is_owner(principal) {
        keys.extend(svc.store.api_keys("").await?.iter().map(convert::api_key));
    }
    Ok(ListApiKeysResponse { keys })
}

pub async fn revoke(
    svc: &AuthService,
    principal: &Principal,
    request: RevokeApiKeyRequest,
) -> Result<ApiKey, ServiceError> {
    require_admin(principal)?;
    let mut tenants = vec![principal.tenant_id.as_str()];
    if is_owner(principal) {
        tenants.push("");
    }
    let record = svc
        .store
        .revoke_api_key(&tenants, &request.id, svc.now())
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown api key"))?;
    tracing::info!(key = %record.id, "api key revoked");
    Ok(convert::api_key(&record))
}
