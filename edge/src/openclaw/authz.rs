//! OpenClaw authorization (§4): the role rules, the scope of each method (from
//! the method declarations, [`crate::methods`]), and the events
//! `hello-ok.features` advertises (the methods are derived from the
//! declarations too).
//!
//! Invariants: default-deny (a method OpenClaw is not offered needs
//! `operator.admin`);
//! `health` is open to every role; a `node` may call only the node methods, an
//! `operator` none of them; `admin` implies every scope and `write` implies
//! `read`; refusals read exactly as the reference's (`missing scope: <scope>`,
//! `unauthorized role: <role>`).

use clawgate_proto::principal::SCOPE_ADMIN;
use clawgate_proto::{Principal, ServiceError};

use serde_json::json;

use crate::methods::{self, Scope, approvals, node_pairing};
use crate::notify::{PAIR_REQUESTED, PAIR_RESOLVED};
use crate::version::Protocol;

/// Events this edge sends, as advertised in `hello-ok.features.events`.
pub const EVENTS: [&str; 16] = [
    "connect.challenge",
    "agent",
    "chat",
    "sessions.changed",
    "session.message",
    "tick",
    "health",
    "shutdown",
    "presence",
    PAIR_REQUESTED,
    PAIR_RESOLVED,
    approvals::REQUESTED,
    approvals::RESOLVED,
    node_pairing::REQUESTED,
    node_pairing::RESOLVED,
    "node.invoke.request",
];

/// The methods only a `node` may call (§4.1, and v4's
/// `node.pluginSurface.refresh`), besides `health`, whether this edge serves
/// them or not: an operator calling one is refused for its role.
pub const NODE_METHODS: [&str; 8] = [
    "node.invoke.result",
    "node.event",
    "node.pending.drain",
    "node.pending.pull",
    "node.pending.ack",
    "node.canvas.capability.refresh",
    "node.pluginSurface.refresh",
    "skills.bins",
];

/// Prefixes of methods reserved to admins whatever the table says (§4.3 step 5).
const ADMIN_PREFIXES: [&str; 4] = ["config.", "exec.approvals.", "wizard.", "update."];

/// Methods under a reserved prefix whose explicit table entry is read (the
/// table comes before the prefix rule, §4.3 step 5).
const BELOW_PREFIX: [&str; 2] = ["config.get", "config.schema.lookup"];

/// The scope an operator method needs on a connection of `protocol`; `None`
/// for methods open to every connection.
pub fn required_scope(method: &str, protocol: Protocol) -> Option<&'static str> {
    if ADMIN_PREFIXES.iter().any(|p| method.starts_with(p)) && !BELOW_PREFIX.contains(&method) {
        return Some(SCOPE_ADMIN);
    }
    match methods::openclaw_scope(method, protocol) {
        Some(scope) => scope.name(),
        None => Some(SCOPE_ADMIN),
    }
}

fn unauthorized_role(role: &str) -> ServiceError {
    let role = if role.is_empty() { "none" } else { role };
    ServiceError::forbidden(format!("unauthorized role: {role}"))
}

/// Whether a refusal of [`authorize`] is a role refusal (counted towards the
/// close after repeated unauthorized calls).
pub fn is_role_refusal(err: &ServiceError) -> bool {
    err.message.starts_with("unauthorized role")
}

