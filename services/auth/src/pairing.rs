//! Pairing RPCs: list, approve, reject and remove, for OpenClaw devices
//! (by request id / device id) and goclaw senders (by pairing code / sender id),
//! plus goclaw's code request and public status poll.
//!
//! Invariants: every call is confined to the caller's tenant and needs
//! `operator.pairing` (admin implies it); an operator (not admin or owner) sees
//! and manages only its own user's devices, requests, codes and senders, and a
//! non-admin caller bound to a device only that device (and no goclaw codes or
//! senders); another user's or tenant's object is "unknown", like a missing
//! one; an approver must hold the scopes a request asks for unless admin; a
//! request is resolved once (approval claims it in the same transaction that
//! pairs); an approved device belongs to the request's user when the connect
//! fixed it (API key, device already paired), else to the approver; an
//! approved goclaw sender belongs to the user its code was requested for.

use clawgate_proto::auth::{
    ApprovePairingRequest, ApprovePairingResponse, ListPairingResponse, PairingRequest,
    PairingStatusRequest, PairingStatusResponse, RejectPairingRequest, RejectPairingResponse,
    RemoveDeviceRequest, RemoveDeviceResponse, RequestPairingRequest,
};
use clawgate_proto::principal::{SCOPE_ADMIN, SCOPE_PAIRING, SCOPE_WRITE};
use clawgate_proto::{Principal, ServiceError};

use crate::store::{
    CodeStatus, DeviceRecord, DeviceRequest, NewCode, PairedSender, PairingCode, Scope,
};
use crate::{
    AuthService, MAX_PENDING_CODES_PER_ACCOUNT, PAIRED_SENDER_TTL_MS, PAIRING_CODE_TTL_MS, convert,
    scopes, secret,
};

/// Channel of goclaw browser (dashboard) pairing.
pub const BROWSER_CHANNEL: &str = "browser";
/// Longest accepted goclaw sender id.
const MAX_SENDER_ID_LEN: usize = 128;
/// Longest accepted channel, chat or account id.
const MAX_ID_LEN: usize = 255;

/// Who is calling a pairing RPC.
struct Caller<'a> {
    principal: &'a Principal,
    admin: bool,
    /// Set when the caller may only manage this device.
    own_device: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn of(principal: &'a Principal) -> Result<Self, ServiceError> {
        principal.require()?;
        principal.require_scope(SCOPE_PAIRING)?;
        let admin = principal.has_scope(SCOPE_ADMIN);
        let own_device =
            (!admin && !principal.device_id.is_empty()).then_some(principal.device_id.as_str());
        Ok(Self {
            principal,
            admin,
            own_device,
        })
    }

    fn tenant(&self) -> &str {
        &self.principal.tenant_id
    }

    /// The rows the caller may see: its tenant, and its own user's rows unless
    /// it sees the whole tenant.
    fn scope(&self) -> Scope<'a> {
        Scope::of(self.principal)
    }

    /// Whether the caller may manage device `device_id`.
    fn may_manage(&self, device_id: &str) -> bool {
        self.own_device.is_none_or(|own| own == device_id)
    }

    /// Whether the caller may manage goclaw codes and senders.
    fn may_manage_senders(&self) -> bool {
        self.own_device.is_none()
    }
}

/// Fails unless `sender_id` is a goclaw sender id.
pub fn validate_sender_id(sender_id: &str) -> Result<(), ServiceError> {
    let mut bytes = sender_id.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok =
        bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    if first_ok && rest_ok && sender_id.len() <= MAX_SENDER_ID_LEN {
        Ok(())
    } else {
        Err(ServiceError::invalid("invalid senderId"))
    }
}

fn validate_id(name: &str, value: &str) -> Result<(), ServiceError> {
    if value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!("invalid {name}")));
    }
    Ok(())
}

