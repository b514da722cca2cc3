//! The OpenClaw connect, in the reference gateway's order (protocol §2.3 steps
//! 4–13): role, shared secret, device identity rules, device proof, device token,
//! pairing decision, device token issue.
//!
//! Invariants:
//! - every refusal carries the reference's `details.code`;
//! - a device-less operator authenticated by the shared token gets no scopes
//!   (except the local backend client); a device-less node is refused;
//! - a device connects only once paired with its exact key, pinned platform and
//!   device family, an effective (approved, non-revoked) role and approved scopes;
//!   anything else creates or merges a pending request and answers "pairing
//!   required", unless local auto-approval applies (never to a scope upgrade);
//! - a paired device's tenant and user are the principal's, whatever credential
//!   it connected with;
//! - a `clawgate_…` API key as `auth.token` authenticates like the shared
//!   token, but fixes tenant and user to the key's and caps the scopes to the
//!   key's (a device-less connection gets the requested scopes the key grants);
//!   a device it pairs belongs to the key's tenant and user, and a device
//!   paired to anyone else is refused with it;
//! - every principal's tenant is active and its user not removed
//!   ([`AuthService::admit`]).

use clawgate_proto::auth::{
    AuthenticateConnectResponse, ClientInfo, OpenClawConnect, PairingPending,
    authenticate_connect_response::Outcome,
};
use clawgate_proto::principal::Dialect;
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::limits::AuthScope;

use crate::connect_errors::{self, PairingDetails};
use crate::device_proof::{self, DeviceProofInput, VerifiedDevice};
use crate::store::{
    ApiKeyRecord, ConnectSeen, DeviceRecord, DeviceRequest, NewDeviceRequest, TokenRecord,
};
use crate::{
    API_KEY_PREFIX, AuthService, Origin, PAIRING_REQUEST_TTL_MS, api_keys, convert, device_tokens,
    pairing, scopes, secret,
};

/// Why a proven device must be (re-)approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PairingReason {
    NotPaired,
    MetadataUpgrade,
    RoleUpgrade,
    ScopeUpgrade,
}

impl PairingReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::NotPaired => "not-paired",
            Self::MetadataUpgrade => "metadata-upgrade",
            Self::RoleUpgrade => "role-upgrade",
            Self::ScopeUpgrade => "scope-upgrade",
        }
    }
}

/// Native app UIs, the only clients whose metadata upgrade may be auto-approved.
const NATIVE_APP_CLIENTS: &[&str] = &["openclaw-macos", "openclaw-ios", "openclaw-android"];

