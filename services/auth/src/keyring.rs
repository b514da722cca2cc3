//! Secrets at rest: AES-256-GCM with keys from configuration, rotatable by key id.
//!
//! Services that must keep a secret they will use again (provider API keys,
//! channel bot tokens) store a [`Sealed`] value: the id of the key that sealed it
//! beside the ciphertext. Secrets that only need checking (tokens, API keys) are
//! hashed instead and never come here.
//!
//! Invariants:
//! - every seal uses the active key (the first configured) and a fresh random
//!   96-bit nonce; the stored bytes are `nonce ‖ ciphertext ‖ tag`;
//! - the caller's associated data (for example `tenant/name`) is authenticated,
//!   so a ciphertext copied to another row or tenant does not open;
//! - opening with an unknown key id, another key, other associated data or
//!   altered bytes fails with [`SecretError::Open`], never with garbage;
//! - key ids are derived from the keys (first 8 hex digits of SHA-256), so no
//!   list of ids has to be kept in sync; rotating means putting a new key first
//!   and keeping the old ones until every value was re-sealed;
//! - neither keys nor plaintexts appear in `Debug` output or errors.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// Why a keyring could not be built or a value not opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("no encryption key configured")]
    NoKey,
    #[error("encryption key {position} is not 32 bytes in hex (64 digits) or base64")]
    BadKey { position: usize },
    #[error("sealed value does not open with key {key_id}")]
    Open { key_id: String },
    #[error("sealing failed")]
    Seal,
}

/// A sealed secret as stored: which key sealed it, and `nonce ‖ ciphertext ‖ tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl Sealed {
    /// The sealed bytes as base64, for TEXT columns.
    pub fn bytes_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }

    /// A stored value read back from a TEXT column.
    pub fn from_base64(key_id: &str, text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(text).map_err(|_| SecretError::Open {
            key_id: key_id.to_owned(),
        })?;
        Ok(Self {
            key_id: key_id.to_owned(),
            bytes,
        })
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The configured keys: the first seals, all of them open.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `CLAWGATE_ENCRYPTION_KEY`: one or more 32-byte keys separated by
    /// commas, each as 64 hex digits or base64. The first one seals.
    pub fn from_config(spec: &str) -> Result<Self, SecretError> {
        let keys = spec
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .enumerate()
            .map(|(position, part)| decode_key(part).ok_or(SecretError::BadKey { position }))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(&keys)
    }

    /// A keyring of raw 32-byte keys; the first one seals.
    pub fn from_keys(keys: &[[u8; 32]]) -> Result<Self, SecretError> {
        if keys.is_empty() {
            return Err(SecretError::NoKey);
        }
        let keys = keys
            .iter()
            .map(|key| (key_id(key), Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))))
            .collect();
        Ok(Self { keys })
    }

    /// A new random key, hex encoded (what `clawgate up` stores on first start).
    pub fn generate_key_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// Id of the key new values are sealed with.
    pub fn active_key_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// Seals `plaintext` with the active key, binding `associated` to it.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Result<Sealed, SecretError> {
        let (key_id, cipher) = self.keys.first().ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: key_id.clone(),
            bytes,
        })
    }

    /// Opens `sealed` with the key it names, checking `associated`.
    pub fn open(&self, sealed: &Sealed, associated: &[u8]) -> Result<Vec<u8>, SecretError> {
        let failed = || SecretError::Open {
            key_id: sealed.key_id.clone(),
        };
        let cipher = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .map(|(_, cipher)| cipher)
            .ok_or_else(failed)?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| failed())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .map_err(|_| failed())
    }

    /// Whether `sealed` was sealed with an older key and should be re-sealed.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.active_key_id()
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        STANDARD.decode(text).ok()?
    };
    bytes.try_into().ok()
}

fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [7; 32];
    const KEY_B: [u8; 32] = [9; 32];

    #[test]
    fn seals_and_opens_with_the_same_key_and_data() {
        let ring = Keyring::from_keys(&[KEY_A]).unwrap();
        let sealed = ring.seal(b"sk-live-123", b"t1/openai").unwrap();
        assert_eq!(sealed.key_id, ring.active_key_id());
        assert!(
            !sealed
                .bytes
                .windows(11)
                .any(|window| window == b"sk-live-123")
        );
        assert_eq!(ring.open(&sealed, b"t1/openai").unwrap(), b"sk-live-123");
        // A second seal of the same value differs (fresh nonce).
        assert_ne!(ring.seal(b"sk-live-123", b"t1/openai").unwrap(), sealed);
    }

    #[test]
    fn other_key_other_data_or_tampering_fail() {
        let ring = Keyring::from_keys(&[KEY_A]).unwrap();
        let sealed = ring.seal(b"secret", b"t1/x").unwrap();
        assert!(ring.open(&sealed, b"t2/x").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert!(ring.open(&tampered, b"t1/x").is_err());
        // Another key that claims the same id still fails.
        let other = Keyring::from_keys(&[KEY_B]).unwrap();
        let relabelled = Sealed {
            key_id: other.active_key_id().to_owned(),
            bytes: sealed.bytes.clone(),
        };
        assert!(other.open(&relabelled, b"t1/x").is_err());
        assert!(other.open(&sealed, b"t1/x").is_err());
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = Keyring::from_keys(&[KEY_A]).unwrap();
        let sealed = old.seal(b"v", b"").unwrap();
        let rotated = Keyring::from_keys(&[KEY_B, KEY_A]).unwrap();
        assert_eq!(rotated.open(&sealed, b"").unwrap(), b"v");
        assert!(rotated.needs_reseal(&sealed));
        let resealed = rotated.seal(b"v", b"").unwrap();
        assert!(!rotated.needs_reseal(&resealed));
    }

    #[test]
    fn parses_hex_and_base64_and_refuses_bad_keys() {
        let hex_key = hex::encode(KEY_A);
        let b64_key = STANDARD.encode(KEY_B);
        let ring = Keyring::from_config(&format!("{hex_key}, {b64_key}")).unwrap();
        assert_eq!(ring.active_key_id(), key_id(&KEY_A));
        assert_eq!(
            Keyring::from_config("short").unwrap_err(),
            SecretError::BadKey { position: 0 }
        );
        assert_eq!(Keyring::from_config(" ").unwrap_err(), SecretError::NoKey);
        let debug = format!("{ring:?}");
        assert!(!debug.contains(&hex_key));
        assert_eq!(Keyring::generate_key_hex().len(), 64);
    }
}
