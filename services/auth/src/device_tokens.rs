//! Device tokens (§3.5): one bearer token per (device, role), issued on connect
//! and rotated or revoked by `device.token.*`.
//!
//! Invariants: a token is shown only when minted, and only to that device (the
//! connect that proved it, or the device itself rotating its own token); a
//! non-admin caller bound to a device manages only that device, an operator only
//! its own user's devices (another's is denied exactly like a missing one); new
//! scopes stay
//! within the device's approved scopes and, unless admin, the caller's own; a
//! revocation takes effect at the next check (the edge disconnects the sockets).

use clawgate_proto::auth::{DeviceTokenInfo, RevokeDeviceTokenRequest, RotateDeviceTokenRequest};
use clawgate_proto::principal::{SCOPE_ADMIN, SCOPE_PAIRING};
use clawgate_proto::{Principal, ServiceError};

use crate::store::{DeviceRecord, Scope, TokenRecord};
use crate::{AuthService, convert, scopes, secret};

/// Returns the token to hand to a connecting device: the presented one when it
/// is the stored one and covers `requested`, else a new one (replacing the old;
/// only hashes are stored, so an old token cannot be shown again). The new one
/// keeps the old scopes when they cover `requested`.
pub async fn ensure(
    svc: &AuthService,
    device: &DeviceRecord,
    role: &str,
    requested: &[String],
    presented: Option<&str>,
    now: i64,
) -> Result<(String, TokenRecord), ServiceError> {
    let existing = svc
        .store
        .token(&device.tenant_id, &device.device_id, role)
        .await?;
    if let (Some(presented), Some(existing)) = (presented, &existing)
        && !existing.is_revoked()
        && secret::matches_hash(presented, &existing.token_hash)
        && scopes::within(requested, &existing.scopes)
    {
        svc.store
            .touch_token(&device.tenant_id, &device.device_id, role, now)
            .await?;
        return Ok((presented.to_owned(), existing.clone()));
    }
    let scopes = match existing {
        Some(t) if !t.is_revoked() && scopes::within(requested, &t.scopes) => t.scopes,
        _ => scopes::normalize(requested),
    };
    let token = secret::device_token();
    let mut record = svc
        .store
        .put_token(device, role, &token.hash(), &scopes, now)
        .await?;
    svc.store
        .touch_token(&device.tenant_id, &device.device_id, role, now)
        .await?;
    record.last_used_at = now;
    Ok((token.into_inner(), record))
}

fn rotation_denied() -> ServiceError {
    ServiceError::forbidden("device token rotation denied")
}

fn revocation_denied() -> ServiceError {
    ServiceError::forbidden("device token revocation denied")
}

/// The device `device_id` of the caller's tenant, if the caller may manage it.
async fn managed_device(
    svc: &AuthService,
    principal: &Principal,
    device_id: &str,
    role: &str,
    denied: fn() -> ServiceError,
) -> Result<DeviceRecord, ServiceError> {
    principal.require()?;
    principal.require_scope(SCOPE_PAIRING)?;
    if device_id.is_empty() || role.is_empty() {
        return Err(ServiceError::invalid("deviceId and role are required"));
    }
    let admin = principal.has_scope(SCOPE_ADMIN);
    if !admin && !principal.device_id.is_empty() && principal.device_id != device_id {
        return Err(denied());
    }
    let device = svc
        .store
        .device(Scope::of(principal), device_id)
        .await?
        .ok_or_else(denied)?;
    if !device.roles.iter().any(|r| r == role) {
        return Err(denied());
    }
    Ok(device)
}

pub async fn rotate(
    svc: &AuthService,
    principal: &Principal,
    request: RotateDeviceTokenRequest,
) -> Result<DeviceTokenInfo, ServiceError> {
    scopes::validate(&request.scopes)?;
    let device = managed_device(
        svc,
        principal,
        &request.device_id,
        &request.role,
        rotation_denied,
    )
    .await?;
    let previous = svc
        .store
        .token(&device.tenant_id, &device.device_id, &request.role)
        .await?;
    let wanted = if request.scopes.is_empty() {
        previous.map(|t| t.scopes).unwrap_or_default()
    } else {
        request.scopes.clone()
    };
    let wanted = if request.role == "node" {
        Vec::new()
    } else {
        scopes::normalize(&wanted)
    };
    if !scopes::within(&wanted, &device.scopes) {
        return Err(rotation_denied());
    }
    if !principal.has_scope(SCOPE_ADMIN) && !scopes::within(&wanted, &principal.scopes) {
        return Err(rotation_denied());
    }
    let now = svc.now();
    let token = secret::device_token();
    let record = svc
        .store
        .put_token(&device, &request.role, &token.hash(), &wanted, now)
        .await?;
    tracing::info!(device = %device.device_id, role = %request.role, "device token rotated");
    let mut info = convert::token_info(&record);
    if principal.device_id == device.device_id {
        info.token = token.into_inner();
    }
    Ok(info)
}

pub async fn revoke(
    svc: &AuthService,
    principal: &Principal,
    request: RevokeDeviceTokenRequest,
) -> Result<DeviceTokenInfo, ServiceError> {
    let device = managed_device(
        svc,
        principal,
        &request.device_id,
        &request.role,
        revocation_denied,
    )
    .await?;
    let record = svc
        .store
        .revoke_token(
            Scope::of(principal),
            &device.device_id,
            &request.role,
            svc.now(),
        )
        .await?
        .ok_or_else(revocation_denied)?;
    tracing::info!(device = %device.device_id, role = %request.role, "device token revoked");
    Ok(convert::token_info(&record))
}
