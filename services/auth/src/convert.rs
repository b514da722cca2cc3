//! Stored records to protobuf messages. Token and key hashes and sealed secret
//! bytes never leave here.

use clawgate_proto::auth::{
    ApiKey, DeviceTokenInfo, PairedDevice, PairingRequest, SecretInfo, Tenant, User,
};

use crate::store::{
    ApiKeyRecord, DeviceRecord, DeviceRequest, PairedSender, PairingCode, SecretRecord,
    TenantRecord, TokenRecord, UserRecord,
};

pub fn device_request(r: &DeviceRequest) -> PairingRequest {
    PairingRequest {
        request_id: r.request_id.clone(),
        tenant_id: r.tenant_id.clone(),
        user_id: r.user_id.clone(),
        device_id: r.device_id.clone(),
        public_key: r.public_key.clone(),
        display_name: r.display_name.clone(),
        platform: r.platform.clone(),
        device_family: r.device_family.clone(),
        client_id: r.client_id.clone(),
        client_mode: r.client_mode.clone(),
        role: r.role.clone(),
        roles: r.roles.clone(),
        scopes: r.scopes.clone(),
        reason: r.reason.clone(),
        remote_ip: r.remote_ip.clone(),
        created_at_ms: r.created_at,
        expires_at_ms: r.expires_at,
        ..Default::default()
    }
}

pub fn pairing_code(c: &PairingCode) -> PairingRequest {
    PairingRequest {
        request_id: c.request_id.clone(),
        tenant_id: c.tenant_id.clone(),
        user_id: c.user_id.clone(),
        pairing_code: c.code.clone(),
        sender_id: c.sender_id.clone(),
        channel: c.channel.clone(),
        chat_id: c.chat_id.clone(),
        account_id: c.account_id.clone(),
        remote_ip: c.remote_ip.clone(),
        role: "operator".to_owned(),
        reason: "not-paired".to_owned(),
        created_at_ms: c.created_at,
        expires_at_ms: c.expires_at,
        ..Default::default()
    }
}

pub fn token_info(t: &TokenRecord) -> DeviceTokenInfo {
    DeviceTokenInfo {
        device_id: t.device_id.clone(),
        role: t.role.clone(),
        scopes: t.scopes.clone(),
        created_at_ms: t.created_at,
        rotated_at_ms: t.rotated_at,
        revoked_at_ms: t.revoked_at,
        last_used_at_ms: t.last_used_at,
        token: String::new(),
    }
}

pub fn device(d: &DeviceRecord, tokens: &[TokenRecord]) -> PairedDevice {
    PairedDevice {
        device_id: d.device_id.clone(),
        tenant_id: d.tenant_id.clone(),
        user_id: d.user_id.clone(),
        public_key: d.public_key.clone(),
        display_name: d.display_name.clone(),
        platform: d.platform.clone(),
        device_family: d.device_family.clone(),
        roles: d.roles.clone(),
        scopes: d.scopes.clone(),
        tokens: tokens.iter().map(token_info).collect(),
        created_at_ms: d.created_at,
        approved_at_ms: d.approved_at,
        ..Default::default()
    }
}

pub fn sender(s: &PairedSender) -> PairedDevice {
    PairedDevice {
        tenant_id: s.tenant_id.clone(),
        user_id: s.user_id.clone(),
        roles: vec!["operator".to_owned()],
        sender_id: s.sender_id.clone(),
        channel: s.channel.clone(),
        created_at_ms: s.paired_at,
        approved_at_ms: s.paired_at,
        ..Default::default()
    }
}

pub fn api_key(k: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: k.scopes.clone(),
        tenant_id: k.tenant_id.clone(),
        owner_id: k.owner_id.clone(),
        created_by: k.created_by.clone(),
        created_at_ms: k.created_at,
        expires_at_ms: k.expires_at,
        revoked_at_ms: k.revoked_at,
        last_used_at_ms: k.last_used_at,
    }
}

pub fn tenant(t: &TenantRecord) -> Tenant {
    Tenant {
        id: t.id.clone(),
        slug: t.slug.clone(),
        name: t.name.clone(),
        status: t.status.clone(),
        created_at_ms: t.created_at,
        updated_at_ms: t.updated_at,
    }
}

pub fn user(u: &UserRecord) -> User {
    User {
        tenant_id: u.tenant_id.clone(),
        user_id: u.user_id.clone(),
        role: u.role.clone(),
        display_name: u.display_name.clone(),
        created_at_ms: u.created_at,
        updated_at_ms: u.updated_at,
    }
}

pub fn secret_info(s: &SecretRecord) -> SecretInfo {
    SecretInfo {
        name: s.name.clone(),
        key_id: s.key_id.clone(),
        created_at_ms: s.created_at,
        updated_at_ms: s.updated_at,
    }
}