/// Approves `request` in its tenant, for its own user when the request is
/// user-bound and for `approver` otherwise: pairs the device (roles and scopes
/// united with what it had, platform and family pinned anew) and mints a token
/// for each requested role. Returns the paired record.
pub async fn approve_device_request(
    svc: &AuthService,
    request: &DeviceRequest,
    approver: &str,
    now: i64,
) -> Result<DeviceRecord, ServiceError> {
    let tenant = request.tenant_id.as_str();
    let user = if request.user_bound {
        request.user_id.as_str()
    } else {
        approver
    };
    let previous = svc
        .store
        .device(Scope::tenant(tenant), &request.device_id)
        .await?
        .filter(|d| d.public_key == request.public_key);
    let (roles, approved_scopes, created_at) = match &previous {
        Some(d) => (
            scopes::union(&d.roles, &request.roles),
            scopes::union(&d.scopes, &request.scopes),
            d.created_at,
        ),
        None => (
            scopes::union(&[], &request.roles),
            scopes::union(&[], &request.scopes),
            now,
        ),
    };
    let device = DeviceRecord {
        device_id: request.device_id.clone(),
        tenant_id: tenant.to_owned(),
        user_id: user.to_owned(),
        public_key: request.public_key.clone(),
        display_name: request.display_name.clone(),
        platform: request.platform.clone(),
        device_family: request.device_family.clone(),
        client_id: request.client_id.clone(),
        client_mode: request.client_mode.clone(),
        roles,
        scopes: approved_scopes,
        remote_ip: request.remote_ip.clone(),
        created_at,
        approved_at: now,
        last_seen_at: previous.as_ref().map_or(0, |d| d.last_seen_at),
    };
    // The device receives its token on its next connect; these only make the
    // approved roles effective (only hashes are kept).
    let tokens: Vec<(String, String, Vec<String>)> = request
        .roles
        .iter()
        .map(|role| {
            let scopes = if role == "node" {
                Vec::new()
            } else {
                scopes::normalize(&request.scopes)
            };
            (role.clone(), secret::device_token().hash(), scopes)
        })
        .collect();
    svc.store
        .approve_device(request, &device, &tokens, now)
        .await?;
    Ok(device)
}

/// Returns the pending code of (`sender_id`, `channel`) in `tenant`, or creates one.
pub async fn code_for_sender(
    svc: &AuthService,
    new: NewCode,
) -> Result<(PairingCode, bool), ServiceError> {
    svc.store
        .put_code(
            &new,
            secret::pairing_code,
            MAX_PENDING_CODES_PER_ACCOUNT,
            svc.now(),
        )
        .await
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
) -> Result<ListPairingResponse, ServiceError> {
    let caller = Caller::of(principal)?;
    let now = svc.now();
    let mut response = ListPairingResponse::default();
    for request in svc
        .store
        .device_requests(caller.scope(), caller.own_device, now)
        .await?
    {
        response.pending.push(convert::device_request(&request));
    }
    for device in svc.store.devices(caller.scope(), caller.own_device).await? {
        let tokens = svc.store.tokens(caller.tenant(), &device.device_id).await?;
        response.paired.push(convert::device(&device, &tokens));
    }
    if caller.may_manage_senders() {
        for code in svc.store.pending_codes(caller.scope(), now).await? {
            response.pending.push(convert::pairing_code(&code));
        }
        for sender in svc.store.paired_senders(caller.scope(), now).await? {
            response.paired.push(convert::sender(&sender));
        }
    }
    Ok(response)
}

