//! Architecture checks on the whole workspace: the dependency rule between
//! crates (from `cargo metadata`) and the absence of module import cycles
//! inside each crate (from the source).
//!
//! They live with the test kit, which depends on no clawgate crate, so running
//! them builds almost nothing.

mod layering;
mod modcycles;
mod workspace;

use workspace::Member;

fn member<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|member| member.name == name)
        .unwrap_or_else(|| panic!("{name} is not a workspace member"))
}

#[test]
fn crates_depend_only_along_the_rule() {
    let violations = layering::internal_violations(&workspace::members());
    assert!(
        violations.is_empty(),
        "dependencies outside the rule:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_edge_uses_no_storage_client() {
    let violations = layering::storage_violations(&workspace::members());
    assert!(
        violations.is_empty(),
        "storage clients of the edge:\n{}",
        violations.join("\n")
    );
}

/// The import cycles of `crate_name`, described.
fn cycles_of(crate_name: &str) -> Option<String> {
    let members = workspace::members();
    let src = member(&members, crate_name)
        .src
        .clone()
        .unwrap_or_else(|| panic!("{crate_name} has no library or binary target"));
    let graph = modcycles::graph(&src);
    let cycles = modcycles::cycles(&graph);
    (!cycles.is_empty()).then(|| modcycles::describe(&graph, &cycles))
}

fn assert_no_cycles(crate_name: &str) {
    if let Some(cycles) = cycles_of(crate_name) {
        panic!("module import cycles in {crate_name}:\n{cycles}");
    }
}

#[test]
fn no_import_cycles_in_the_edge() {
    assert_no_cycles("clawgate-edge");
}

#[test]
fn no_import_cycles_in_the_runner() {
    assert_no_cycles("clawgate-runner");
}

#[test]
fn no_import_cycles_in_the_runtime() {
    assert_no_cycles("clawgate-runtime");
}

#[test]
fn no_import_cycles_in_the_other_crates() {
    let members = workspace::members();
    let skipped = ["clawgate-edge", "clawgate-runner", "clawgate-runtime"];
    let mut found = String::new();
    for member in members
        .iter()
        .filter(|m| !skipped.contains(&m.name.as_str()))
    {
        if let Some(cycles) = cycles_of(&member.name) {
            found.push_str(&format!("{}:\n{cycles}", member.name));
        }
    }
    assert!(found.is_empty(), "module import cycles:\n{found}");
}
