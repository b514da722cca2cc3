//! The method declarations against the protocols' own tables (vendored in
//! `tests/reference/`), and the tables derived from them.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::openclaw::authz;
use crate::version::Protocol;

const OPENCLAW_TABLE: &str = include_str!("../../../tests/reference/openclaw-methods.tsv");
const GOCLAW_TABLE: &str = include_str!("../../../tests/reference/goclaw-method-roles.tsv");

/// Methods clawgate adds to OpenClaw (not in the reference table).
const OPENCLAW_EXTENSIONS: [&str; 17] = [
    "chat.replay",
    "providers.list",
    "providers.set",
    "providers.delete",
    "api_keys.create",
    "api_keys.list",
    "api_keys.revoke",
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

/// Methods clawgate adds to goclaw (not in the reference table).
/// (`sessions.label` and `models.list` are named by goclaw's seed method
/// list, which its code never registered; clawgate serves them as the seed
/// describes.)
const GOCLAW_EXTENSIONS: [&str; 15] = [
    "providers.list",
    "providers.set",
    "providers.delete",
    "secrets.set",
    "secrets.list",
    "secrets.delete",
    "sessions.label",
    "models.list",
    // Upstream goclaw has node methods the reference snapshot predates; its
    // admins get OpenClaw's.
    "node.list",
    "node.describe",
    "node.invoke",
    "node.pair.list",
    "node.pair.approve",
    "node.pair.reject",
    "node.pair.remove",
];

/// `method → second column` of a reference table (comments skipped).
fn table(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some((fields.next()?, fields.next()?))
        })
        .collect()
}

#[test]
fn every_method_is_declared_once_and_offered_somewhere() {
    let mut seen = HashSet::new();
    for method in all() {
        assert!(seen.insert(method.name), "{} declared twice", method.name);
        assert!(
            method.openclaw.is_some() || method.goclaw.is_some(),
            "{} is offered in no dialect",
            method.name
        );
        assert!(std::ptr::eq(find(method.name).expect("found"), method));
    }
    assert!(find("no.such.method").is_none());
}

/// Methods of protocol v4 that v3 does not have (so not in the v3 reference
/// table), with the scope the v4 reference gives them.
const OPENCLAW_V4_ONLY: [(&str, Option<&str>); 1] = [("users.list", Some("operator.read"))];

#[test]
fn openclaw_scopes_are_the_reference_ones() {
    let reference = table(OPENCLAW_TABLE);
    assert!(reference.len() > 100, "the reference table was read");
    for protocol in [Protocol::V3, Protocol::V4] {
        let advertised = openclaw_methods(protocol);
        assert!(!advertised.is_empty());
        for method in all().filter(|m| m.offered_to(protocol)) {
            let name = method.name;
            assert!(advertised.contains(&name), "{name} is not advertised");
            let scope = openclaw_scope(name, protocol).expect("offered");
            // The table the connection enforces says the same.
            assert_eq!(
                authz::required_scope(name, protocol),
                scope.name(),
                "{name}"
            );
            let v4_only = OPENCLAW_V4_ONLY.iter().find(|(n, _)| *n == name);
            match (reference.get(name), v4_only) {
                (Some(expected), _) => {
                    let expected = match *expected {
                        "none (any authenticated role)" => None,
                        other => Some(other),
                    };
                    assert_eq!(scope.name(), expected, "scope of {name}");
                }
                (None, Some((_, expected))) => {
                    assert_eq!(scope.name(), *expected, "scope of {name}");
                    assert!(!method.offered_to(Protocol::V3), "{name} is v4 only");
                }
                (None, None) => assert!(
                    OPENCLAW_EXTENSIONS.contains(&name),
                    "{name} is neither in the reference table nor a known extension"
                ),
            }
        }
        // Nothing is advertised that is not offered, and the handshake is never.
        for name in advertised {
            assert!(openclaw_scope(name, protocol).is_some(), "{name}");
        }
        assert!(!advertised.contains(&"connect"));
        // A method not offered needs admin (default deny).
        for method in all().filter(|m| !m.offered_to(protocol)) {
            assert_eq!(
                authz::required_scope(method.name, protocol),
                Some(SCOPE_ADMIN_NAME),
                "{}",
                method.name
            );
        }
    }
}

const SCOPE_ADMIN_NAME: &str = clawgate_proto::principal::SCOPE_ADMIN;

#[test]
fn goclaw_roles_are_the_reference_ones() {
    let reference = table(GOCLAW_TABLE);
    for method in all().filter(|m| m.goclaw.is_some()) {
        let name = method.name;
        let role = find(name).and_then(|m| m.goclaw).expect("offered");
        match reference.get(name) {
            // goclaw's public methods still need a connected socket: any role.
            Some(&"public") => assert_eq!(role, Role::Viewer, "{name}"),
            Some(expected) => assert_eq!(role.name(), *expected, "role of {name}"),
            None => assert!(
                GOCLAW_EXTENSIONS.contains(&name),
                "{name} is neither in the reference table nor a known extension"
            ),
        }
    }
}

#[test]
fn roles_rank() {
    assert!(Role::Admin.allows("owner"));
    assert!(Role::Admin.allows("admin"));
    assert!(!Role::Admin.allows("operator"));
    assert!(Role::Viewer.allows("viewer"));
    assert!(!Role::Viewer.allows(""));
    assert!(!Role::Viewer.allows("node"));
}

#[test]
fn two_phase_and_subscription_methods_are_openclaws_only() {
    for method in all().filter(|m| matches!(m.handler, Handler::Agent(_) | Handler::Subscribe(_))) {
        assert!(
            method.goclaw.is_none(),
            "{} is offered to goclaw",
            method.name
        );
        assert!(method.openclaw.is_some(), "{} is not offered", method.name);
    }
}
