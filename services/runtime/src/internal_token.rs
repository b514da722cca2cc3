//! Internal call tokens: short-lived EdDSA JWTs that carry a [`Principal`] across
//! a gRPC hop, so no service has to trust the network.
//!
//! This module owns the token format and the keys:
//! - [`KeySet`]: one active signing key plus any number of verification keys,
//!   each named by its `kid` (the first 16 hex digits of the SHA-256 of the raw
//!   public key). It is configured from one secret, `CLAWGATE_SIGNING_KEY`: PEM
//!   blocks of PKCS#8 Ed25519 private keys (`BEGIN PRIVATE KEY`) where the first
//!   signs and every block verifies; later blocks may also be SPKI public keys
//!   (`BEGIN PUBLIC KEY`), which only verify.
//! - [`InternalTokenSigner`] ([`CallSigner`]): signs a token per principal and
//!   reuses it until shortly before it expires.
//! - [`InternalTokenVerifier`] ([`CallVerifier`]): accepts a token only when its
//!   header names a known `kid`, its signature verifies, issuer and audience are
//!   clawgate's, and it has not expired (with a small clock-skew leeway).
//!
//! Rotation without downtime: (1) append the new key as a second block
//! everywhere (it verifies, the old key still signs); (2) move it first (it
//! signs, the old key still verifies tokens in flight); (3) after one token
//! lifetime, remove the old block.
//!
//! Invariants: a token never outlives [`MAX_TOKEN_LIFETIME`]; key material and
//! tokens are never logged, and `Debug` shows only key ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawgate_proto::call_auth::{CallSigner, CallVerifier};
use clawgate_proto::{Principal, ServiceError};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a freshly signed token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// A cached token is replaced once less than this remains of its life.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Clock skew tolerated between processes when checking expiry.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(30);
/// Longest `exp − iat` a verifier accepts, whoever signed the token.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

const ISSUER: &str = "clawgate";
const AUDIENCE: &str = "clawgate-internal";
/// Cached tokens kept before expired ones are dropped (one per live principal).
const CACHE_CAPACITY: usize = 10_000;

/// Why a key set could not be built. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM key block found")]
    Empty,
    #[error("PEM block {index} is malformed")]
    MalformedPem { index: usize },
    #[error("PEM block {index} is not an Ed25519 key in PKCS#8 or SPKI form")]
    NotEd25519 { index: usize },
    #[error("PEM block {index} has unsupported type {label:?}")]
    UnsupportedLabel { index: usize, label: String },
    #[error("the first PEM block must be a private key (it signs)")]
    FirstNotPrivate,
}

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn pkcs8_der(key: &SigningKey) -> Vec<u8> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    der
}

/// The key that signs.
#[derive(Clone)]
struct ActiveKey {
    kid: String,
    encoding: EncodingKey,
    public: VerifyingKey,
}