pub async fn connect(
    svc: &AuthService,
    origin: &Origin,
    connect: OpenClawConnect,
) -> Result<AuthenticateConnectResponse, ServiceError> {
    // Step 4: role.
    let role = if connect.role.is_empty() {
        "operator"
    } else {
        connect.role.as_str()
    };
    if role != "operator" && role != "node" {
        return Err(ServiceError::invalid("invalid role"));
    }
    scopes::validate(&connect.scopes)?;
    let client = connect.client.clone().unwrap_or_default();
    let token = connect.token.as_deref().filter(|t| !t.is_empty());
    let device_token = connect.device_token.as_deref().filter(|t| !t.is_empty());

    // Step 6: shared secret (or an API key), constant time, behind the lockout.
    let (shared_ok, key) = match token {
        Some(token) => shared_secret(svc, origin, token).await?,
        None => (false, None),
    };

    // Step 7: device-less connections.
    let Some(device) = connect.device.as_ref() else {
        return deviceless(
            svc,
            origin,
            &connect,
            &client,
            role,
            shared_ok,
            key.as_ref(),
        )
        .await;
    };

    // Step 8: device proof (signature over what was sent, before any clearing).
    let token_for_signature = connect
        .token
        .as_deref()
        .or(connect.device_token.as_deref())
        .or(connect.bootstrap_token.as_deref())
        .unwrap_or("");
    let now = svc.now();
    let verified = device_proof::verify(&DeviceProofInput {
        device,
        client: &client,
        role,
        scopes: &connect.scopes,
        token_for_signature,
        challenge_nonce: &connect.challenge_nonce,
        now_ms: now,
    })?;
    let requested: Vec<String> = match (role, &key) {
        ("node", _) => Vec::new(),
        (_, Some(key)) => scopes::cap(&connect.scopes, &key.scopes),
        (_, None) => connect.scopes.clone(),
    };
    // The paired device with its token and user, in one read.
    let facts = svc
        .store
        .paired_facts(&verified.device_id, role)
        .await?
        .filter(|f| f.device.public_key == verified.public_key_b64url);
    let paired = facts.as_ref().map(|f| f.device.clone());
    if let (Some(device), Some(key)) = (&paired, &key)
        && (device.tenant_id != key.tenant_id || device.user_id != key.user())
    {
        return Err(connect_errors::api_key_device_mismatch());
    }
    // Step 9: device token, when the shared secret did not authenticate.
    let candidate = device_token.or(if key.is_some() { None } else { token });
    let stored_token = facts.as_ref().and_then(|f| f.token.clone());
    let presented_valid = candidate.is_some_and(|c| {
        stored_token
            .as_ref()
            .is_some_and(|t| !t.is_revoked() && secret::matches_hash(c, &t.token_hash))
    });
    if !shared_ok {
        let Some(_) = candidate else {
            return Err(connect_errors::token_missing());
        };
        svc.check_lockout(origin.ip, AuthScope::DeviceToken).await?;
        let token_scopes_ok = stored_token
            .as_ref()
            .is_some_and(|t| scopes::within(&requested, &t.scopes));
        if !presented_valid || !token_scopes_ok {
            if token.is_some() {
                svc.record_failure(origin.ip, AuthScope::SharedSecret).await;
            }
            svc.record_failure(origin.ip, AuthScope::DeviceToken).await;
            return Err(if device_token.is_some() || presented_valid {
                connect_errors::device_token_mismatch()
            } else {
                connect_errors::token_mismatch(paired.is_some() && device_token.is_none())
            });
        }
    }

    // Authenticated: the tenant and user it acts as must be admitted.
    match (&paired, &key) {
        (Some(device), _) => {
            let facts = facts.as_ref();
            let status = facts.and_then(|f| f.tenant_status.as_deref());
            svc.admit_known(
                &device.tenant_id,
                status,
                facts.and_then(|f| f.user.as_ref()),
            )?;
        }
        (None, Some(_)) => {} // admitted with the key
        (None, None) => {
            svc.admit(
                &svc.config.default_tenant_id,
                &svc.config.default_user_id,
                false,
            )
            .await?;
        }
    }

    // Step 12: pairing.
    let mut response = AuthenticateConnectResponse::default();
    // A paired device that needs no pairing is recorded as seen (below, with
    // its token's use).
    let mut seen = false;
    let reason = pairing_reason(
        paired.as_ref(),
        stored_token.as_ref(),
        &verified,
        role,
        &requested,
    );
    let device = match reason {
        None => {
            let Some(device) = paired else {
                return Err(ServiceError::internal("paired device vanished"));
            };
            seen = true;
            device
        }
        Some(reason) => {
            // A paired device keeps its tenant and user, a key fixes them;
            // otherwise the default tenant, and the approver's user.
            let (tenant_id, user_id) = match (&paired, &key) {
                (Some(d), _) => (d.tenant_id.clone(), d.user_id.clone()),
                (None, Some(k)) => (k.tenant_id.clone(), k.user().to_owned()),
                (None, None) => (
                    svc.config.default_tenant_id.clone(),
                    svc.config.default_user_id.clone(),
                ),
            };
            let new = NewDeviceRequest {
                tenant_id,
                user_id,
                device_id: verified.device_id.clone(),
                public_key: verified.public_key_b64url.clone(),
                display_name: client.display_name.clone(),
                platform: verified.platform.clone(),
                device_family: verified.device_family.clone(),
                client_id: client.id.clone(),
                client_mode: client.mode.clone(),
                role: role.to_owned(),
                scopes: requested.clone(),
                reason: reason.as_str().to_owned(),
                remote_ip: origin.remote_ip.clone(),
                expires_at: now + PAIRING_REQUEST_TTL_MS,
                user_bound: paired.is_some() || key.is_some(),
            };
            let (request, created) = svc.store.put_device_request(&new, now).await?;
            if !auto_approves(svc, origin, &connect, &client, reason) {
                tracing::info!(
                    device = %verified.device_id,
                    request = %request.request_id,
                    reason = reason.as_str(),
                    "pairing required"
                );
                return Ok(pairing_required(
                    &request,
                    created,
                    reason,
                    role,
                    &requested,
                    paired.as_ref(),
                ));
            }
            let device =
                pairing::approve_device_request(svc, &request, &request.user_id, now).await?;
            tracing::info!(device = %device.device_id, request = %request.request_id, "pairing auto-approved");
            response.auto_approved = true;
            response.resolved_request = Some(convert::device_request(&request));
            device
        }
    };

    // Step 13: issue or reuse the device token of (device, role). A valid
    // token presented for an already paired device was read above: reused
    // without reading it again.
    let reusable = if presented_valid { candidate } else { None };
    let known = match (&stored_token, reusable, response.auto_approved) {
        (Some(stored), Some(presented), false) if scopes::within(&requested, &stored.scopes) => {
            Some((presented.to_owned(), stored.clone()))
        }
        _ => None,
    };
    let connect_seen = |token_role: Option<&str>| ConnectSeen {
        tenant: device.tenant_id.clone(),
        device_id: device.device_id.clone(),
        token_role: token_role.map(str::to_owned),
        display_name: client.display_name.clone(),
        client_id: client.id.clone(),
        client_mode: client.mode.clone(),
        remote_ip: origin.remote_ip.clone(),
        now,
    };
    let (token, record) = match known {
        // (Known only for a device that needed no pairing: seen.)
        Some((presented, mut stored)) => {
            svc.record_seen(connect_seen(Some(role))).await;
            stored.last_used_at = now;
            (presented, stored)
        }
        None => {
            if seen {
                svc.record_seen(connect_seen(None)).await;
            }
            device_tokens::ensure(svc, &device, role, &requested, reusable, now).await?
        }
    };
    response.device_token = token;
    response.device_token_issued_at_ms = record.issued_at();
    response.device_token_role = role.to_owned();
    response.device_token_scopes = scopes::normalize(&record.scopes);
    response.outcome = Some(Outcome::Principal(Principal {
        tenant_id: device.tenant_id.clone(),
        user_id: device.user_id.clone(),
        role: role.to_owned(),
        scopes: requested,
        device_id: device.device_id.clone(),
        connection_id: origin.connection_id.clone(),
        dialect: Dialect::Openclaw as i32,
    }));
    Ok(response)
}

