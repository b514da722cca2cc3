//! OpenClaw device identity proof: checks that a connecting device holds the
//! Ed25519 key it claims and signed this connection's challenge.
//!
//! This module owns the exact wire rules of the OpenClaw protocol (v3, late
//! 2026.5.x behaviour) and nothing else: no storage, no pairing, no tokens.
//!
//! Invariants, in the order [`verify`] checks them (each failure is a distinct
//! [`ProofError`], so a client sees the same `details.code` / `details.reason`
//! as from the reference server):
//! 1. `device.id` is the lowercase hex SHA-256 of the raw 32-byte public key
//!    (a key that cannot be decoded derives no id, so it fails here);
//! 2. `|now − signedAt| ≤ 120 000 ms`;
//! 3. the nonce is present and equals this connection's challenge nonce;
//! 4. the signature verifies over the `v3|…` payload, else over the `v2|…`
//!    payload (the nonce-less `v1` payload is never accepted);
//! 5. the public key canonicalizes to raw base64url without padding.
//!
//! The signed payload joins its fields with `|` without escaping. Scopes are
//! joined with `,` in the order the client sent them. In `v3`, platform and
//! device family are trimmed and ASCII-lowercased (only `A`–`Z` folded).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use clawgate_proto::ServiceError;
use clawgate_proto::auth::{ClientInfo, DeviceProof};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Largest accepted distance between the device's `signedAt` and our clock.
pub const SIGNATURE_SKEW_MS: i64 = 120_000;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// base64url, padding optional (the wire form has none).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64, padding optional (accepted for signatures and PEM bodies).
const BASE64STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything a device proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct DeviceProofInput<'a> {
    pub device: &'a DeviceProof,
    pub client: &'a ClientInfo,
    /// The effective role (`params.role`, or `"operator"` when omitted).
    pub role: &'a str,
    /// `params.scopes` as sent, in order (before any clearing).
    pub scopes: &'a [String],
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token_for_signature: &'a str,
    /// The nonce this connection was challenged with.
    pub challenge_nonce: &'a str,
    /// Current time, epoch milliseconds.
    pub now_ms: i64,
}

/// Which payload the device signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    V3,
    V2,
}

/// A device whose proof verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    pub device_id: String,
    /// Canonical form: raw 32 bytes, base64url without padding.
    pub public_key_b64url: String,
    /// `client.platform`, trimmed and ASCII-lowercased.
    pub platform: String,
    /// `client.deviceFamily`, trimmed and ASCII-lowercased.
    pub device_family: String,
    pub payload_version: PayloadVersion,
}

/// Why a device proof was rejected; one variant per failure of the reference server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The id is not the hash of the key, or the key cannot be decoded.
    #[error("device identity mismatch")]
    DeviceIdMismatch,
    /// `signedAt` is more than two minutes away from now (either direction).
    #[error("device signature expired")]
    SignatureStale,
    #[error("device nonce required")]
    NonceMissing,
    #[error("device nonce mismatch")]
    NonceMismatch,
    /// Neither the v3 nor the v2 payload verifies (or the key is not a valid
    /// Ed25519 key, or the signature is not 64 bytes of base64).
    #[error("device signature invalid")]
    SignatureInvalid,
    /// The key does not canonicalize to raw base64url.
    #[error("device public key invalid")]
    PublicKeyInvalid,
}

impl ProofError {
    /// `details.code` of the connect error.
    pub fn detail_code(&self) -> &'static str {
        match self {
            Self::DeviceIdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Self::SignatureStale => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Self::NonceMissing => "DEVICE_AUTH_NONCE_REQUIRED",
            Self::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            Self::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
            Self::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        }
    }

    /// `details.reason` of the connect error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DeviceIdMismatch => "device-id-mismatch",
            Self::SignatureStale => "device-signature-stale",
            Self::NonceMissing => "device-nonce-missing",
            Self::NonceMismatch => "device-nonce-mismatch",
            Self::SignatureInvalid => "device-signature",
            Self::PublicKeyInvalid => "device-public-key",
        }
    }
}

