//! Canonical session keys (OpenClaw §7), shared by both dialects.
//!
//! Canonical form is `agent:<agentId>:<rest>`, all lowercase, or one of the
//! special keys `global` / `unknown`. Invariant: [`canonicalize`] is idempotent,
//! and every key the edge sends to a service or back to a client went through it.

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    #[error("session key is empty")]
    Empty,
    #[error("malformed session key: {0}")]
    Malformed(String),
}

/// Lowercases an agent id and replaces characters outside `[a-z0-9_-]` with `-`,
/// keeping at most 64 characters; an id that ends up not starting with `[a-z0-9]`
/// falls back to `fallback`.
pub fn normalize_agent_id(raw: &str, fallback: &str) -> String {
    let id: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    match id.chars().next() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => id,
        _ => fallback.to_owned(),
    }
}

/// The canonical form of a key sent by a client.
///
/// `main` or the configured main key ⇒ `agent:<default>:<main_key>`; a bare `x` ⇒ `agent:<default>:x`;
/// `agent:<id>:<rest>` keeps its agent (normalized) and rest; `global` and
/// `unknown` stay; `agent:` keys with fewer than three parts are malformed.
pub fn canonicalize(
    raw: &str,
    default_agent: &str,
    main_key: &str,
) -> Result<String, SessionKeyError> {
    let key = raw.trim().to_lowercase();
    if key.is_empty() {
        return Err(SessionKeyError::Empty);
    }
    if key == "global" || key == "unknown" {
        return Ok(key);
    }
    if let Some(tail) = key.strip_prefix("agent:") {
        let Some((agent, rest)) = tail.split_once(':') else {
            return Err(SessionKeyError::Malformed(key));
        };
        if agent.is_empty() || rest.is_empty() {
            return Err(SessionKeyError::Malformed(key));
        }
        let agent = normalize_agent_id(agent, default_agent);
        return Ok(format!("agent:{agent}:{rest}"));
    }
    let default_agent = normalize_agent_id(default_agent, "main");
    let main_key = main_key.trim().to_lowercase();
    if key == "main" || key == main_key {
        return Ok(format!("agent:{default_agent}:{main_key}"));
    }
    Ok(format!("agent:{default_agent}:{key}"))
}

/// The agent of a canonical key, if it is an `agent:` key.
pub fn agent_of(canonical: &str) -> Option<&str> {
    canonical
        .strip_prefix("agent:")
        .and_then(|tail| tail.split_once(':'))
        .map(|(agent, _)| agent)
}

/// OpenClaw's session `kind` of a canonical key.
pub fn kind_of(canonical: &str) -> &'static str {
    if canonical == "global" {
        "global"
    } else if canonical == "unknown" {
        "unknown"
    } else if canonical.contains(":group:") || canonical.contains(":channel:") {
        "group"
    } else {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<String, SessionKeyError> {
        canonicalize(raw, "main", "main")
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("main").as_deref(), Ok("agent:main:main"));
        assert_eq!(canon(" Main ").as_deref(), Ok("agent:main:main"));
        assert_eq!(canon("x").as_deref(), Ok("agent:main:x"));
        assert_eq!(canon("Agent:Ops:Main").as_deref(), Ok("agent:ops:main"));
        assert_eq!(
            canon("agent:main:ws:direct:ABC").as_deref(),
            Ok("agent:main:ws:direct:abc")
        );
        assert_eq!(canon("global").as_deref(), Ok("global"));
        assert_eq!(canon("UNKNOWN").as_deref(), Ok("unknown"));
        assert_eq!(canon(""), Err(SessionKeyError::Empty));
        assert!(matches!(
            canon("agent:x"),
            Err(SessionKeyError::Malformed(_))
        ));
        assert!(matches!(
            canon("agent::x"),
            Err(SessionKeyError::Malformed(_))
        ));
        assert_eq!(
            canonicalize("x", "Ops Team", "main").as_deref(),
            Ok("agent:ops-team:x")
        );
        assert_eq!(
            canonicalize("main", "main", "home").as_deref(),
            Ok("agent:main:home")
        );
    }

    #[test]
    fn canonicalize_is_idempotent() {
        for raw in [
            "main",
            "X",
            "agent:A b:c",
            "global",
            "agent:main:ws:direct:1",
        ] {
            let once = canon(raw).expect("valid");
            assert_eq!(canon(&once).expect("valid"), once);
        }
    }

    #[test]
    fn agent_ids() {
        assert_eq!(agent_of("agent:ops:main"), Some("ops"));
        assert_eq!(agent_of("global"), None);
        assert_eq!(normalize_agent_id("-x", "main"), "main");
        assert_eq!(normalize_agent_id("A.B", "main"), "a-b");
        assert_eq!(kind_of("agent:main:telegram:group:1"), "group");
        assert_eq!(kind_of("agent:main:main"), "direct");
    }
}
