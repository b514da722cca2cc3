//! The client side of OpenClaw device identity, written from the protocol
//! reference (§3) and nothing else: Ed25519 key generation, the wire public key,
//! the device id, the signed `v3` / `v2` (and the retired `v1`) payload strings,
//! signing, full `connect` params, and a device-token store shaped like the
//! reference client's `device-auth.json`.
//!
//! It deliberately shares no code with clawgate's server: a bug in the server's
//! payload building or verification cannot be mirrored here. The unit tests pin it
//! to the reference test vector byte for byte.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ws::WsClient;

/// The protocol version this client speaks.
pub const PROTOCOL: u64 = 3;

/// An Ed25519 device identity, as the reference client keeps in `device.json`.
#[derive(Clone)]
pub struct DeviceIdentity {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self::from_seed(rand::random::<[u8; 32]>())
    }

    /// The identity of an RFC 8032 private key (32-byte seed).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The raw 32-byte public key.
    pub fn public_key_raw(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// `device.publicKey`: base64url without padding of the raw public key.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_raw())
    }

    /// `device.id`: lowercase hex SHA-256 of the raw public key.
    pub fn device_id(&self) -> String {
        hex_lower(&Sha256::digest(self.public_key_raw()))
    }

    /// Ed25519 signature over the UTF-8 bytes of `payload`, base64url without padding.
    pub fn sign(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }

    /// The public key as a PEM SPKI document (`publicKeyPem` of `device.json`).
    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .context("cannot encode the public key as PEM")
    }

    /// The private key as a PEM PKCS#8 document (`privateKeyPem` of `device.json`).
    pub fn private_key_pem(&self) -> anyhow::Result<String> {
        Ok(self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .context("cannot encode the private key as PEM")?
            .to_string())
    }

    /// An identity read back from [`DeviceIdentity::private_key_pem`].
    pub fn from_private_key_pem(pem: &str) -> anyhow::Result<Self> {
        Ok(Self {
            key: SigningKey::from_pkcs8_pem(pem).context("invalid PKCS#8 PEM")?,
        })
    }
}

/// Lowercase hex of `bytes`.
fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `platform` / `deviceFamily` as they enter the v3 payload: trimmed, and only
/// ASCII `A`–`Z` folded to lowercase; missing ⇒ empty.
pub fn normalize_metadata(value: Option<&str>) -> String {
    value
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Which signed string a connect carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    /// Retired in late v3 (no nonce); a conforming server must refuse it.
    V1,
    V2,
    V3,
}

/// Every field the signed payload strings are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedFields {
    pub device_id: String,
    pub client_id: String,
    pub client_mode: String,
    /// The effective role (`operator` when the connect omits it).
    pub role: String,
    /// In the order sent; joined with `,` unsorted.
    pub scopes: Vec<String>,
    pub signed_at_ms: u64,
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token: String,
    pub nonce: String,
    /// Raw `client.platform`; normalized when the payload is built.
    pub platform: Option<String>,
    /// Raw `client.deviceFamily`; normalized when the payload is built.
    pub device_family: Option<String>,
}

impl SignedFields {
    /// The payload string of `version`.
    pub fn payload(&self, version: PayloadVersion) -> String {
        let scopes = self.scopes.join(",");
        let signed_at = self.signed_at_ms.to_string();
        let mut parts: Vec<&str> = vec![
            match version {
                PayloadVersion::V1 => "v1",
                PayloadVersion::V2 => "v2",
                PayloadVersion::V3 => "v3",
            },
            &self.device_id,
            &self.client_id,
            &self.client_mode,
            &self.role,
            &scopes,
            &signed_at,
            &self.token,
        ];
        if version == PayloadVersion::V1 {
            return parts.join("|");
        }
        parts.push(&self.nonce);
        if version == PayloadVersion::V2 {
            return parts.join("|");
        }
        let platform = normalize_metadata(self.platform.as_deref());
        let family = normalize_metadata(self.device_family.as_deref());
        format!("{}|{platform}|{family}", parts.join("|"))
    }
}

/// `params.client` of `connect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInfo {
    pub id: String,
    pub mode: String,
    pub version: String,
    pub platform: String,
    pub device_family: Option<String>,
    pub display_name: Option<String>,
}

impl ClientInfo {
    /// The reference CLI on Linux.
    pub fn cli() -> Self {
        Self {
            id: "cli".into(),
            mode: "cli".into(),
            version: "1.0.0".into(),
            platform: "linux".into(),
            device_family: None,
            display_name: None,
        }
    }