/// One active signing key and every key whose tokens are still accepted.
#[derive(Clone)]
pub struct KeySet {
    active: ActiveKey,
    /// Verification keys by kid, the active key first.
    verification: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("active_kid", &self.active.kid)
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

/// The `kid` of a public key: first 16 hex digits of SHA-256 of the raw key.
pub fn kid_of(public: &VerifyingKey) -> String {
    let mut kid = hex::encode(Sha256::digest(public.as_bytes()));
    kid.truncate(16);
    kid
}

/// A new random Ed25519 key as one PKCS#8 PEM block (for `clawgate keygen`).
pub fn generate_pem() -> String {
    private_key_pem(&random_signing_key())
}

fn random_signing_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn private_key_pem(key: &SigningKey) -> String {
    let body = STANDARD.encode(pkcs8_der(key));
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

impl KeySet {
    /// A key set whose only key is `signing`.
    pub fn from_signing_key(signing: &SigningKey) -> Self {
        let public = signing.verifying_key();
        let kid = kid_of(&public);
        Self {
            active: ActiveKey {
                kid: kid.clone(),
                encoding: EncodingKey::from_ed_der(&pkcs8_der(signing)),
                public,
            },
            verification: vec![(kid, public)],
        }
    }

    /// A key set with one fresh random key (for `up` and tests; tokens signed
    /// with it verify only in this process).
    pub fn generate() -> Self {
        Self::from_signing_key(&random_signing_key())
    }

    /// Parses the `CLAWGATE_SIGNING_KEY` secret (see the module docs). Literal
    /// `\n` sequences are accepted in place of newlines, for environments that
    /// cannot hold multi-line values.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let text = if text.contains('\n') {
            text.to_owned()
        } else {
            text.replace("\\n", "\n")
        };
        let blocks = pem_blocks(&text)?;
        let mut blocks = blocks.into_iter().enumerate();
        let Some((_, (label, der))) = blocks.next() else {
            return Err(KeyError::Empty);
        };
        if label != "PRIVATE KEY" {
            return Err(KeyError::FirstNotPrivate);
        }
        let signing =
            SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::NotEd25519 { index: 0 })?;
        let mut keys = Self::from_signing_key(&signing);
        for (index, (label, der)) in blocks {
            let public = match label.as_str() {
                "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der)
                    .map(|key| key.verifying_key())
                    .map_err(|_| KeyError::NotEd25519 { index })?,
                "PUBLIC KEY" => VerifyingKey::from_public_key_der(&der)
                    .map_err(|_| KeyError::NotEd25519 { index })?,
                _ => return Err(KeyError::UnsupportedLabel { index, label }),
            };
            keys = keys.with_verification_key(public);
        }
        Ok(keys)
    }

    /// Also accepts tokens signed by `public` (a key being rotated in or out).
    pub fn with_verification_key(mut self, public: VerifyingKey) -> Self {
        let kid = kid_of(&public);
        if !self.verification.iter().any(|(known, _)| *known == kid) {
            self.verification.push((kid, public));
        }
        self
    }

    /// `kid` of the signing key.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// Public key of the signing key.
    pub fn active_public_key(&self) -> VerifyingKey {
        self.active.public
    }

    /// `kid`s of every accepted key, the active one first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verification.iter().map(|(kid, _)| kid.as_str())
    }

    /// A signer using the active key.
    pub fn signer(&self) -> Arc<InternalTokenSigner> {
        Arc::new(InternalTokenSigner::new(self.clone()))
    }

    /// A verifier accepting every key of the set.
    pub fn verifier(&self) -> Arc<InternalTokenVerifier> {
        Arc::new(InternalTokenVerifier::new(
            self.verification.iter().cloned(),
        ))
    }
}

/// `(label, DER)` of every PEM block in `text`.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let index = blocks.len();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        {
            if current.is_some() {
                return Err(KeyError::MalformedPem { index });
            }
            current = Some((label.to_owned(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|rest| rest.strip_suffix("-----"))
        {
            let (begin, body) = current.take().ok_or(KeyError::MalformedPem { index })?;
            if begin != label {
                return Err(KeyError::MalformedPem { index });
            }
            let der = STANDARD
                .decode(body)
                .map_err(|_| KeyError::MalformedPem { index })?;
            blocks.push((begin, der));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        } else {
            return Err(KeyError::MalformedPem { index });
        }
    }
    if current.is_some() {
        return Err(KeyError::MalformedPem {
            index: blocks.len(),
        });
    }
    if blocks.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(blocks)
}

/// The principal as JWT claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct PrincipalClaims {
    tenant_id: String,
    user_id: String,
    role: String,
    scopes: Vec<String>,
    device_id: String,
    connection_id: String,
    dialect: i32,
}

impl From<&Principal> for PrincipalClaims {
    fn from(p: &Principal) -> Self {
        Self {
            tenant_id: p.tenant_id.clone(),
            user_id: p.user_id.clone(),
            role: p.role.clone(),
            scopes: p.scopes.clone(),
            device_id: p.device_id.clone(),
            connection_id: p.connection_id.clone(),
            dialect: p.dialect,
        }
    }
}