/// Whether `principal` may call `method` on a connection of `protocol` (§4.3).
/// The error is `Forbidden`; its message is the OpenClaw text, and in v4 a
/// missing scope carries `details {code: "MISSING_SCOPE", missingScope,
/// requiredScopes}`.
pub fn authorize(
    principal: &Principal,
    method: &str,
    protocol: Protocol,
) -> Result<(), ServiceError> {
    if methods::openclaw_scope(method, protocol) == Some(Scope::Open) {
        return Ok(());
    }
    let node_method = NODE_METHODS.contains(&method);
    match principal.role.as_str() {
        "node" if node_method => Ok(()),
        "operator" if !node_method => match required_scope(method, protocol) {
            None => Ok(()),
            Some(scope) => principal
                .require_scope(scope)
                .map_err(|err| match protocol {
                    Protocol::V3 => err,
                    Protocol::V4 => err.with_details(json!({
                        "code": "MISSING_SCOPE",
                        "missingScope": scope,
                        "requiredScopes": [scope],
                    })),
                }),
        },
        role => Err(unauthorized_role(role)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: &str, scopes: &[&str]) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: role.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn authorize(principal: &Principal, method: &str) -> Result<(), ServiceError> {
        super::authorize(principal, method, Protocol::V3)
    }

    fn message(principal: &Principal, method: &str) -> String {
        authorize(principal, method)
            .err()
            .map(|e| e.message)
            .unwrap_or_default()
    }

    #[test]
    fn scopes_and_default_deny() {
        let reader = principal("operator", &["operator.read"]);
        assert!(authorize(&reader, "sessions.list").is_ok());
        assert!(authorize(&reader, "health").is_ok());
        assert_eq!(
            message(&reader, "chat.send"),
            "missing scope: operator.write"
        );
        assert_eq!(
            message(&reader, "device.pair.list"),
            "missing scope: operator.pairing"
        );
        assert_eq!(
            message(&reader, "api_keys.list"),
            "missing scope: operator.admin"
        );
        // The reserved prefix, except where the table says read.
        assert!(authorize(&reader, "config.get").is_ok());
        assert_eq!(
            message(&reader, "config.set"),
            "missing scope: operator.admin"
        );
        let writer = principal("operator", &["operator.write"]);
        assert!(authorize(&writer, "chat.history").is_ok());
        let admin = principal("operator", &["operator.admin"]);
        for method in methods::openclaw_methods(Protocol::V3) {
            let for_nodes = NODE_METHODS.contains(method);
            assert_eq!(authorize(&admin, method).is_ok(), !for_nodes, "{method}");
        }
        for method in ["tenants.list", "tenants.get", "tenants.users.list"] {
            assert!(authorize(&reader, method).is_ok(), "{method}");
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
            assert_eq!(
                message(&writer, method),
                "missing scope: operator.admin",
                "{method}"
            );
        }
        assert!(authorize(&principal("operator", &[]), "tenants.list").is_err());
        let pairing = principal("operator", &["operator.pairing"]);
        assert!(authorize(&pairing, "device.token.revoke").is_ok());
        assert_eq!(
            message(&pairing, "sessions.list"),
            "missing scope: operator.read"
        );
    }

    #[test]
    fn roles() {
        for method in methods::all().filter(|m| m.openclaw == Some(Scope::Node)) {
            assert!(NODE_METHODS.contains(&method.name), "{}", method.name);
        }
        let node = principal("node", &[]);
        assert!(authorize(&node, "health").is_ok());
        assert!(authorize(&node, "node.event").is_ok());
        assert_eq!(message(&node, "chat.send"), "unauthorized role: node");
        assert_eq!(message(&node, "sessions.list"), "unauthorized role: node");
        let admin = principal("operator", &["operator.admin"]);
        assert_eq!(message(&admin, "node.event"), "unauthorized role: operator");
        assert_eq!(
            message(&admin, "skills.bins"),
            "unauthorized role: operator"
        );
        assert!(is_role_refusal(&authorize(&node, "status").unwrap_err()));
        assert_eq!(
            message(&principal("", &[]), "status"),
            "unauthorized role: none"
        );
    }

    #[test]
    fn v4_names_the_missing_scope_in_details() {
        let reader = principal("operator", &["operator.read"]);
        let err = super::authorize(&reader, "chat.send", Protocol::V4).unwrap_err();
        assert_eq!(err.message, "missing scope: operator.write");
        let details = err.details.expect("details");
        assert_eq!(details["code"], "MISSING_SCOPE");
        assert_eq!(details["missingScope"], "operator.write");
        assert_eq!(details["requiredScopes"], json!(["operator.write"]));
        let v3 = authorize(&reader, "chat.send").unwrap_err();
        assert!(v3.details.is_none(), "v3 refusals are as before");
        let shape = crate::frames::ErrorShape::openclaw_in(
            &super::authorize(&reader, "chat.send", Protocol::V4).unwrap_err(),
            Protocol::V4,
        );
        assert_eq!(shape.code, "FORBIDDEN");
        assert_eq!(
            crate::frames::ErrorShape::openclaw_in(&v3, Protocol::V3).code,
            "INVALID_REQUEST"
        );
        // An unknown method without admin is refused before it is looked up.
        let err = super::authorize(&reader, "no.such.method", Protocol::V4).unwrap_err();
        assert_eq!(err.message, "missing scope: operator.admin");
    }
}
