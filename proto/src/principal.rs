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

/// The role of the principal a runner calls the auth service with to read a
/// tenant's provider key (`RevealSecret`). No client credential carries it:
/// connection roles are `operator`, `node` and goclaw's fixed set.
pub const ROLE_RUNNER: &str = "runner-service";

/// Whether the scopes `held` grant `scope`: the one place of the implication
/// rules `operator.admin ⇒ every scope` and `operator.write ⇒ operator.read`.
pub fn scopes_grant(held: &[String], scope: &str) -> bool {
    held.iter().any(|held| {
        held == scope || held == SCOPE_ADMIN || (scope == SCOPE_READ && held == SCOPE_WRITE)
    })
}

/// `scopes` trimmed, deduplicated and sorted, with the implications made
/// explicit (`admin ⇒ read + write`, `write ⇒ read`): the form of OpenClaw
/// `hello-ok.auth.scopes`.
pub fn normalize_scopes(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = scopes
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if out.iter().any(|s| s == SCOPE_ADMIN) {
        out.push(SCOPE_READ.to_owned());
        out.push(SCOPE_WRITE.to_owned());
    }
    if out.iter().any(|s| s == SCOPE_WRITE) {
        out.push(SCOPE_READ.to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// How much of its tenant a principal may see and change.
///
/// - `Operator`: its own sessions, transcripts, runs, cron jobs, devices, keys;
/// - `Admin`: everything of its tenant (goclaw `admin`, or the OpenClaw
///   `operator.admin` scope);
/// - `Owner`: everything of any tenant (goclaw `owner`): it picks the tenant at
///   connect, sees all of that tenant, and manages the tenants themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Operator,
    Admin,
    Owner,
}

impl Principal {
    /// The principal's [`Access`] level.
    pub fn access(&self) -> Access {
        if self.role == "owner" {
            Access::Owner
        } else if self.role == "admin" || self.scopes.iter().any(|s| s == SCOPE_ADMIN) {
            Access::Admin
        } else {
            Access::Operator
        }
    }

    /// Whether the principal sees every user of its tenant (admins and owners).
    pub fn sees_tenant(&self) -> bool {
        self.access() >= Access::Admin
    }

    /// Whether the principal may see and decide every exec approval of its
    /// tenant (admins, owners, `operator.approvals`); anyone else only those
    /// of its own user's runs, where its dialect lets it.
    pub fn approves_tenant(&self) -> bool {
        self.sees_tenant() || self.has_scope(SCOPE_APPROVALS)
    }

    /// The user whose rows the principal may see: `None` for every user of
    /// the tenant (admins and owners), its own user otherwise.
    pub fn user_filter(&self) -> Option<&str> {
        if self.sees_tenant() {
            None
        } else {
            Some(&self.user_id)
        }
    }

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
        scopes_grant(&self.scopes, scope)
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
    fn access_levels() {
        let mut p = with(&[SCOPE_WRITE]);
        p.role = "operator".into();
        assert_eq!(p.access(), Access::Operator);
        assert_eq!(p.user_filter(), Some("u"));
        assert_eq!(with(&[SCOPE_ADMIN]).access(), Access::Admin);
        p.role = "admin".into();
        assert_eq!(p.access(), Access::Admin);
        assert_eq!(p.user_filter(), None);
        p.role = "owner".into();
        assert_eq!(p.access(), Access::Owner);
        p.role = "viewer".into();
        assert_eq!(p.access(), Access::Operator);
    }

    #[test]
    fn require_needs_tenant_and_user() {
        assert!(Principal::default().require().is_err());
        assert!(with(&[]).require().is_ok());
    }
}
