//! The dependency rule between clawgate's crates, as a function of the
//! workspace graph, so it can be checked on the real workspace and on made-up
//! graphs alike.
//!
//! proto ← runtime ← services (auth, runner, session, …) and edge ← binary
//! (`clawgate`) ← end-to-end tests. No service depends on another, the edge on
//! no service. The test kit depends on no service, not on the edge and not on
//! the binary. Normal and build dependencies follow the rule strictly;
//! dev-dependencies may add the test kit and, for a service's or the edge's
//! integration tests, the services it talks to, but never the binary nor the
//! end-to-end tests. The edge uses no storage client (`redis`, `sqlx`) of its
//! own: it gets storage through the runtime.

use crate::workspace::{Kind, Member, Role};

/// Storage clients only the runtime and the services may use directly.
const STORAGE_CLIENTS: [&str; 2] = ["redis", "sqlx"];

/// Whether a crate in role `from` may have a normal or build dependency on one
/// in role `to`.
fn may_depend(from: Role, to: Role) -> bool {
    use Role::*;
    match from {
        Proto => false,
        Runtime => to == Proto,
        Service | Edge | Kit => matches!(to, Proto | Runtime),
        Binary => matches!(to, Proto | Runtime | Service | Edge),
        Tests => to != Tests,
    }
}

/// Whether a crate in role `from` may have a dev-dependency on one in role `to`.
fn may_dev_depend(from: Role, to: Role) -> bool {
    may_depend(from, to)
        || (to == Role::Kit && from != Role::Kit)
        || (to == Role::Service && matches!(from, Role::Service | Role::Edge))
}

/// Every dependency between members that breaks the rule, one line each,
/// naming the edge (`from → to (kind)`) and the rule it breaks.
pub fn internal_violations(members: &[Member]) -> Vec<String> {
    let mut violations = Vec::new();
    for member in members {
        let Some(from) = member.role else {
            violations.push(format!(
                "{}: its directory has no place in the dependency rule",
                member.name
            ));
            continue;
        };
        for dependency in member.dependencies.iter().filter(|d| d.internal) {
            let Some(to) = members
                .iter()
                .find(|other| other.name == dependency.name)
                .and_then(|other| other.role)
            else {
                continue;
            };
            if dependency.name == member.name {
                continue;
            }
            let allowed = match dependency.kind {
                Kind::Normal | Kind::Build => may_depend(from, to),
                Kind::Dev => may_dev_depend(from, to),
            };
            if !allowed {
                violations.push(format!(
                    "{} → {} ({}): a {from:?} crate may not depend on a {to:?} crate{}",
                    member.name,
                    dependency.name,
                    dependency.kind,
                    if dependency.kind == Kind::Dev {
                        " (dev-dependencies may add only the test kit and other services)"
                    } else {
                        ""
                    },
                ));
            }
        }
    }
    violations
}

/// Every storage client the edge depends on, one line each.
pub fn storage_violations(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .filter(|member| member.role == Some(Role::Edge))
        .flat_map(|member| {
            member
                .dependencies
                .iter()
                .filter(|dependency| STORAGE_CLIENTS.contains(&dependency.name.as_str()))
                .map(move |dependency| {
                    format!(
                        "{} → {} ({}): the edge gets storage only through the runtime",
                        member.name, dependency.name, dependency.kind
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Dependency;

    fn member(name: &str, role: Role, dependencies: &[(&str, Kind, bool)]) -> Member {
        Member {
            name: name.to_owned(),
            role: Some(role),
            dependencies: dependencies
                .iter()
                .map(|&(name, kind, internal)| Dependency {
                    name: name.to_owned(),
                    kind,
                    internal,
                })
                .collect(),
            src: None,
        }
    }

    /// The shape of the real workspace, with its allowed exceptions.
    fn good() -> Vec<Member> {
        use Kind::*;
        vec![
            member("proto", Role::Proto, &[("tonic", Normal, false)]),
            member("runtime", Role::Runtime, &[("proto", Normal, true)]),
            member(
                "session",
                Role::Service,
                &[("proto", Normal, true), ("runtime", Normal, true)],
            ),
            member(
                "runner",
                Role::Service,
                &[
                    ("proto", Normal, true),
                    ("runtime", Normal, true),
                    ("session", Dev, true),
                    ("kit", Dev, true),
                ],
            ),
            member("edge", Role::Edge, &[("runtime", Normal, true)]),
            member(
                "binary",
                Role::Binary,
                &[
                    ("edge", Normal, true),
                    ("runner", Normal, true),
                    ("session", Normal, true),
                ],
            ),
            member("kit", Role::Kit, &[("axum", Normal, false)]),
            member(
                "e2e",
                Role::Tests,
                &[("binary", Normal, true), ("kit", Normal, true)],
            ),
        ]
    }

    #[test]
    fn the_rule_accepts_the_intended_shape() {
        assert_eq!(internal_violations(&good()), Vec::<String>::new());
        assert_eq!(storage_violations(&good()), Vec::<String>::new());
    }

    #[test]
    fn the_rule_names_every_offending_edge() {
        use Kind::*;
        let mut graph = good();
        let bad = [
            ("runner", "session", Normal),
            ("runner", "e2e", Dev),
            ("runner", "binary", Dev),
            ("edge", "runner", Normal),
            ("kit", "binary", Normal),
            ("kit", "session", Normal),
            ("runtime", "session", Build),
            ("proto", "runtime", Normal),
        ];
        for (from, to, kind) in bad {
            let member = graph
                .iter_mut()
                .find(|member| member.name == from)
                .expect("member");
            member.dependencies.push(Dependency {
                name: to.to_owned(),
                kind,
                internal: true,
            });
        }
        graph[4].dependencies.push(Dependency {
            name: "redis".to_owned(),
            kind: Normal,
            internal: false,
        });
        let violations = internal_violations(&graph);
        assert_eq!(violations.len(), bad.len(), "{violations:#?}");
        for (violation, (from, to, kind)) in violations.iter().zip(sorted(&graph, &bad)) {
            assert!(
                violation.starts_with(&format!("{from} → {to} ({kind})")),
                "{violation}"
            );
        }
        assert_eq!(
            storage_violations(&graph),
            ["edge → redis (dependency): the edge gets storage only through the runtime"]
        );
    }

    /// `bad` in the order the rule reports it: by member, then declaration.
    fn sorted<'a>(
        graph: &[Member],
        bad: &[(&'a str, &'a str, Kind)],
    ) -> Vec<(&'a str, &'a str, Kind)> {
        let mut sorted = bad.to_vec();
        sorted.sort_by_key(|(from, to, _)| {
            let index = graph.iter().position(|m| m.name == *from);
            let declared = graph
                .iter()
                .find(|m| m.name == *from)
                .and_then(|m| m.dependencies.iter().position(|d| d.name == *to));
            (index, declared)
        });
        sorted
    }

    #[test]
    fn a_crate_outside_the_rule_is_reported() {
        let mut graph = good();
        graph[0].role = None;
        assert_eq!(
            internal_violations(&graph),
            ["proto: its directory has no place in the dependency rule"]
        );
    }
}
