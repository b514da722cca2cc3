//! Names of the per-user Redis keys shared by leases and the replay log.
//!
//! Every key of one (tenant, user) carries the hash tag `{<tenant>:<user>}`, so
//! on Redis Cluster all of a user's run keys live in one slot and a Lua script
//! may touch several of them (a session's lease and a run's record, say).
//!
//! Invariant: distinct (tenant, user) pairs give distinct tags. Tenant and user
//! ids are escaped (`%`, `:`, `{`, `}` become `%25`, `%3A`, `%7B`, `%7D`), so a
//! `:` inside an id cannot shift the separator and a brace cannot end the tag.

/// Escapes one key component.
pub(crate) fn escape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for c in component.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The hash tag of one user: `{<tenant>:<user>}` with both escaped.
pub(crate) fn user_tag(tenant_id: &str, user_id: &str) -> String {
    format!("{{{}:{}}}", escape(tenant_id), escape(user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_braces_are_escaped() {
        assert_eq!(user_tag("acme", "u42"), "{acme:u42}");
        assert_ne!(user_tag("a:b", "c"), user_tag("a", "b:c"));
        assert_eq!(user_tag("t}", "{u%"), "{t%7D:%7Bu%25}");
    }
}