/// Step 6: whether `token` is the shared secret, or a live API key (then also
/// the key, its tenant and user admitted).
async fn shared_secret(
    svc: &AuthService,
    origin: &Origin,
    token: &str,
) -> Result<(bool, Option<ApiKeyRecord>), ServiceError> {
    svc.check_lockout(origin.ip, AuthScope::SharedSecret)
        .await?;
    if svc.config.gateway_token.matches(token) {
        return Ok((true, None));
    }
    if !token.starts_with(API_KEY_PREFIX) {
        return Ok((false, None));
    }
    svc.check_lockout(origin.ip, AuthScope::ApiKey).await?;
    match api_keys::authenticate(svc, token).await? {
        Some(key) => {
            svc.admit(&key.tenant_id, key.user(), false).await?;
            Ok((true, Some(key)))
        }
        None => {
            svc.record_failure(origin.ip, AuthScope::ApiKey).await;
            Ok((false, None))
        }
    }
}

/// Step 7 for a connection without `device`.
async fn deviceless(
    svc: &AuthService,
    origin: &Origin,
    connect: &OpenClawConnect,
    client: &ClientInfo,
    role: &str,
    shared_ok: bool,
    key: Option<&ApiKeyRecord>,
) -> Result<AuthenticateConnectResponse, ServiceError> {
    if connect.token.as_deref().is_some_and(|t| !t.is_empty()) && !shared_ok {
        svc.record_failure(origin.ip, AuthScope::SharedSecret).await;
        return Err(connect_errors::token_mismatch(false));
    }
    if role == "node" {
        return Err(connect_errors::device_identity_required());
    }
    if !shared_ok {
        return Err(connect_errors::token_missing());
    }
    if let Some(key) = key {
        // An API key binds the connection: the requested scopes the key grants.
        return Ok(AuthenticateConnectResponse {
            outcome: Some(Outcome::Principal(Principal {
                tenant_id: key.tenant_id.clone(),
                user_id: key.user().to_owned(),
                role: role.to_owned(),
                scopes: scopes::cap(&connect.scopes, &key.scopes),
                device_id: String::new(),
                connection_id: origin.connection_id.clone(),
                dialect: Dialect::Openclaw as i32,
            })),
            ..Default::default()
        });
    }
    svc.admit(
        &svc.config.default_tenant_id,
        &svc.config.default_user_id,
        false,
    )
    .await?;
    // Late v3: unbound scopes are cleared, except for the local backend client
    // and, when the edge's policy says so (v4), the local `cli` client that
    // presented the shared secret.
    let local_backend =
        origin.is_local && client.id == "gateway-client" && client.mode == "backend";
    let local_cli = connect.keep_local_cli_scopes
        && origin.is_local
        && shared_ok
        && client.id == "cli"
        && client.mode == "cli";
    let scopes = if local_backend || local_cli {
        connect.scopes.clone()
    } else {
        Vec::new()
    };
    Ok(AuthenticateConnectResponse {
        outcome: Some(Outcome::Principal(Principal {
            tenant_id: svc.config.default_tenant_id.clone(),
            user_id: svc.config.default_user_id.clone(),
            role: role.to_owned(),
            scopes,
            device_id: String::new(),
            connection_id: origin.connection_id.clone(),
            dialect: Dialect::Openclaw as i32,
        })),
        ..Default::default()
    })
}

