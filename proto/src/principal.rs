//! The verified principal and its scope rules.
//!
//! A [`Principal`] is produced by the auth service only. Services trust it because
//! it arrives either in-process from the edge or in a signed call token on a gRPC
//! hop (see [`crate::call_auth`]). Tenant and user are never taken from a request body.

use crate::ServiceError;
pub use crate::pb::common::v1::{Dialect, Principal};

pub const SCOPE_READ: &str = "operator.read";
pub const SCOPE_WRITE: &str = "operator.write";
pub const SCOPE_ADMIN: &str = "operator.admin";
pub const SCOPE_APPROVALS: &str = "operator.approvals";
pub const SCOPE_PAIRING: &str = "operator.pairing";

impl Principal {
    /// Fails unless the principal names a tenant and a user.
    pub fn require(&self) -> Result<(), ServiceError> {
        if self.tenant_id.is_empty() || self.user_id.is_empty() {
            return Err(ServiceError::unauthorized("missing principal"));
        }
        Ok(())
    }

    /// Whether the principal holds `scope`, applying the implications
    /// `admin ⇒ everything` and `write ⇒ read`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| {
            held == scope || held == SCOPE_ADMIN || (scope == SCOPE_READ && held == SCOPE_WRITE)
        })
    }

    /// Fails with `Forbidden` unless the principal holds `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), ServiceError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!("missing scope: {scope}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(scopes: &[&str]) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn scope_implications() {
        assert!(with(&[SCOPE_WRITE]).has_scope(SCOPE_READ));
        assert!(!with(&[SCOPE_READ]).has_scope(SCOPE_WRITE));
        assert!(with(&[SCOPE_ADMIN]).has_scope(SCOPE_PAIRING));
        assert!(!with(&[SCOPE_WRITE]).has_scope(SCOPE_PAIRING));
        assert!(with(&[]).require_scope(SCOPE_READ).is_err());
    }

    #[test]
    fn require_needs_tenant_and_user() {
        assert!(Principal::default().require().is_err());
        assert!(with(&[]).require().is_ok());
    }
}
