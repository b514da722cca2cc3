//! Operator scope arithmetic shared by the connect flows and the RPCs.
//!
//! The implication rules are those of the OpenClaw gateway (`operator.admin`
//! implies every scope, `operator.write` implies `operator.read`), kept in
//! one place: [`clawgate_proto::principal::scopes_grant`].

use clawgate_proto::ServiceError;
use clawgate_proto::principal::{
    SCOPE_ADMIN, SCOPE_APPROVALS, SCOPE_PAIRING, SCOPE_WRITE, normalize_scopes, scopes_grant,
};

/// Most scopes a request may name.
const MAX_SCOPES: usize = 32;
/// Longest accepted scope name.
const MAX_SCOPE_LEN: usize = 64;

/// Whether the scopes `held` grant `scope` (the rules of
/// [`clawgate_proto::principal::scopes_grant`]).
pub fn grants(held: &[String], scope: &str) -> bool {
    scopes_grant(held, scope)
}

/// Whether every scope of `requested` is granted by `held`.
pub fn within(requested: &[String], held: &[String]) -> bool {
    requested.iter().all(|scope| grants(held, scope))
}

/// The scopes of `requested` that `held` does not grant.
pub fn missing<'a>(requested: &'a [String], held: &[String]) -> Vec<&'a str> {
    requested
        .iter()
        .filter(|scope| !grants(held, scope))
        .map(String::as_str)
        .collect()
}

/// The scopes of `requested` that `cap` grants (in `requested`'s order).
pub fn cap(requested: &[String], cap: &[String]) -> Vec<String> {
    requested
        .iter()
        .filter(|scope| grants(cap, scope))
        .cloned()
        .collect()
}

/// Trimmed, deduplicated and sorted, with the implications made explicit
/// ([`clawgate_proto::principal::normalize_scopes`]).
pub fn normalize(scopes: &[String]) -> Vec<String> {
    normalize_scopes(scopes)
}

/// The union of `a` and `b`, sorted and deduplicated (no implications added).
pub fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = a.iter().chain(b).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// Fails unless `scopes` is a sane list of scope names.
pub fn validate(scopes: &[String]) -> Result<(), ServiceError> {
    if scopes.len() > MAX_SCOPES {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_SCOPES} scopes"
        )));
    }
    for scope in scopes {
        let ok = !scope.is_empty()
            && scope.len() <= MAX_SCOPE_LEN
            && scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !ok {
            return Err(ServiceError::invalid(format!("invalid scope {scope:?}")));
        }
    }
    Ok(())
}

/// goclaw role of an API key from its scopes: admin ⇒ `admin`; write,
/// approvals or pairing ⇒ `operator`; anything else ⇒ `viewer`.
pub fn goclaw_role(scopes: &[String]) -> &'static str {
    if scopes.iter().any(|s| s == SCOPE_ADMIN) {
        "admin"
    } else if scopes
        .iter()
        .any(|s| s == SCOPE_WRITE || s == SCOPE_APPROVALS || s == SCOPE_PAIRING)
    {
        "operator"
    } else {
        "viewer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn implications() {
        assert!(within(&v(&["operator.read"]), &v(&["operator.write"])));
        assert!(within(
            &v(&["operator.pairing", "operator.write"]),
            &v(&["operator.admin"])
        ));
        assert!(!within(&v(&["operator.write"]), &v(&["operator.read"])));
        assert!(within(&[], &[]));
        assert_eq!(
            cap(
                &v(&["operator.read", "operator.write", "operator.pairing"]),
                &v(&["operator.write"])
            ),
            v(&["operator.read", "operator.write"])
        );
        assert_eq!(
            missing(
                &v(&["operator.write", "operator.read"]),
                &v(&["operator.read"])
            ),
            ["operator.write"]
        );
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize(&v(&[
                " operator.admin",
                "operator.admin",
                "operator.pairing"
            ])),
            v(&[
                "operator.admin",
                "operator.pairing",
                "operator.read",
                "operator.write"
            ])
        );
        assert_eq!(
            normalize(&v(&["operator.write"])),
            v(&["operator.read", "operator.write"])
        );
    }

    #[test]
    fn roles_from_scopes() {
        assert_eq!(goclaw_role(&v(&["operator.admin"])), "admin");
        assert_eq!(goclaw_role(&v(&["operator.pairing"])), "operator");
        assert_eq!(goclaw_role(&v(&["operator.read"])), "viewer");
        assert!(validate(&v(&["a,b"])).is_err());
    }
}
