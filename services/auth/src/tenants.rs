//! Tenant RPCs: owners create, update, get and list every tenant; anyone else
//! gets and lists only its own.
//!
//! Invariants: ids match `[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}` and slugs
//! `[a-z0-9][a-z0-9-]{0,62}`; no slug equals another tenant's id (so a name
//! resolves to one tenant); the default tenant cannot be disabled (the owner
//! must always be able to connect somewhere to re-enable the others); a
//! non-owner asking for another tenant gets the same NOT_FOUND as for a
//! tenant that does not exist.

use clawgate_proto::auth::{
    CreateTenantRequest, GetTenantRequest, ListTenantsResponse, Tenant, UpdateTenantRequest,
};
use clawgate_proto::principal::Access;
use clawgate_proto::{ErrorCode, Principal, ServiceError};

use crate::access::{require_owner, unknown_tenant};
use crate::store::{STATUS_ACTIVE, STATUS_DISABLED, TenantUpdate};
use crate::{AuthService, convert};

const MAX_ID_LEN: usize = 64;
const MAX_SLUG_LEN: usize = 63;
const MAX_NAME_LEN: usize = 255;

fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        && id.len() <= MAX_ID_LEN
}

fn valid_slug(slug: &str) -> bool {
    let mut bytes = slug.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && slug.len() <= MAX_SLUG_LEN
}

fn valid_name(name: &str) -> Result<(), ServiceError> {
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid name"));
    }
    Ok(())
}

pub async fn create(
    svc: &AuthService,
    principal: &Principal,
    request: CreateTenantRequest,
) -> Result<Tenant, ServiceError> {
    require_owner(principal)?;
    let id = match request.id.trim() {
        "" => uuid::Uuid::new_v4().to_string(),
        id if valid_id(id) => id.to_owned(),
        _ => return Err(ServiceError::invalid("invalid tenant id")),
    };
    let slug = match request.slug.trim() {
        "" => id.to_ascii_lowercase(),
        slug => slug.to_owned(),
    };
    if !valid_slug(&slug) {
        return Err(ServiceError::invalid("invalid slug"));
    }
    let name = match request.name.trim() {
        "" => slug.clone(),
        name => name.to_owned(),
    };
    valid_name(&name)?;
    let record = svc
        .store
        .create_tenant(&id, &slug, &name, svc.now())
        .await?;
    tracing::info!(tenant = %record.id, slug = %record.slug, "tenant created");
    Ok(convert::tenant(&record))
}

pub async fn update(
    svc: &AuthService,
    principal: &Principal,
    request: UpdateTenantRequest,
) -> Result<Tenant, ServiceError> {
    require_owner(principal)?;
    let key = match request.tenant_id.trim() {
        "" => principal.tenant_id.as_str(),
        key => key,
    };
    let tenant = svc.find_tenant(key).await?.ok_or_else(unknown_tenant)?;
    let name = request.name.map(|n| n.trim().to_owned());
    if let Some(name) = &name {
        valid_name(name)?;
    }
    let status = request.status.map(|s| s.trim().to_owned());
    match status.as_deref() {
        None | Some(STATUS_ACTIVE) => {}
        Some(STATUS_DISABLED) if tenant.id == svc.config.default_tenant_id => {
            return Err(ServiceError::new(
                ErrorCode::FailedPrecondition,
                "the default tenant cannot be disabled",
            ));
        }
        Some(STATUS_DISABLED) => {}
        Some(_) => return Err(ServiceError::invalid("status must be active or disabled")),
    }
    let record = svc
        .store
        .update_tenant(&tenant.id, &TenantUpdate { name, status }, svc.now())
        .await?
        .ok_or_else(unknown_tenant)?;
    tracing::info!(tenant = %record.id, status = %record.status, "tenant updated");
    Ok(convert::tenant(&record))
}

pub async fn get(
    svc: &AuthService,
    principal: &Principal,
    request: GetTenantRequest,
) -> Result<Tenant, ServiceError> {
    principal.require()?;
    let tenant = svc.target_tenant(principal, &request.tenant_id).await?;
    Ok(convert::tenant(&tenant))
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
) -> Result<ListTenantsResponse, ServiceError> {
    principal.require()?;
    let tenants = if principal.access() == Access::Owner {
        svc.ensure_default_tenant().await?;
        svc.store.tenants().await?
    } else {
        svc.find_tenant(&principal.tenant_id)
            .await?
            .into_iter()
            .filter(|t| t.id == principal.tenant_id)
            .collect()
    };
    Ok(ListTenantsResponse {
        tenants: tenants.iter().map(convert::tenant).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_id("0193a5b0-7000-7000-8000-000000000001"));
        assert!(valid_id("Acme_1.eu:prod"));
        assert!(!valid_id("-x") && !valid_id("") && !valid_id("a b"));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug("Acme") && !valid_slug("a_b") && !valid_slug("-a"));
        assert!(valid_name("Acme, Inc.").is_ok());
        assert!(valid_name("a\nb").is_err());
    }
}