/// §3.4: why the proven device must be approved, if it must.
fn pairing_reason(
    paired: Option<&DeviceRecord>,
    token: Option<&TokenRecord>,
    verified: &VerifiedDevice,
    role: &str,
    requested: &[String],
) -> Option<PairingReason> {
    let Some(device) = paired else {
        return Some(PairingReason::NotPaired);
    };
    if device.platform != verified.platform || device.device_family != verified.device_family {
        return Some(PairingReason::MetadataUpgrade);
    }
    let effective = device.roles.iter().any(|r| r == role)
        && token.is_some_and(|t| t.role == role && !t.is_revoked());
    if !effective {
        return Some(PairingReason::RoleUpgrade);
    }
    if !scopes::within(requested, &device.scopes) {
        return Some(PairingReason::ScopeUpgrade);
    }
    None
}

/// Silent local approval: configured, direct loopback; a metadata upgrade only
/// for native app UIs; a scope upgrade only when the edge's policy allows it
/// and the connection authenticated by shared token or nothing (never by a
/// device or bootstrap token alone).
fn auto_approves(
    svc: &AuthService,
    origin: &Origin,
    connect: &OpenClawConnect,
    client: &ClientInfo,
    reason: PairingReason,
) -> bool {
    if !svc.config.auto_approve_local || !origin.is_local {
        return false;
    }
    match reason {
        PairingReason::NotPaired | PairingReason::RoleUpgrade => true,
        PairingReason::MetadataUpgrade => {
            client.mode == "ui" && NATIVE_APP_CLIENTS.contains(&client.id.as_str())
        }
        PairingReason::ScopeUpgrade => {
            let by_device_credential = connect.token.as_deref().is_none_or(str::is_empty)
                && (connect
                    .device_token
                    .as_deref()
                    .is_some_and(|t| !t.is_empty())
                    || connect
                        .bootstrap_token
                        .as_deref()
                        .is_some_and(|t| !t.is_empty()));
            connect.silent_local_scope_upgrade && !by_device_credential
        }
    }
}

fn pairing_required(
    request: &DeviceRequest,
    created: bool,
    reason: PairingReason,
    role: &str,
    requested: &[String],
    paired: Option<&DeviceRecord>,
) -> AuthenticateConnectResponse {
    let details = PairingDetails {
        reason: reason.as_str(),
        request_id: &request.request_id,
        device_id: &request.device_id,
        requested_role: role,
        requested_scopes: requested,
        approved: paired.map(|d| (d.roles.as_slice(), d.scopes.as_slice())),
    };
    AuthenticateConnectResponse {
        outcome: Some(Outcome::Pairing(PairingPending {
            request_id: request.request_id.clone(),
            device_id: request.device_id.clone(),
            reason: reason.as_str().to_owned(),
            requested_role: role.to_owned(),
            requested_scopes: requested.to_vec(),
            error_message: details.message(),
            error_details_json: details.to_json().to_string(),
            expires_at_ms: request.expires_at,
            ..Default::default()
        })),
        created_request: created.then(|| convert::device_request(request)),
        ..Default::default()
    }
}
