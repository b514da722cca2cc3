//! OpenClaw authorization (§4): the method → scope table of every method this
//! edge implements, the role rules, and what `hello-ok.features` advertises.
//!
//! Invariants: default-deny (a method not in the table needs `operator.admin`);
//! `health` is open to every role; a `node` may call only the node methods, an
//! `operator` none of them; `admin` implies every scope and `write` implies
//! `read`; refusals read exactly as the reference's (`missing scope: <scope>`,
//! `unauthorized role: <role>`).

use clawgate_proto::principal::{SCOPE_ADMIN, SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE};
use clawgate_proto::{Principal, ServiceError};

use crate::notify::{PAIR_REQUESTED, PAIR_RESOLVED};

/// Methods this edge implements, as advertised in `hello-ok.features.methods`.
pub const METHODS: [&str; 26] = [
    "health",
    "status",
    "chat.send",
    "chat.history",
    "chat.abort",
    "sessions.list",
    // clawgate extension: a run's `agent` events from its replay history.
    "chat.replay",
    "device.pair.list",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.token.rotate",
    "device.token.revoke",
    // clawgate extension: API keys of the goclaw dialect (admin only).
    "api_keys.create",
    "api_keys.list",
    "api_keys.revoke",
    // clawgate extensions: tenants, their users and their secrets.
    "tenants.list",
    "tenants.get",
    "tenants.create",
    "tenants.update",
    "tenants.users.list",
    "tenants.users.add",
    "tenants.users.remove",
    "secrets.set",
    "secrets.list",
    "secrets.delete",
];

/// Events this edge sends, as advertised in `hello-ok.features.events`.
pub const EVENTS: [&str; 7] = [
    "connect.challenge",
    "agent",
    "chat",
    "tick",
    "shutdown",
    PAIR_REQUESTED,
    PAIR_RESOLVED,
];

/// The methods only a `node` may call (§4.1), besides `health`.
pub const NODE_METHODS: [&str; 7] = [
    "node.invoke.result",
    "node.event",
    "node.pending.drain",
    "node.pending.pull",
    "node.pending.ack",
    "node.canvas.capability.refresh",
    "skills.bins",
];

/// Prefixes of methods reserved to admins whatever the table says (§4.3 step 5).
const ADMIN_PREFIXES: [&str; 4] = ["config.", "exec.approvals.", "wizard.", "update."];

/// The scope an operator method needs; `None` for methods open to every
/// connection.
pub fn required_scope(method: &str) -> Option<&'static str> {
    if ADMIN_PREFIXES.iter().any(|p| method.starts_with(p)) {
        return Some(SCOPE_ADMIN);
    }
    match method {
        "health" => None,
        "status" | "chat.history" | "chat.replay" | "sessions.list" => Some(SCOPE_READ),
        // What the auth service lets the caller see of its tenant (and, for an
        // owner, of every tenant).
        "tenants.list" | "tenants.get" | "tenants.users.list" => Some(SCOPE_READ),
        "chat.send" | "chat.abort" => Some(SCOPE_WRITE),
        "device.pair.list"
        | "device.pair.approve"
        | "device.pair.reject"
        | "device.pair.remove"
        | "device.token.rotate"
        | "device.token.revoke" => Some(SCOPE_PAIRING),
        _ => Some(SCOPE_ADMIN),
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

/// Whether `principal` may call `method` (§4.3). The error is `Forbidden`; its
/// message is the OpenClaw text.
pub fn authorize(principal: &Principal, method: &str) -> Result<(), ServiceError> {
    if method == "health" {
        return Ok(());
    }
    let node_method = NODE_METHODS.contains(&method);
    match principal.role.as_str() {
        "node" if node_method => Ok(()),
        "operator" if !node_method => match required_scope(method) {
            None => Ok(()),
            Some(scope) => principal.require_scope(scope),
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
        assert_eq!(
            message(&reader, "config.get"),
            "missing scope: operator.admin"
        );
        let writer = principal("operator", &["operator.write"]);
        assert!(authorize(&writer, "chat.history").is_ok());
        let admin = principal("operator", &["operator.admin"]);
        for method in METHODS {
            assert!(authorize(&admin, method).is_ok(), "{method}");
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
}