impl From<PrincipalClaims> for Principal {
    fn from(c: PrincipalClaims) -> Self {
        Self {
            tenant_id: c.tenant_id,
            user_id: c.user_id,
            role: c.role,
            scopes: c.scopes,
            device_id: c.device_id,
            connection_id: c.connection_id,
            dialect: c.dialect,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
    #[serde(flatten)]
    principal: PrincipalClaims,
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct CachedToken {
    token: String,
    /// Unix seconds after which the token is re-signed.
    refresh_at: u64,
}

/// Signs call tokens with the active key of a [`KeySet`], one cached token per
/// principal.
pub struct InternalTokenSigner {
    keys: KeySet,
    ttl: Duration,
    cache: Mutex<HashMap<PrincipalClaims, CachedToken>>,
}

impl std::fmt::Debug for InternalTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTokenSigner")
            .field("kid", &self.keys.active.kid)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl InternalTokenSigner {
    pub fn new(keys: KeySet) -> Self {
        Self {
            keys,
            ttl: TOKEN_TTL,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh token for `principal` as if issued at `issued_at`, bypassing the
    /// cache (tests use a past instant to make an expired token).
    pub fn issue(
        &self,
        principal: &Principal,
        issued_at: SystemTime,
    ) -> Result<String, ServiceError> {
        let iat = unix_secs(issued_at);
        self.encode(PrincipalClaims::from(principal), iat)
    }

    fn encode(&self, principal: PrincipalClaims, iat: u64) -> Result<String, ServiceError> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            principal,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.active.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.keys.active.encoding)
            .map_err(|err| ServiceError::internal(format!("cannot sign a call token: {err}")))
    }
}

impl CallSigner for InternalTokenSigner {
    fn sign(&self, principal: &Principal) -> Result<String, ServiceError> {
        let key = PrincipalClaims::from(principal);
        let now = unix_secs(SystemTime::now());
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(cached) = cache.get(&key)
            && now < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let token = self.encode(key.clone(), now)?;
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, cached| now < cached.refresh_at);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        let refresh_at = now + self.ttl.saturating_sub(REFRESH_MARGIN).as_secs();
        cache.insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at,
            },
        );
        Ok(token)
    }
}

/// Checks call tokens against a set of public keys by `kid`.
pub struct InternalTokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for InternalTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl InternalTokenVerifier {
    /// Accepts tokens signed by any of `keys` (kid → public key).
    pub fn new(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        let keys = keys
            .into_iter()
            .map(|(kid, public)| (kid, DecodingKey::from_ed_der(public.as_bytes())))
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = CLOCK_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        Self { keys, validation }
    }
}

fn rejected(message: &str, reason: impl std::fmt::Display) -> ServiceError {
    tracing::debug!(%reason, "call token rejected");
    ServiceError::unauthorized(message)
}

impl CallVerifier for InternalTokenVerifier {
    fn verify(&self, token: &str) -> Result<Principal, ServiceError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| rejected("invalid call token", err))?;
        if header.alg != Algorithm::EdDSA {
            return Err(rejected("invalid call token", "algorithm is not EdDSA"));
        }
        let kid = header.kid.unwrap_or_default();
        let Some(key) = self.keys.get(&kid) else {
            return Err(rejected(
                "call token signed by an unknown key",
                "unknown kid",
            ));
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => rejected("expired call token", err),
                _ => rejected("invalid call token", err),
            })?
            .claims;
        if claims.exp.saturating_sub(claims.iat) > MAX_TOKEN_LIFETIME.as_secs() {
            return Err(rejected("invalid call token", "lifetime too long"));
        }
        Ok(claims.principal.into())
    }
}

#[cfg(test)]
mod tests;