impl From<ProofError> for ServiceError {
    fn from(err: ProofError) -> Self {
        ServiceError::invalid(err.to_string()).with_details(json!({
            "code": err.detail_code(),
            "reason": err.reason(),
        }))
    }
}

/// The fields of a signed payload, as the client sent them.
#[derive(Debug, Clone, Copy)]
pub struct PayloadFields<'a> {
    pub device_id: &'a str,
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [String],
    pub signed_at_ms: i64,
    pub token: &'a str,
    pub nonce: &'a str,
    /// Raw `client.platform`; [`build_payload_v3`] normalizes it.
    pub platform: &'a str,
    /// Raw `client.deviceFamily`; [`build_payload_v3`] normalizes it.
    pub device_family: &'a str,
}

impl<'a> PayloadFields<'a> {
    /// The payload fields of a connect attempt.
    pub fn of(input: &DeviceProofInput<'a>) -> Self {
        Self {
            device_id: &input.device.id,
            client_id: &input.client.id,
            client_mode: &input.client.mode,
            role: input.role,
            scopes: input.scopes,
            signed_at_ms: input.device.signed_at_ms,
            token: input.token_for_signature,
            nonce: &input.device.nonce,
            platform: &input.client.platform,
            device_family: &input.client.device_family,
        }
    }
}

/// `v3|deviceId|client.id|client.mode|role|scopes|signedAtMs|token|nonce|platform|deviceFamily`.
pub fn build_payload_v3(fields: &PayloadFields<'_>) -> String {
    format!(
        "{}|{}|{}",
        payload_body("v3", fields),
        normalize_metadata(fields.platform),
        normalize_metadata(fields.device_family),
    )
}

/// `v2|deviceId|client.id|client.mode|role|scopes|signedAtMs|token|nonce`.
pub fn build_payload_v2(fields: &PayloadFields<'_>) -> String {
    payload_body("v2", fields)
}

fn payload_body(version: &str, f: &PayloadFields<'_>) -> String {
    format!(
        "{version}|{}|{}|{}|{}|{}|{}|{}|{}",
        f.device_id,
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.signed_at_ms,
        f.token,
        f.nonce,
    )
}

/// Trim, then fold only ASCII `A`–`Z` to lowercase.
pub fn normalize_metadata(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

/// Lowercase hex SHA-256 of a raw public key: the device id.
pub fn device_id_of(public_key_raw: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key_raw))
}

/// A decoded `device.publicKey`: the bytes the id is derived from, and the raw
/// Ed25519 key when the bytes are one.
struct DecodedKey {
    id_bytes: Vec<u8>,
    raw: Option<[u8; 32]>,
}

/// Decodes raw base64url, or a PEM SPKI (detected by `BEGIN`). `None` when the
/// text is neither, so no id can be derived from it.
fn decode_public_key(text: &str) -> Option<DecodedKey> {
    let bytes = if text.contains("BEGIN") {
        let der = pem_body(text)?;
        match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) => raw.to_vec(),
            // A non-Ed25519 key: the id covers the whole SPKI, and no signature
            // of ours can verify with it.
            None => {
                return Some(DecodedKey {
                    id_bytes: der,
                    raw: None,
                });
            }
        }
    } else {
        BASE64URL.decode(text.trim()).ok()?
    };
    let raw = <[u8; 32]>::try_from(bytes.as_slice()).ok();
    Some(DecodedKey {
        id_bytes: bytes,
        raw,
    })
}

/// The DER inside the first PEM block of `text`.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return None;
    }
    BASE64STD.decode(body).ok()
}

