//! The reference node's device identity: an Ed25519 key, the device id and wire
//! public key derived from it, and the exact `v3` (and `v2`) strings a device
//! signs on connect.
//!
//! Written from the protocol reference (§3.1 key material, §3.2 signed string),
//! not from clawgate's code:
//! - `device.id` is the lowercase hex SHA-256 of the raw 32-byte public key;
//! - `device.publicKey` is that raw key in base64url without padding;
//! - the signature is Ed25519 over the UTF-8 payload, base64url without padding;
//! - the v3 payload is
//!   `v3|deviceId|clientId|clientMode|role|scopes,joined|signedAtMs|token|nonce|platform|deviceFamily`
//!   with platform and device family trimmed and ASCII-lowercased.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// An Ed25519 device key pair, as a node (or any device) holds it.
#[derive(Clone)]
pub struct NodeIdentity {
    key: SigningKey,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// The identity whose RFC 8032 private key (seed) is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random identity.
    pub fn random() -> Self {
        Self::from_seed(rand::random())
    }

    /// The 32-byte seed, to recreate the same identity later.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key_raw(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// `device.publicKey`: the raw public key, base64url without padding.
    pub fn public_key_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_raw())
    }

    /// `device.id`: lowercase hex SHA-256 of the raw public key (64 chars).
    pub fn device_id(&self) -> String {
        let digest = Sha256::digest(self.public_key_raw());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The Ed25519 signature of `payload`'s UTF-8 bytes, base64url without padding.
    pub fn sign(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }

    /// The `device.signature` of a connect, over the §3.2 v3 payload built
    /// from this identity's device id and the given fields.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_v3(
        &self,
        client_id: &str,
        client_mode: &str,
        role: &str,
        scopes: &[&str],
        signed_at_ms: u64,
        token: &str,
        nonce: &str,
        platform: &str,
        device_family: &str,
    ) -> String {
        let fields = SignedFields {
            client_id,
            client_mode,
            role,
            scopes,
            signed_at_ms,
            token,
            nonce,
        };
        self.sign(&fields.v3_payload(&self.device_id(), platform, device_family))
    }
}

/// The fields of a connect that both signed-string versions cover.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    /// `client.id` exactly as sent.
    pub client_id: &'a str,
    /// `client.mode` exactly as sent.
    pub client_mode: &'a str,
    /// The effective role (`params.role`, or `"operator"` when omitted).
    pub role: &'a str,
    /// `params.scopes` in the order sent.
    pub scopes: &'a [&'a str],
    /// `device.signedAt` (epoch ms).
    pub signed_at_ms: u64,
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token: &'a str,
    /// `device.nonce` (the challenge nonce).
    pub nonce: &'a str,
}

impl SignedFields<'_> {
    /// `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce`.
    pub fn v2_payload(&self, device_id: &str) -> String {
        [
            "v2",
            device_id,
            self.client_id,
            self.client_mode,
            self.role,
            &self.scopes.join(","),
            &self.signed_at_ms.to_string(),
            self.token,
            self.nonce,
        ]
        .join("|")
    }

    /// The v2 payload followed by `|platform|deviceFamily` (both normalized),
    /// with the version tag `v3`.
    pub fn v3_payload(&self, device_id: &str, platform: &str, device_family: &str) -> String {
        [
            "v3",
            device_id,
            self.client_id,
            self.client_mode,
            self.role,
            &self.scopes.join(","),
            &self.signed_at_ms.to_string(),
            self.token,
            self.nonce,
            &normalize_metadata(platform),
            &normalize_metadata(device_family),
        ]
        .join("|")
    }
}

/// §3.2 `normalizeDeviceMetadataForAuth`: trimmed, only A–Z folded to lowercase.
pub fn normalize_metadata(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}
