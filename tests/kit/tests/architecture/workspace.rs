//! The workspace as `cargo metadata --format-version 1 --no-deps` describes it:
//! each member crate with its role in the dependency rule, its declared
//! dependencies and the source directory of its library (or binary).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where a crate sits in the dependency rule, from its manifest's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `proto/`: messages, service traits, clients, error model.
    Proto,
    /// `services/runtime/`: mechanisms every service shares.
    Runtime,
    /// `services/<name>/` other than the runtime and the binary.
    Service,
    /// `edge/`: the WebSocket edge.
    Edge,
    /// `services/clawgate/`: the binary.
    Binary,
    /// `tests/kit/`: the test kit.
    Kit,
    /// `tests/`: the end-to-end tests.
    Tests,
}

/// How a dependency is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Build,
    Dev,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Normal => "dependency",
            Self::Build => "build-dependency",
            Self::Dev => "dev-dependency",
        })
    }
}

/// One declared dependency of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The package depended on.
    pub name: String,
    pub kind: Kind,
    /// Whether it is a member of this workspace.
    pub internal: bool,
}

/// One member crate.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    /// `None` when the manifest's directory is not one the rule knows.
    pub role: Option<Role>,
    pub dependencies: Vec<Dependency>,
    /// Directory of the library target's root file (else the first binary's).
    pub src: Option<PathBuf>,
}

/// The members of the workspace this test is built in.
pub fn members() -> Vec<Member> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    parse(&metadata)
}

fn parse(metadata: &Value) -> Vec<Member> {
    let root = PathBuf::from(metadata["workspace_root"].as_str().expect("workspace_root"));
    let packages = metadata["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    packages
        .iter()
        .map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
            let dir = manifest.parent().expect("manifest directory");
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|dependency| {
                    let name = dependency["name"].as_str().expect("dependency name");
                    Dependency {
                        name: name.to_owned(),
                        kind: match dependency["kind"].as_str() {
                            Some("dev") => Kind::Dev,
                            Some("build") => Kind::Build,
                            _ => Kind::Normal,
                        },
                        internal: dependency.get("path").is_some_and(Value::is_string)
                            && names.contains(&name),
                    }
                })
                .collect();
            Member {
                name: package["name"].as_str().expect("name").to_owned(),
                role: role_of(&root, dir),
                dependencies,
                src: source_dir(package),
            }
        })
        .collect()
}

/// The role of the crate whose manifest is in `dir`.
pub fn role_of(root: &Path, dir: &Path) -> Option<Role> {
    let relative = dir.strip_prefix(root).ok()?;
    let parts: Vec<&str> = relative
        .components()
        .filter_map(|component| component.as_os_str().to_str())
        .collect();
    match parts.as_slice() {
        ["proto"] => Some(Role::Proto),
        ["edge"] => Some(Role::Edge),
        ["services", "runtime"] => Some(Role::Runtime),
        ["services", "clawgate"] => Some(Role::Binary),
        ["services", _] => Some(Role::Service),
        ["tests"] => Some(Role::Tests),
        ["tests", "kit"] => Some(Role::Kit),
        _ => None,
    }
}

fn source_dir(package: &Value) -> Option<PathBuf> {
    let targets = package["targets"].as_array()?;
    let of_kind = |wanted: &str| {
        targets.iter().find(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == wanted))
        })
    };
    let target = of_kind("lib").or_else(|| of_kind("bin"))?;
    let root = PathBuf::from(target["src_path"].as_str()?);
    root.parent().map(Path::to_path_buf)
}