/// Decodes a signature sent as base64url (no padding) or standard base64.
fn decode_signature(text: &str) -> Option<Signature> {
    let text = text.trim();
    let bytes = BASE64URL
        .decode(text)
        .or_else(|_| BASE64STD.decode(text))
        .ok()?;
    let bytes = <[u8; 64]>::try_from(bytes.as_slice()).ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// Checks a device proof in the reference order; see the module docs.
pub fn verify(input: &DeviceProofInput<'_>) -> Result<VerifiedDevice, ProofError> {
    let device = input.device;

    let key = decode_public_key(&device.public_key).ok_or(ProofError::DeviceIdMismatch)?;
    if hex::encode(Sha256::digest(&key.id_bytes)) != device.id {
        return Err(ProofError::DeviceIdMismatch);
    }

    let skew = i128::from(input.now_ms) - i128::from(device.signed_at_ms);
    if skew.abs() > i128::from(SIGNATURE_SKEW_MS) {
        return Err(ProofError::SignatureStale);
    }

    if device.nonce.trim().is_empty() {
        return Err(ProofError::NonceMissing);
    }
    if device.nonce != input.challenge_nonce {
        return Err(ProofError::NonceMismatch);
    }

    let verifying_key = key
        .raw
        .and_then(|raw| VerifyingKey::from_bytes(&raw).ok())
        .ok_or(ProofError::SignatureInvalid)?;
    let signature = decode_signature(&device.signature).ok_or(ProofError::SignatureInvalid)?;
    let fields = PayloadFields::of(input);
    let payload_version = if verifying_key
        .verify_strict(build_payload_v3(&fields).as_bytes(), &signature)
        .is_ok()
    {
        PayloadVersion::V3
    } else if verifying_key
        .verify_strict(build_payload_v2(&fields).as_bytes(), &signature)
        .is_ok()
    {
        PayloadVersion::V2
    } else {
        return Err(ProofError::SignatureInvalid);
    };

    let raw = key.raw.ok_or(ProofError::PublicKeyInvalid)?;
    Ok(VerifiedDevice {
        device_id: device_id_of(&raw),
        public_key_b64url: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
        platform: normalize_metadata(&input.client.platform),
        device_family: normalize_metadata(&input.client.device_family),
        payload_version,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    const SEED: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
    const PUBLIC_KEY: &str = "ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ";
    const DEVICE_ID: &str = "65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8";
    const NONCE: &str = "2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";
    const SIGNED_AT: i64 = 1_737_264_000_000;
    const V3_PAYLOAD: &str = "v3|65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8|cli|cli|operator|operator.read,operator.write|1737264000000|secret-token|2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f|linux|";
    const V3_SIG: &str =
        "_-totKKzVBUrW28AaaPL-vQdpsxBTnMbaw7PtLkYoUNTuv-AAPMFEGfGt5C9maz9DWnE9mB6AWq7FElw2vdaDw";
    const V2_PAYLOAD: &str = "v2|65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8|cli|cli|operator|operator.read,operator.write|1737264000000|secret-token|2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";
    const V2_SIG: &str =
        "zTwys2HDac6mSTcnfA5PJX-V1Cz0MjeDtWnc7rstqaXkpD5UVOgLLU-G4ctZV3XekUpeQFzhBs5UwApLEcAdBw";

    fn b64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn vector_key() -> SigningKey {
        let seed: [u8; 32] = hex::decode(SEED).unwrap().try_into().unwrap();
        SigningKey::from_bytes(&seed)
    }

    /// A connect attempt of the test vector; tests mutate it, then sign.
    struct Attempt {
        key: SigningKey,
        device: DeviceProof,
        client: ClientInfo,
        role: String,
        scopes: Vec<String>,
        token: String,
        challenge: String,
        now_ms: i64,
    }

    impl Attempt {
        fn vector() -> Self {
            Self {
                key: vector_key(),
                device: DeviceProof {
                    id: DEVICE_ID.into(),
                    public_key: PUBLIC_KEY.into(),
                    signature: V3_SIG.into(),
                    signed_at_ms: SIGNED_AT,
                    nonce: NONCE.into(),
                },
                client: ClientInfo {
                    id: "cli".into(),
                    mode: "cli".into(),
                    platform: "linux".into(),
                    ..Default::default()
                },
                role: "operator".into(),
                scopes: vec!["operator.read".into(), "operator.write".into()],
                token: "secret-token".into(),
                challenge: NONCE.into(),
                now_ms: SIGNED_AT + 1_000,
            }
        }

        fn input(&self) -> DeviceProofInput<'_> {
            DeviceProofInput {
                device: &self.device,
                client: &self.client,
                role: &self.role,
                scopes: &self.scopes,
                token_for_signature: &self.token,
                challenge_nonce: &self.challenge,
                now_ms: self.now_ms,
            }
        }

        fn sign(&mut self, payload: String) -> &mut Self {
            self.device.signature = b64url(&self.key.sign(payload.as_bytes()).to_bytes());
            self
        }

        fn sign_v3(&mut self) -> &mut Self {
            let payload = build_payload_v3(&PayloadFields::of(&self.input()));
            self.sign(payload)
        }

        fn verify(&self) -> Result<VerifiedDevice, ProofError> {
            verify(&self.input())
        }
    }

    #[test]
    fn reference_test_vector() {
        let key = vector_key();
        let public = key.verifying_key().to_bytes();
        assert_eq!(b64url(&public), PUBLIC_KEY);
        assert_eq!(device_id_of(&public), DEVICE_ID);

        let attempt = Attempt::vector();
        let fields = PayloadFields::of(&attempt.input());
        assert_eq!(build_payload_v3(&fields), V3_PAYLOAD);
        assert_eq!(build_payload_v2(&fields), V2_PAYLOAD);
        assert_eq!(b64url(&key.sign(V3_PAYLOAD.as_bytes()).to_bytes()), V3_SIG);
        assert_eq!(b64url(&key.sign(V2_PAYLOAD.as_bytes()).to_bytes()), V2_SIG);

        let verified = attempt.verify().unwrap();
        assert_eq!(
            verified,
            VerifiedDevice {
                device_id: DEVICE_ID.into(),
                public_key_b64url: PUBLIC_KEY.into(),
                platform: "linux".into(),
                device_family: String::new(),
                payload_version: PayloadVersion::V3,
            }
        );

        let mut v2 = Attempt::vector();
        v2.device.signature = V2_SIG.into();
        assert_eq!(v2.verify().unwrap().payload_version, PayloadVersion::V2);
    }

    #[test]
    fn standard_base64_signature_and_pem_key_are_accepted() {
        let mut attempt = Attempt::vector();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(V3_SIG.replace('-', "+").replace('_', "/") + "==")
            .unwrap();
        attempt.device.signature = base64::engine::general_purpose::STANDARD.encode(sig);
        assert!(attempt.device.signature.ends_with("=="));
        assert_eq!(
            attempt.verify().unwrap().payload_version,
            PayloadVersion::V3
        );

        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&vector_key().verifying_key().to_bytes());
        attempt.device.public_key = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(spki)
        );
        // The canonical form is raw base64url, whatever was sent.
        assert_eq!(attempt.verify().unwrap().public_key_b64url, PUBLIC_KEY);
    }

    #[test]
    fn device_id_must_match_the_key() {
        let mut attempt = Attempt::vector();
        attempt.device.id = DEVICE_ID.to_uppercase();
        assert_eq!(attempt.verify(), Err(ProofError::DeviceIdMismatch));

        let other = SigningKey::from_bytes(&[7; 32]);
        attempt.device.id = device_id_of(&other.verifying_key().to_bytes());
        assert_eq!(attempt.verify(), Err(ProofError::DeviceIdMismatch));
    }

    #[test]
    fn stale_signatures_are_rejected_both_ways() {
        let mut attempt = Attempt::vector();
        for now in [SIGNED_AT + SIGNATURE_SKEW_MS, SIGNED_AT - SIGNATURE_SKEW_MS] {
            attempt.now_ms = now;
            assert!(attempt.verify().is_ok(), "at the edge of the window");
        }
        for now in [
            SIGNED_AT + SIGNATURE_SKEW_MS + 1,
            SIGNED_AT - SIGNATURE_SKEW_MS - 1,
        ] {
            attempt.now_ms = now;
            assert_eq!(attempt.verify(), Err(ProofError::SignatureStale));
        }
        attempt.now_ms = i64::MAX;
        attempt.device.signed_at_ms = i64::MIN;
        assert_eq!(attempt.verify(), Err(ProofError::SignatureStale));
    }

    #[test]
    fn nonce_must_be_present_and_be_the_challenge() {
        let mut attempt = Attempt::vector();
        attempt.device.nonce = String::new();
        attempt.sign_v3();
        assert_eq!(attempt.verify(), Err(ProofError::NonceMissing));

        let mut attempt = Attempt::vector();
        attempt.device.nonce = "another-nonce".into();
        attempt.sign_v3();
        assert_eq!(attempt.verify(), Err(ProofError::NonceMismatch));
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let mut attempt = Attempt::vector();
        attempt.token = "another-token".into();
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));

        let mut attempt = Attempt::vector();
        attempt.device.signature = "not base64!".into();
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));
        attempt.device.signature = b64url(&[0; 63]);
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));

        // Signed by a different key than the one presented.
        let mut attempt = Attempt::vector();
        attempt.key = SigningKey::from_bytes(&[9; 32]);
        attempt.sign_v3();
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));
    }

    #[test]
    fn v1_payload_is_rejected() {
        let mut attempt = Attempt::vector();
        let v1 = format!(
            "v1|{DEVICE_ID}|cli|cli|operator|operator.read,operator.write|{SIGNED_AT}|secret-token"
        );
        attempt.sign(v1);
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));
    }

    #[test]
    fn malformed_and_wrong_length_keys_are_rejected() {
        // Undecodable: no id can be derived, so it cannot match.
        let mut attempt = Attempt::vector();
        attempt.device.public_key = "@@not a key@@".into();
        assert_eq!(attempt.verify(), Err(ProofError::DeviceIdMismatch));
        attempt.device.public_key = "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----".into();
        assert_eq!(attempt.verify(), Err(ProofError::DeviceIdMismatch));

        // 31 bytes with a self-consistent id: rejected at the signature check.
        let short = &vector_key().verifying_key().to_bytes()[..31];
        let mut attempt = Attempt::vector();
        attempt.device.public_key = b64url(short);
        attempt.device.id = hex::encode(Sha256::digest(short));
        attempt.sign_v3();
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));

        // A key that is not Ed25519 (SPKI of another algorithm).
        let der = [0x30, 0x03, 0x02, 0x01, 0x00];
        let mut attempt = Attempt::vector();
        attempt.device.public_key = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        attempt.device.id = hex::encode(Sha256::digest(der));
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));
    }

    #[test]
    fn scope_order_matters() {
        let mut attempt = Attempt::vector();
        attempt.scopes.reverse();
        assert_eq!(attempt.verify(), Err(ProofError::SignatureInvalid));
        attempt.sign_v3();
        assert!(
            build_payload_v3(&PayloadFields::of(&attempt.input()))
                .contains("|operator.write,operator.read|")
        );
        assert_eq!(
            attempt.verify().unwrap().payload_version,
            PayloadVersion::V3
        );
    }

    #[test]
    fn platform_and_family_are_trimmed_and_ascii_folded() {
        let mut attempt = Attempt::vector();
        attempt.client.platform = "  LiNuX ".into();
        attempt.client.device_family = "\tÉcran MAC\n".into();
        let payload = build_payload_v3(&PayloadFields::of(&attempt.input()));
        assert!(payload.ends_with("|linux|Écran mac"), "{payload}");
        // The vector's signature was made over "linux": still valid after folding.
        attempt.client.device_family = String::new();
        assert_eq!(attempt.verify().unwrap().platform, "linux");

        attempt.client.device_family = "\tÉcran MAC\n".into();
        attempt.sign_v3();
        assert_eq!(attempt.verify().unwrap().device_family, "Écran mac");
    }

    #[test]
    fn errors_map_to_the_wire() {
        let err = ServiceError::from(ProofError::NonceMismatch);
        assert_eq!(err.code, clawgate_proto::ErrorCode::InvalidRequest);
        assert_eq!(err.message, "device nonce mismatch");
        assert_eq!(
            err.details,
            Some(json!({"code": "DEVICE_AUTH_NONCE_MISMATCH", "reason": "device-nonce-mismatch"}))
        );
        assert_eq!(
            ProofError::SignatureStale.reason(),
            "device-signature-stale"
        );
        assert_eq!(
            ProofError::PublicKeyInvalid.detail_code(),
            "DEVICE_AUTH_PUBLIC_KEY_INVALID"
        );
    }
}