pub async fn approve(
    svc: &AuthService,
    principal: &Principal,
    request: ApprovePairingRequest,
) -> Result<ApprovePairingResponse, ServiceError> {
    let caller = Caller::of(principal)?;
    let now = svc.now();
    if let Some(pending) = device_request(svc, &caller, &request.request_id, now).await? {
        if !caller.may_manage(&pending.device_id) {
            return Err(ServiceError::forbidden("device pairing approval denied"));
        }
        if !caller.admin
            && let Some(scope) = scopes::missing(&pending.scopes, &principal.scopes).first()
        {
            return Err(ServiceError::forbidden(format!("missing scope: {scope}")));
        }
        let device = approve_device_request(svc, &pending, &principal.user_id, now).await?;
        let tokens = svc.store.tokens(caller.tenant(), &device.device_id).await?;
        tracing::info!(device = %device.device_id, request = %pending.request_id, "pairing approved");
        return Ok(ApprovePairingResponse {
            request_id: pending.request_id.clone(),
            device: Some(convert::device(&device, &tokens)),
            request: Some(convert::device_request(&pending)),
        });
    }
    let code = pending_code(
        svc,
        &caller,
        &request.request_id,
        &request.pairing_code,
        now,
    )
    .await?;
    let sender = PairedSender {
        tenant_id: code.tenant_id.clone(),
        user_id: code.user_id.clone(),
        sender_id: code.sender_id.clone(),
        channel: code.channel.clone(),
        chat_id: code.chat_id.clone(),
        account_id: code.account_id.clone(),
        paired_by: principal.user_id.clone(),
        paired_at: now,
        expires_at: now + PAIRED_SENDER_TTL_MS,
    };
    svc.store.approve_code(&code, &sender, now).await?;
    tracing::info!(request = %code.request_id, channel = %code.channel, "pairing code approved");
    Ok(ApprovePairingResponse {
        request_id: code.request_id.clone(),
        device: Some(convert::sender(&sender)),
        request: Some(convert::pairing_code(&code)),
    })
}

/// The live pending device request `request_id` of the caller's tenant, if any.
async fn device_request(
    svc: &AuthService,
    caller: &Caller<'_>,
    request_id: &str,
    now: i64,
) -> Result<Option<DeviceRequest>, ServiceError> {
    if request_id.is_empty() {
        return Ok(None);
    }
    svc.store
        .device_request(caller.scope(), request_id, now)
        .await
}

/// The live pending goclaw code named by `request_id` or `code`, if the caller may manage it.
async fn pending_code(
    svc: &AuthService,
    caller: &Caller<'_>,
    request_id: &str,
    code: &str,
    now: i64,
) -> Result<PairingCode, ServiceError> {
    if request_id.is_empty() && code.is_empty() {
        return Err(ServiceError::invalid("requestId or pairing code required"));
    }
    let found = svc
        .store
        .pending_code(caller.scope(), request_id, code, now)
        .await?;
    match found {
        Some(code) if caller.may_manage_senders() => Ok(code),
        Some(_) => Err(ServiceError::forbidden("pairing denied")),
        None if code.is_empty() => Err(ServiceError::not_found("unknown requestId")),
        None => Err(ServiceError::not_found("unknown or expired pairing code")),
    }
}

pub async fn reject(
    svc: &AuthService,
    principal: &Principal,
    request: RejectPairingRequest,
) -> Result<RejectPairingResponse, ServiceError> {
    let caller = Caller::of(principal)?;
    let now = svc.now();
    if let Some(pending) = device_request(svc, &caller, &request.request_id, now).await? {
        if !caller.may_manage(&pending.device_id) {
            return Err(ServiceError::forbidden("device pairing rejection denied"));
        }
        if !svc
            .store
            .delete_device_request(caller.scope(), &pending.request_id)
            .await?
        {
            return Err(ServiceError::not_found("unknown requestId"));
        }
        tracing::info!(device = %pending.device_id, request = %pending.request_id, "pairing rejected");
        return Ok(RejectPairingResponse {
            request_id: pending.request_id.clone(),
            device_id: pending.device_id.clone(),
            request: Some(convert::device_request(&pending)),
        });
    }
    let code = pending_code(
        svc,
        &caller,
        &request.request_id,
        &request.pairing_code,
        now,
    )
    .await?;
    if !svc
        .store
        .reject_code(caller.scope(), &code.request_id, now)
        .await?
    {
        return Err(ServiceError::not_found("unknown or expired pairing code"));
    }
    Ok(RejectPairingResponse {
        request_id: code.request_id.clone(),
        device_id: String::new(),
        request: Some(convert::pairing_code(&code)),
    })
}

