//! User RPCs: the admins of a tenant (and owners) put and remove its users; an
//! operator lists only itself.
//!
//! Invariants: the tenant is the caller's unless an owner names another (see
//! [`AuthService::target_tenant`]); roles are `admin`, `operator` or `viewer`
//! (`owner` is configuration, never a membership); removing a user revokes its
//! credentials in the same transaction and names (tenant, user) so the edge
//! disconnects its sockets; a missing user and another tenant's user give the
//! same NOT_FOUND.

use clawgate_proto::auth::{
    ListUsersRequest, ListUsersResponse, PutUserRequest, RemoveUserRequest, RemoveUserResponse,
    User,
};
use clawgate_proto::{Principal, ServiceError};

use crate::access::require_admin;
use crate::store::Scope;
use crate::{AuthService, convert};

/// Roles a membership may carry.
pub const ROLES: &[&str] = &["admin", "operator", "viewer"];
const MAX_USER_ID_LEN: usize = 255;
const MAX_DISPLAY_NAME_LEN: usize = 255;

fn user_id(raw: &str) -> Result<&str, ServiceError> {
    let id = raw.trim();
    if id.is_empty() || id.len() > MAX_USER_ID_LEN || id.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid user_id"));
    }
    Ok(id)
}

pub async fn put(
    svc: &AuthService,
    principal: &Principal,
    request: PutUserRequest,
) -> Result<User, ServiceError> {
    require_admin(principal)?;
    let user = user_id(&request.user_id)?;
    let role = request.role.trim();
    if !ROLES.contains(&role) {
        return Err(ServiceError::invalid(
            "role must be admin, operator or viewer",
        ));
    }
    let display_name = request.display_name.trim();
    if display_name.len() > MAX_DISPLAY_NAME_LEN || display_name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid display_name"));
    }
    let tenant = svc.target_tenant(principal, &request.tenant_id).await?;
    let record = svc
        .store
        .put_user(&tenant.id, user, role, display_name, svc.now())
        .await?;
    tracing::info!(tenant = %record.tenant_id, user = %record.user_id, role = %record.role, "user put");
    Ok(convert::user(&record))
}

pub async fn remove(
    svc: &AuthService,
    principal: &Principal,
    request: RemoveUserRequest,
) -> Result<RemoveUserResponse, ServiceError> {
    require_admin(principal)?;
    let user = user_id(&request.user_id)?;
    let tenant = svc.target_tenant(principal, &request.tenant_id).await?;
    if !svc.store.remove_user(&tenant.id, user, svc.now()).await? {
        return Err(ServiceError::not_found("unknown user"));
    }
    tracing::info!(tenant = %tenant.id, user = %user, "user removed; credentials revoked");
    Ok(RemoveUserResponse {
        removed: true,
        tenant_id: tenant.id,
        user_id: user.to_owned(),
    })
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
    request: ListUsersRequest,
) -> Result<ListUsersResponse, ServiceError> {
    principal.require()?;
    let tenant = svc.target_tenant(principal, &request.tenant_id).await?;
    let scope = Scope {
        tenant: &tenant.id,
        user: principal.user_filter(),
    };
    let users = svc.store.users(scope).await?;
    Ok(ListUsersResponse {
        users: users.iter().map(convert::user).collect(),
    })
}