    /// A node host (capability host).
    pub fn node() -> Self {
        Self {
            id: "node-host".into(),
            mode: "node".into(),
            ..Self::cli()
        }
    }

    /// The gateway's own local backend client (`gateway-client` / `backend`).
    pub fn backend() -> Self {
        Self {
            id: "gateway-client".into(),
            mode: "backend".into(),
            ..Self::cli()
        }
    }
}

/// What a `connect` asks for and with which credentials; turns into params with a
/// device proof for a given challenge nonce.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    pub client: ClientInfo,
    pub role: String,
    pub scopes: Vec<String>,
    pub token: Option<String>,
    pub device_token: Option<String>,
    pub min_protocol: u64,
    pub max_protocol: u64,
    pub payload_version: PayloadVersion,
}

impl ConnectSpec {
    /// An operator with `scopes` and no credentials yet.
    pub fn operator(scopes: &[&str]) -> Self {
        Self {
            client: ClientInfo::cli(),
            role: "operator".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            token: None,
            device_token: None,
            min_protocol: PROTOCOL,
            max_protocol: PROTOCOL,
            payload_version: PayloadVersion::V3,
        }
    }

    /// A node-role connection (nodes carry no scopes).
    pub fn node() -> Self {
        Self {
            client: ClientInfo::node(),
            role: "node".into(),
            ..Self::operator(&[])
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn with_device_token(mut self, token: &str) -> Self {
        self.device_token = Some(token.to_owned());
        self
    }

    pub fn with_client(mut self, client: ClientInfo) -> Self {
        self.client = client;
        self
    }

    pub fn with_payload_version(mut self, version: PayloadVersion) -> Self {
        self.payload_version = version;
        self
    }

    pub fn with_protocol(mut self, min: u64, max: u64) -> Self {
        self.min_protocol = min;
        self.max_protocol = max;
        self
    }

    /// The token that enters the signed payload: `token ?? deviceToken ?? ""`.
    pub fn signature_token(&self) -> String {
        self.token
            .clone()
            .or_else(|| self.device_token.clone())
            .unwrap_or_default()
    }

    /// The signed fields of this connect for `identity`, `nonce` and `signed_at_ms`.
    pub fn signed_fields(
        &self,
        identity: &DeviceIdentity,
        nonce: &str,
        signed_at_ms: u64,
    ) -> SignedFields {
        SignedFields {
            device_id: identity.device_id(),
            client_id: self.client.id.clone(),
            client_mode: self.client.mode.clone(),
            role: self.role.clone(),
            scopes: self.scopes.clone(),
            signed_at_ms,
            token: self.signature_token(),
            nonce: nonce.to_owned(),
            platform: Some(self.client.platform.clone()),
            device_family: self.client.device_family.clone(),
        }
    }

    /// `connect` params without a device (shared-secret-only connects).
    pub fn params_without_device(&self) -> Value {
        let mut client = json!({
            "id": self.client.id,
            "version": self.client.version,
            "platform": self.client.platform,
            "mode": self.client.mode,
        });
        if let Some(family) = &self.client.device_family {
            client["deviceFamily"] = json!(family);
        }
        if let Some(name) = &self.client.display_name {
            client["displayName"] = json!(name);
        }
        let mut auth = serde_json::Map::new();
        if let Some(token) = &self.token {
            auth.insert("token".into(), json!(token));
        }
        if let Some(token) = &self.device_token {
            auth.insert("deviceToken".into(), json!(token));
        }
        let mut params = json!({
            "minProtocol": self.min_protocol,
            "maxProtocol": self.max_protocol,
            "client": client,
            "role": self.role,
            "scopes": self.scopes,
        });
        if !auth.is_empty() {
            params["auth"] = Value::Object(auth);
        }
        params
    }

    /// Full `connect` params with a device proof signed now.
    pub fn params(&self, identity: &DeviceIdentity, nonce: &str) -> Value {
        self.params_signed_at(identity, nonce, now_ms())
    }

    /// Full `connect` params with a device proof signed at `signed_at_ms`.
    pub fn params_signed_at(
        &self,
        identity: &DeviceIdentity,
        nonce: &str,
        signed_at_ms: u64,
    ) -> Value {
        let fields = self.signed_fields(identity, nonce, signed_at_ms);
        let signature = identity.sign(&fields.payload(self.payload_version));
        let mut params = self.params_without_device();
        params["device"] = json!({
            "id": fields.device_id,
            "publicKey": identity.public_key(),
            "signature": signature,
            "signedAt": signed_at_ms,
            "nonce": nonce,
        });
        params
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Reads the `connect.challenge` of a fresh socket and returns its nonce.
pub async fn challenge_nonce(ws: &mut WsClient) -> anyhow::Result<String> {
    let challenge = ws.event("connect.challenge").await?;
    let nonce = challenge["payload"]["nonce"]
        .as_str()
        .with_context(|| format!("challenge without nonce: {challenge}"))?;
    ensure!(!nonce.is_empty(), "empty challenge nonce");
    Ok(nonce.to_owned())
}

/// Reads the challenge, sends a signed `connect` and returns the response frame
/// (`ok` or not).
pub async fn connect_device(
    ws: &mut WsClient,
    identity: &DeviceIdentity,
    spec: &ConnectSpec,
) -> anyhow::Result<Value> {
    let nonce = challenge_nonce(ws).await?;
    ws.request("connect", spec.params(identity, &nonce)).await
}

/// One stored device token (`tokens.<role>` of `device-auth.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    pub token: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub updated_at_ms: u64,
}

/// The reference client's device-token store:
/// `{version:1, deviceId, tokens:{<role>:{token, role, scopes, updatedAtMs}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAuthStore {
    pub version: u32,
    pub device_id: String,
    pub tokens: BTreeMap<String, StoredToken>,
}

impl DeviceAuthStore {
    pub fn new(device_id: &str) -> Self {
        Self {
            version: 1,
            device_id: device_id.to_owned(),
            tokens: BTreeMap::new(),
        }
    }

    /// Keeps `hello-ok.auth.deviceToken` for its role; returns whether there was one.
    pub fn remember_hello(&mut self, hello: &Value) -> bool {
        let auth = &hello["auth"];
        let (Some(token), Some(role)) = (auth["deviceToken"].as_str(), auth["role"].as_str())
        else {
            return false;
        };
        let scopes: Vec<String> = auth["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        self.store(role, token, &scopes);
        true
    }

    pub fn store(&mut self, role: &str, token: &str, scopes: &[String]) {
        self.tokens.insert(
            role.to_owned(),
            StoredToken {
                token: token.to_owned(),
                role: role.to_owned(),
                scopes: normalize_scopes(scopes),
                updated_at_ms: now_ms(),
            },
        );
    }

    pub fn load(&self, role: &str) -> Option<&StoredToken> {
        self.tokens.get(role)
    }

    pub fn clear(&mut self, role: &str) {
        self.tokens.remove(role);
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let store: Self = serde_json::from_str(text)?;
        ensure!(store.version == 1, "unknown device-auth version");
        Ok(store)
    }
}

/// Scopes as the store keeps them: trimmed, empty ones dropped, deduplicated, sorted.
pub fn normalize_scopes(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = scopes
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
    const PUBLIC_KEY: &str = "ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ";
    const DEVICE_ID: &str = "65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8";
    const NONCE: &str = "2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";
    const SIGNED_AT: u64 = 1_737_264_000_000;
    const V3_PAYLOAD: &str = "v3|65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8|cli|cli|operator|operator.read,operator.write|1737264000000|secret-token|2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f|linux|";
    const V3_SIG: &str =
        "_-totKKzVBUrW28AaaPL-vQdpsxBTnMbaw7PtLkYoUNTuv-AAPMFEGfGt5C9maz9DWnE9mB6AWq7FElw2vdaDw";
    const V2_PAYLOAD: &str = "v2|65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8|cli|cli|operator|operator.read,operator.write|1737264000000|secret-token|2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";
    const V2_SIG: &str =
        "zTwys2HDac6mSTcnfA5PJX-V1Cz0MjeDtWnc7rstqaXkpD5UVOgLLU-G4ctZV3XekUpeQFzhBs5UwApLEcAdBw";

    fn vector_identity() -> DeviceIdentity {
        let bytes: Vec<u8> = (0..SEED.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&SEED[i..i + 2], 16).unwrap())
            .collect();
        DeviceIdentity::from_seed(bytes.try_into().unwrap())
    }

    fn vector_spec() -> ConnectSpec {
        ConnectSpec::operator(&["operator.read", "operator.write"]).with_token("secret-token")
    }

    #[test]
    fn key_material_matches_the_reference_vector() {
        let identity = vector_identity();
        assert_eq!(identity.public_key(), PUBLIC_KEY);
        assert_eq!(identity.device_id(), DEVICE_ID);
    }

    #[test]
    fn v3_payload_and_signature_match_the_reference_vector() {
        let identity = vector_identity();
        let fields = vector_spec().signed_fields(&identity, NONCE, SIGNED_AT);
        assert_eq!(fields.payload(PayloadVersion::V3), V3_PAYLOAD);
        assert_eq!(identity.sign(V3_PAYLOAD), V3_SIG);
        let params = vector_spec().params_signed_at(&identity, NONCE, SIGNED_AT);
        assert_eq!(
            params["device"],
            json!({"id": DEVICE_ID, "publicKey": PUBLIC_KEY, "signature": V3_SIG,
                   "signedAt": SIGNED_AT, "nonce": NONCE})
        );
        assert_eq!(params["auth"], json!({"token": "secret-token"}));
        assert_eq!(params["minProtocol"], 3);
        assert_eq!(params["role"], "operator");
    }

    #[test]
    fn v2_payload_and_signature_match_the_reference_vector() {
        let identity = vector_identity();
        let spec = vector_spec().with_payload_version(PayloadVersion::V2);
        let fields = spec.signed_fields(&identity, NONCE, SIGNED_AT);
        assert_eq!(fields.payload(PayloadVersion::V2), V2_PAYLOAD);
        assert_eq!(identity.sign(V2_PAYLOAD), V2_SIG);
        let params = spec.params_signed_at(&identity, NONCE, SIGNED_AT);
        assert_eq!(params["device"]["signature"], V2_SIG);
    }

    #[test]
    fn v1_payload_has_no_nonce() {
        let fields = vector_spec().signed_fields(&vector_identity(), NONCE, SIGNED_AT);
        assert_eq!(
            fields.payload(PayloadVersion::V1),
            format!(
                "v1|{DEVICE_ID}|cli|cli|operator|operator.read,operator.write|{SIGNED_AT}|secret-token"
            )
        );
    }

    #[test]
    fn metadata_is_trimmed_and_only_ascii_folded() {
        assert_eq!(normalize_metadata(Some("  MacOS\t")), "macos");
        assert_eq!(normalize_metadata(Some("ÄndroID")), "Ändroid");
        assert_eq!(normalize_metadata(None), "");
        let mut spec = vector_spec();
        spec.client.platform = " Linux ".into();
        spec.client.device_family = Some("Desktop".into());
        let payload = spec
            .signed_fields(&vector_identity(), NONCE, SIGNED_AT)
            .payload(PayloadVersion::V3);
        assert!(
            payload.ends_with(&format!("|{NONCE}|linux|desktop")),
            "{payload}"
        );
    }

    #[test]
    fn scopes_are_signed_in_the_order_sent_and_token_falls_back() {
        let spec = ConnectSpec::operator(&["operator.write", "operator.admin", "operator.write"])
            .with_device_token("dev-tok");
        let fields = spec.signed_fields(&vector_identity(), NONCE, 5);
        assert_eq!(
            fields.scopes.join(","),
            "operator.write,operator.admin,operator.write"
        );
        assert_eq!(fields.token, "dev-tok");
        assert_eq!(ConnectSpec::operator(&[]).signature_token(), "");
        let both = spec.with_token("shared");
        assert_eq!(both.signature_token(), "shared");
        assert_eq!(
            both.params_without_device()["auth"],
            json!({"token": "shared", "deviceToken": "dev-tok"})
        );
    }

    #[test]
    fn generated_identities_are_distinct_and_survive_pem() {
        let a = DeviceIdentity::generate();
        let b = DeviceIdentity::generate();
        assert_ne!(a.device_id(), b.device_id());
        assert_eq!(a.device_id().len(), 64);
        assert_eq!(a.public_key().len(), 43);
        assert_eq!(a.sign("x").len(), 86);
        let back = DeviceIdentity::from_private_key_pem(&a.private_key_pem().unwrap()).unwrap();
        assert_eq!(back.device_id(), a.device_id());
        assert!(a.public_key_pem().unwrap().contains("BEGIN PUBLIC KEY"));
    }

    #[test]
    fn token_store_round_trips_like_device_auth_json() {
        let mut store = DeviceAuthStore::new(DEVICE_ID);
        let hello = json!({"auth": {"role": "operator", "deviceToken": "tok",
            "scopes": ["operator.write", " operator.read", "operator.write"]}});
        assert!(store.remember_hello(&hello));
        assert!(!store.remember_hello(&json!({"auth": {"role": "operator"}})));
        let stored = store.load("operator").unwrap();
        assert_eq!(stored.token, "tok");
        assert_eq!(stored.scopes, vec!["operator.read", "operator.write"]);
        let text = store.to_json().unwrap();
        assert!(text.contains("\"deviceId\"") && text.contains("\"updatedAtMs\""));
        assert_eq!(DeviceAuthStore::from_json(&text).unwrap(), store);
        store.clear("operator");
        assert!(store.load("operator").is_none());
    }
}
