//! Minting and hashing of the secrets the auth service hands out: device tokens,
//! API keys and goclaw pairing codes.
//!
//! Invariants: secrets come from the thread-local CSPRNG; only their SHA-256
//! digest (lowercase hex) is ever stored; digests are compared in constant time;
//! [`Secret`] never shows its value in `Debug`.

use base64::Engine as _;
use rand::{Rng as _, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "clawgate_";
/// Characters of a goclaw pairing code (no 0/O, 1/I).
pub const PAIRING_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of a goclaw pairing code.
pub const PAIRING_CODE_LEN: usize = 8;
/// How many characters of an API key are kept for display.
const API_KEY_DISPLAY_LEN: usize = API_KEY_PREFIX.len() + 8;

/// A freshly minted secret, shown to its owner once. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    /// The digest that is stored in its place.
    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 of `secret`, lowercase hex.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn matches_hash(presented: &str, stored_hash: &str) -> bool {
    !stored_hash.is_empty() && bool::from(hash(presented).as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// A device token: 32 random bytes, base64url without padding (43 characters).
pub fn device_token() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// An API key: `clawgate_` and 32 lowercase hex characters (16 random bytes).
pub fn api_key() -> Secret {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    Secret(format!("{API_KEY_PREFIX}{}", hex::encode(bytes)))
}

/// What of an API key may be shown again: its first characters.
pub fn api_key_display_prefix(key: &Secret) -> String {
    key.expose().chars().take(API_KEY_DISPLAY_LEN).collect()
}

/// A goclaw pairing code: 8 characters from [`PAIRING_CODE_ALPHABET`].
pub fn pairing_code() -> String {
    let mut rng = rand::rng();
    (0..PAIRING_CODE_LEN)
        .map(|_| {
            char::from(PAIRING_CODE_ALPHABET[rng.random_range(0..PAIRING_CODE_ALPHABET.len())])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let token = device_token();
        assert_eq!(token.expose().len(), 43);
        assert!(!format!("{token:?}").contains(token.expose()));
        let key = api_key();
        assert!(key.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(key.expose().len(), API_KEY_PREFIX.len() + 32);
        assert_eq!(api_key_display_prefix(&key).len(), 17);
        for _ in 0..100 {
            let code = pairing_code();
            assert_eq!(code.len(), PAIRING_CODE_LEN);
            assert!(code.bytes().all(|c| PAIRING_CODE_ALPHABET.contains(&c)));
        }
    }

    #[test]
    fn hashes_match_only_their_secret() {
        let token = device_token();
        let stored = token.hash();
        assert!(matches_hash(token.expose(), &stored));
        assert!(!matches_hash("other", &stored));
        assert!(!matches_hash("", ""));
    }
}
