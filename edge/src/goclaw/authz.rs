//! goclaw authorization (goclaw notes §1.3): whether a method exists for
//! goclaw connections and the caller's role may call it. The role each
//! method needs is declared with the method ([`crate::methods`]).
//!
//! Invariants: roles rank `owner > admin > operator > viewer`; an unknown
//! method is `INVALID_REQUEST "unknown method: X"`; a role too low is
//! `UNAUTHORIZED "<method> requires <role> role"`.

use clawgate_proto::{Principal, ServiceError};

use crate::methods::{self, Method, Role};

/// Whether `role` is at least `admin` (sees pairing events of its tenant).
pub fn is_admin(role: &str) -> bool {
    Role::Admin.allows(role)
}

/// The method `method`, if goclaw offers it and `principal` may call it.
pub fn authorize(principal: &Principal, method: &str) -> Result<&'static Method, ServiceError> {
    let Some((found, role)) = methods::find(method).and_then(|m| Some((m, m.goclaw?))) else {
        return Err(ServiceError::invalid(format!("unknown method: {method}")));
    };
    if !role.allows(&principal.role) {
        return Err(ServiceError::unauthorized(format!(
            "{method} requires {} role",
            role.name()
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_role(role: &str) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: role.into(),
            ..Default::default()
        }
    }

    #[test]
    fn roles_and_unknown_methods() {
        let err = authorize(&with_role("viewer"), "chat.send").unwrap_err();
        assert_eq!(err.message, "chat.send requires operator role");
        assert_eq!(err.code.goclaw_code(), "UNAUTHORIZED");
        assert!(authorize(&with_role("viewer"), "chat.history").is_ok());
        assert!(authorize(&with_role("admin"), "chat.send").is_ok());
        for method in ["tenants.list", "tenants.get", "tenants.users.list"] {
            assert!(authorize(&with_role("viewer"), method).is_ok(), "{method}");
        }
        for method in [
            "tenants.create",
            "tenants.update",
            "tenants.users.add",
            "tenants.users.remove",
            "secrets.set",
            "secrets.list",
            "secrets.delete",
        ] {
            let err = authorize(&with_role("operator"), method).unwrap_err();
            assert_eq!(err.message, format!("{method} requires admin role"));
            assert!(authorize(&with_role("admin"), method).is_ok(), "{method}");
        }
        let err = authorize(&with_role("owner"), "teams.list").unwrap_err();
        assert_eq!(err.message, "unknown method: teams.list");
        assert_eq!(err.code.goclaw_code(), "INVALID_REQUEST");
    }
}
