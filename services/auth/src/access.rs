//! Who may act where: the tenant and membership checks shared by the connect
//! chains and the tenant, user and secret RPCs.
//!
//! Invariants:
//! - a connect ends in a principal only for an existing, active tenant (the
//!   default tenant counts as existing even before its row is written), and
//!   never for a user whose membership there was removed; every refusal is the
//!   same `TENANT_ACCESS_REVOKED` error, whatever the reason (unknown tenant,
//!   disabled tenant, no or removed membership), so a client learns nothing
//!   about tenants it has no access to;
//! - an RPC naming a tenant resolves it (by id or slug) only for an owner; for
//!   anyone else a tenant other than its own answers NOT_FOUND "unknown
//!   tenant", exactly like a tenant that does not exist.

use clawgate_proto::principal::Access;
use clawgate_proto::{Principal, ServiceError};

use crate::AuthService;
use crate::connect_errors;
use crate::store::{STATUS_ACTIVE, TenantRecord, UserRecord};

pub fn unknown_tenant() -> ServiceError {
    ServiceError::not_found("unknown tenant")
}

/// Fails with FORBIDDEN unless the caller is an owner.
pub fn require_owner(principal: &Principal) -> Result<(), ServiceError> {
    principal.require()?;
    if principal.access() == Access::Owner {
        Ok(())
    } else {
        Err(ServiceError::forbidden("owner role required"))
    }
}

/// Fails with FORBIDDEN unless the caller sees its whole tenant (admin or owner).
pub fn require_admin(principal: &Principal) -> Result<(), ServiceError> {
    principal.require()?;
    if principal.sees_tenant() {
        Ok(())
    } else {
        Err(ServiceError::forbidden("admin role required"))
    }
}

impl AuthService {
    /// Writes the default tenant's row unless it exists (idempotent; a no-op
    /// without a configured default tenant).
    pub async fn ensure_default_tenant(&self) -> Result<(), ServiceError> {
        let id = self.config.default_tenant_id.as_str();
        if id.is_empty() {
            return Ok(());
        }
        self.store
            .ensure_tenant(id, id, "Default", self.now())
            .await?;
        Ok(())
    }

    /// The tenant named `key` (id or slug). The default tenant's row is
    /// written on first need if it is missing.
    pub(crate) async fn find_tenant(
        &self,
        key: &str,
    ) -> Result<Option<TenantRecord>, ServiceError> {
        if let Some(tenant) = self.store.resolve_tenant(key).await? {
            return Ok(Some(tenant));
        }
        if !key.is_empty() && key == self.config.default_tenant_id {
            self.ensure_default_tenant().await?;
            return self.store.resolve_tenant(key).await;
        }
        Ok(None)
    }

    /// Refuses a connect as `user` of `tenant` unless the tenant exists and is
    /// active and the user's membership there (if any) was not removed. Owners
    /// are not members of tenants and skip the membership check.
    pub(crate) async fn admit(
        &self,
        tenant: &str,
        user: &str,
        owner: bool,
    ) -> Result<(), ServiceError> {
        if owner {
            return self.admit_tenant(tenant).await;
        }
        let (status, removed) = self.store.admission(tenant, user).await?;
        self.admit_status(tenant, status.as_deref())?;
        if removed {
            return Err(connect_errors::tenant_access_revoked());
        }
        Ok(())
    }

    /// [`admit`](Self::admit) of a non-owner whose tenant status (`None`: the
    /// tenant has no row) and user row (`None`: it has none) were already read.
    pub(crate) fn admit_known(
        &self,
        tenant: &str,
        tenant_status: Option<&str>,
        user: Option<&UserRecord>,
    ) -> Result<(), ServiceError> {
        self.admit_status(tenant, tenant_status)?;
        if user.is_some_and(UserRecord::is_removed) {
            return Err(connect_errors::tenant_access_revoked());
        }
        Ok(())
    }

    /// Whether `tenant` may be acted in: active, or the default tenant
    /// before its row exists.
    async fn admit_tenant(&self, tenant: &str) -> Result<(), ServiceError> {
        let record = self.store.tenant(tenant).await?;
        self.admit_status(tenant, record.as_ref().map(|r| r.status.as_str()))
    }

    /// Whether a tenant of `status` (`None`: no row) may be acted in.
    fn admit_status(&self, tenant: &str, status: Option<&str>) -> Result<(), ServiceError> {
        match status {
            Some(STATUS_ACTIVE) => Ok(()),
            None if tenant == self.config.default_tenant_id && !tenant.is_empty() => Ok(()),
            _ => Err(connect_errors::tenant_access_revoked()),
        }
    }

    /// The tenant an RPC acts on: the caller's own for an empty `requested`;
    /// any existing one for an owner; otherwise only the caller's own, and
    /// NOT_FOUND (the same as for a missing tenant) for any other.
    pub(crate) async fn target_tenant(
        &self,
        principal: &Principal,
        requested: &str,
    ) -> Result<TenantRecord, ServiceError> {
        let requested = requested.trim();
        let key = if requested.is_empty() {
            principal.tenant_id.as_str()
        } else {
            requested
        };
        let tenant = self.find_tenant(key).await?.ok_or_else(unknown_tenant)?;
        if principal.access() != Access::Owner && tenant.id != principal.tenant_id {
            return Err(unknown_tenant());
        }
        Ok(tenant)
    }
}
