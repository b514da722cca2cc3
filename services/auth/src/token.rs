//! The shared gateway token: a secret compared in constant time and never printed.

use subtle::ConstantTimeEq;

/// A secret token. `Debug` never shows it.
#[derive(Clone)]
pub struct GatewayToken(String);

impl GatewayToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The secret itself, for the one place that must show it (first start of `up`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_never_printed() {
        let token = GatewayToken::new("s3cret");
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!GatewayToken::new("").matches(""));
    }
}