pub async fn remove(
    svc: &AuthService,
    principal: &Principal,
    request: RemoveDeviceRequest,
) -> Result<RemoveDeviceResponse, ServiceError> {
    let caller = Caller::of(principal)?;
    if !request.device_id.is_empty() {
        if !caller.may_manage(&request.device_id) {
            return Err(ServiceError::forbidden("device removal denied"));
        }
        if !svc
            .store
            .delete_device(caller.scope(), &request.device_id)
            .await?
        {
            return Err(ServiceError::not_found("unknown deviceId"));
        }
        tracing::info!(device = %request.device_id, "device removed");
        return Ok(RemoveDeviceResponse {
            device_id: request.device_id,
            tenant_id: caller.tenant().to_owned(),
            ..Default::default()
        });
    }
    validate_sender_id(&request.sender_id)?;
    if !caller.may_manage_senders() {
        return Err(ServiceError::forbidden("device removal denied"));
    }
    let channel = if request.channel.is_empty() {
        BROWSER_CHANNEL
    } else {
        request.channel.as_str()
    };
    if !svc
        .store
        .delete_paired_sender(caller.scope(), &request.sender_id, channel)
        .await?
    {
        return Err(ServiceError::not_found("unknown sender"));
    }
    Ok(RemoveDeviceResponse {
        sender_id: request.sender_id,
        channel: channel.to_owned(),
        tenant_id: caller.tenant().to_owned(),
        ..Default::default()
    })
}

/// Public: where the newest pairing of `sender_id` stands. Reveals only the status.
pub async fn status(
    svc: &AuthService,
    request: PairingStatusRequest,
) -> Result<PairingStatusResponse, ServiceError> {
    validate_sender_id(&request.sender_id)?;
    let now = svc.now();
    let code = svc.store.latest_code_of_sender(&request.sender_id).await?;
    let (channel, tenant) = code.as_ref().map_or((BROWSER_CHANNEL, ""), |c| {
        (c.channel.as_str(), c.tenant_id.as_str())
    });
    let paired = svc
        .store
        .paired_sender(&request.sender_id, channel, tenant, now)
        .await?;
    let status = match (&paired, &code) {
        (Some(_), _) => CodeStatus::Approved,
        // Approved once, since removed or expired.
        (None, Some(code)) if code.status == CodeStatus::Approved => CodeStatus::Expired,
        (None, Some(code)) => code.status_at(now),
        (None, None) => CodeStatus::Expired,
    };
    Ok(PairingStatusResponse {
        status: status.as_str().to_owned(),
    })
}

/// goclaw `device.pair.request`: the sender's pending code, created if needed.
pub async fn request_pairing(
    svc: &AuthService,
    principal: &Principal,
    request: RequestPairingRequest,
) -> Result<PairingRequest, ServiceError> {
    principal.require()?;
    if !principal.has_scope(SCOPE_PAIRING) && !principal.has_scope(SCOPE_WRITE) {
        return Err(ServiceError::forbidden(format!(
            "missing scope: {SCOPE_PAIRING}"
        )));
    }
    validate_sender_id(&request.sender_id)?;
    validate_id("channel", &request.channel)?;
    validate_id("chatId", &request.chat_id)?;
    validate_id("accountId", &request.account_id)?;
    let channel = if request.channel.is_empty() {
        BROWSER_CHANNEL.to_owned()
    } else {
        request.channel
    };
    let now = svc.now();
    let (code, created) = code_for_sender(
        svc,
        NewCode {
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            sender_id: request.sender_id,
            channel,
            chat_id: request.chat_id,
            account_id: request.account_id,
            remote_ip: String::new(),
            expires_at: now + PAIRING_CODE_TTL_MS,
        },
    )
    .await?;
    let mut out = convert::pairing_code(&code);
    out.created = created;
    Ok(out)
}
