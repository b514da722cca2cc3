//! The `exec` tool: runs a shell command for the model, in the run's user's
//! own directory, after an [`ExecGate`] allowed it — or, with `host: "node"`
//! (a runner with nodes only), on one of the user's nodes ([`exec_node`]).
//!
//! This module owns the tool's arguments, where a command may start and how
//! its outcome reads to the model; running the process (scrubbed environment,
//! process group, timeout, output cap) is [`process`]. The policy and the
//! human approval are behind [`ExecGate`], implemented elsewhere; the runner
//! adds the tool with its real gate (it is not in
//! [`ToolSet::builtin`](super::ToolSet::builtin)).
//!
//! Invariants:
//! - Per-user isolation: a user's root is `<workspace>/<tenant_id>/<user_id>`
//!   (created on first use, with the workspace itself if it is missing), so
//!   no two users share a directory. Ids that are not a single plain path
//!   component (empty, `.`, `..`, with `/`) are refused.
//! - A command starts in its user's root, or in a `workdir` resolved against
//!   it: canonicalized, an existing directory, inside the root (`..` escapes,
//!   absolute paths elsewhere and symlinks pointing out are refused). This
//!   confines where a command starts, not what it does: a shell can `cd`
//!   anywhere the runner's OS user can; what may run is the gate's call.
//! - The gate is asked before anything is spawned, with the exact request
//!   that will run (command, canonical cwd, timeout in ms); a denial is an
//!   error output and nothing runs.
//! - The result is a JSON object that fits [`MAX_OUTPUT_BYTES`] whole (the
//!   command's output is cut to make it fit, with `truncated` set), so the
//!   generic cut of tool outputs never breaks it.
//! - `host` is `gateway` unless the call says `node` (or names a `node`);
//!   a node call never touches the gateway's workspace.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::Principal;
use serde_json::{Value, json};

use super::exec_gate::outcome_json;
pub use super::exec_gate::{ExecGate, ExecRequest, GateDecision};
use super::exec_node::{self, Host, NodeCall};
use super::process::{self, CommandSpec, ProcessLimits};
use super::{MAX_OUTPUT_BYTES, Tool, ToolContext, ToolOutput};
use crate::nodes::Nodes;
use crate::provider::ToolSpec;

/// Longest command accepted (bytes).
pub const MAX_COMMAND_BYTES: usize = 8 * 1024;
/// Time a command gets when the call names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time a call may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Where and how long commands run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// Root every cwd must stay inside; each user gets
    /// `<workspace>/<tenant_id>/<user_id>` of it.
    pub workspace: PathBuf,
    /// Time of a call without `timeout` (capped at `max_timeout`).
    pub default_timeout: Duration,
    /// Longest time a call may ask for; longer asks are capped.
    pub max_timeout: Duration,
    /// Output of a command kept (bytes).
    pub max_output_bytes: usize,
}

impl ExecConfig {
    /// The defaults (60 s, at most 10 min, [`MAX_OUTPUT_BYTES`]) under `workspace`.
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            default_timeout: DEFAULT_TIMEOUT,
            max_timeout: MAX_TIMEOUT,
            max_output_bytes: MAX_OUTPUT_BYTES,
        }
    }
}

/// The `exec` tool.
pub struct ExecTool {
    config: ExecConfig,
    gate: Arc<dyn ExecGate>,
    /// Set: calls may run on the user's nodes (`host: "node"`).
    nodes: Option<Arc<Nodes>>,
}

/// A call's arguments, checked.
struct Parsed {
    command: String,
    workdir: Option<String>,
    timeout_ms: u64,
    host: Host,
}

impl ExecTool {
    pub fn new(config: ExecConfig, gate: Arc<dyn ExecGate>) -> Self {
        Self {
            config,
            gate,
            nodes: None,
        }
    }

    /// This tool, also able to run commands on the user's nodes.
    pub(crate) fn with_nodes(mut self, nodes: Arc<Nodes>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// The call's command, workdir, timeout and host, checked.
    fn parse(&self, arguments: &Value) -> Result<Parsed, ToolOutput> {
        let command = match arguments.get("command") {
            Some(Value::String(command)) if !command.trim().is_empty() => command,
            _ => {
                return Err(ToolOutput::error(
                    "command is required (a non-empty string)",
                ));
            }
        };
        if command.len() > MAX_COMMAND_BYTES {
            return Err(ToolOutput::error(format!(
                "command is too long ({} bytes, at most {MAX_COMMAND_BYTES})",
                command.len()
            )));
        }
        if command.contains('\0') {
            return Err(ToolOutput::error("command must not contain NUL characters"));
        }
        let workdir = match arguments.get("workdir") {
            None | Some(Value::Null) => None,
            Some(Value::String(dir)) if dir.trim().is_empty() => None,
            Some(Value::String(dir)) if !dir.contains('\0') => Some(dir.clone()),
            Some(_) => return Err(ToolOutput::error("workdir must be a path (a string)")),
        };
        let max = self.config.max_timeout;
        let timeout = match arguments.get("timeout") {
            None | Some(Value::Null) => self.config.default_timeout.min(max),
            Some(value) => match value.as_f64() {
                Some(secs) if secs.is_finite() && secs > 0.0 => {
                    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
                }
                _ => {
                    return Err(ToolOutput::error(
                        "timeout must be a positive number of seconds",
                    ));
                }
            },
        };
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Parsed {
            command: command.clone(),
            workdir,
            timeout_ms,
            host: exec_node::host(arguments)?,
        })
    }

    /// The user's root, created if needed, canonical.
    async fn user_root(&self, principal: &Principal) -> Result<PathBuf, String> {
        for (what, id) in [
            ("tenant", &principal.tenant_id),
            ("user", &principal.user_id),
        ] {
            if !is_plain_component(id) {
                return Err(format!(
                    "exec is unavailable: the {what} id {id:?} cannot name a directory"
                ));
            }
        }
        // Creating the user's directory creates the workspace too, if needed.
        let root = self
            .config
            .workspace
            .join(&principal.tenant_id)
            .join(&principal.user_id);
        tokio::fs::create_dir_all(&root).await.map_err(|err| {
            tracing::warn!(root = %root.display(), %err, "the user's exec directory cannot be created");
            "exec is unavailable: the user's directory cannot be created".to_owned()
        })?;
        let workspace = tokio::fs::canonicalize(&self.config.workspace)
            .await
            .map_err(|_| "exec is unavailable: the workspace cannot be opened".to_owned())?;
        let root = tokio::fs::canonicalize(&root)
            .await
            .map_err(|_| "exec is unavailable: the user's directory cannot be opened".to_owned())?;
        if !root.starts_with(&workspace) {
            return Err(
                "exec is unavailable: the user's directory is outside the workspace".into(),
            );
        }
        Ok(root)
    }

    /// The directory a call starts in: `workdir` resolved against `root`,
    /// canonical, an existing directory inside `root`.
    async fn resolve_cwd(&self, root: &Path, workdir: Option<&str>) -> Result<PathBuf, String> {
        let Some(workdir) = workdir else {
            return Ok(root.to_path_buf());
        };
        let outside = || format!("workdir {workdir:?} is outside the user's workspace");
        // Refuse lexical escapes before touching the file system, so paths
        // outside cannot be probed for existence.
        let candidate = root.join(workdir);
        if !lexically_normal(&candidate).starts_with(root) {
            return Err(outside());
        }
        let cwd = tokio::fs::canonicalize(&candidate)
            .await
            .map_err(|_| format!("workdir {workdir:?} does not exist"))?;
        // A symlink on the way may point out.
        if !cwd.starts_with(root) {
            return Err(outside());
        }
        match tokio::fs::metadata(&cwd).await {
            Ok(meta) if meta.is_dir() => Ok(cwd),
            _ => Err(format!("workdir {workdir:?} is not a directory")),
        }
    }
}

/// Whether `id` is one plain path component.
fn is_plain_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && id.len() <= 255 && !id.contains(['/', '\\', '\0'])
}

/// `path` with `.` and `..` applied by text alone.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[async_trait]
impl Tool for ExecTool {
    fn spec(&self) -> ToolSpec {
        let mut spec = ToolSpec {
            name: "exec".to_owned(),
            description: format!(
                "Runs a shell command (/bin/sh -c) in the user's own workspace directory and \
                returns its exit code and output (stdout and stderr together, at most {} KiB). \
                Each command may need approval first. The environment is minimal (PATH, HOME \
                = the working directory, LANG), stdin is empty, the command is killed at its \
                timeout (default {} s, at most {} s), and background processes do not outlive it.",
                self.config.max_output_bytes / 1024,
                self.config.default_timeout.as_secs(),
                self.config.max_timeout.as_secs(),
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "minLength": 1, "maxLength": MAX_COMMAND_BYTES,
                        "description": "The shell command to run."},
                    "workdir": {"type": "string",
                        "description": "Directory to run in, relative to the workspace \
                            (or absolute inside it); the workspace root by default."},
                    "timeout": {"type": "number", "exclusiveMinimum": 0,
                        "maximum": self.config.max_timeout.as_secs_f64(),
                        "description": "Seconds before the command is killed."},
                },
                "required": ["command"],
                "additionalProperties": false,
            }),
        };
        if self.nodes.is_some() {
            exec_node::extend_spec(&mut spec);
        }
        spec
    }

    fn on_by_default(&self) -> bool {
        true
    }

    fn needs_approval(&self) -> bool {
        true
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput {
        let Parsed {
            command,
            workdir,
            timeout_ms,
            host,
        } = match self.parse(&arguments) {
            Ok(parsed) => parsed,
            Err(output) => return output,
        };
        if let Host::Node(node) = host {
            let Some(nodes) = &self.nodes else {
                return ToolOutput::error(
                    "exec on a node is unavailable: this runner has no nodes",
                );
            };
            let call = NodeCall {
                command,
                cwd: workdir,
                timeout_ms,
                node,
            };
            let max = self.config.max_output_bytes;
            return exec_node::run(nodes, self.gate.as_ref(), context, call, max).await;
        }
        let cwd = match self.user_root(&context.principal).await {
            Ok(root) => match self.resolve_cwd(&root, workdir.as_deref()).await {
                Ok(cwd) => cwd,
                Err(message) => return ToolOutput::error(message),
            },
            Err(message) => return ToolOutput::error(message),
        };
        let Some(cwd_text) = cwd.to_str().map(str::to_owned) else {
            return ToolOutput::error("the working directory is not valid UTF-8");
        };
        let request = ExecRequest {
            command,
            cwd: cwd_text,
            timeout_ms,
        };
        if let GateDecision::Deny(reason) = self.gate.check(context, &request).await {
            tracing::info!(run_id = %context.run_id, agent_id = %context.agent_id,
                cwd = %request.cwd, %reason, "exec denied");
            return ToolOutput::error(format!("exec denied: {reason}"));
        }
        let spec = CommandSpec {
            command: request.command,
            cwd,
            env: Vec::new(),
        };
        let limits = ProcessLimits {
            timeout: Duration::from_millis(request.timeout_ms),
            max_output_bytes: self.config.max_output_bytes,
        };
        let outcome = match process::run(&spec, &limits).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(run_id = %context.run_id, cwd = %request.cwd, %err,
                    "exec could not start");
                return ToolOutput::error(format!("the command could not be started: {err}"));
            }
        };
        tracing::info!(
            run_id = %context.run_id,
            agent_id = %context.agent_id,
            cwd = %request.cwd,
            exit_code = ?outcome.exit_code,
            signal = ?outcome.signal,
            timed_out = outcome.timed_out,
            truncated = outcome.truncated,
            duration_ms = outcome.duration.as_millis() as u64,
            "exec finished"
        );
        let failed = outcome.exit_code != Some(0) || outcome.timed_out;
        let content = outcome_json(&outcome, json!(request.cwd), serde_json::Map::new());
        if failed {
            ToolOutput::error(content)
        } else {
            ToolOutput::ok(content)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::process::ProcessOutcome;

    #[test]
    fn lexical_normalization_applies_dots() {
        let root = Path::new("/ws/t/u");
        assert_eq!(
            lexically_normal(&root.join("a/./b/..")),
            Path::new("/ws/t/u/a")
        );
        assert!(!lexically_normal(&root.join("../../x")).starts_with(root));
        assert_eq!(lexically_normal(Path::new("/../..")), Path::new("/"));
    }

    #[test]
    fn ids_must_be_plain_components() {
        assert!(is_plain_component("alice"));
        assert!(is_plain_component("0190-abc"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert!(!is_plain_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_json_fits_the_output_limit() {
        let outcome = ProcessOutcome {
            exit_code: Some(0),
            signal: None,
            // Quotes double in JSON: this would be twice the limit.
            output: "\"".repeat(MAX_OUTPUT_BYTES),
            truncated: false,
            timed_out: false,
            duration: Duration::from_millis(5),
        };
        let text = outcome_json(&outcome, json!("/ws/t/u"), serde_json::Map::new());
        assert!(text.len() <= MAX_OUTPUT_BYTES, "{}", text.len());
        let value: Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(value["truncated"], true);
        assert!(value.get("signal").is_none());
        let short = outcome_json(
            &ProcessOutcome {
                output: "hi".into(),
                signal: Some(9),
                exit_code: None,
                ..outcome
            },
            json!("/ws"),
            serde_json::Map::new(),
        );
        let value: Value = serde_json::from_str(&short).expect("valid json");
        assert_eq!(value["output"], "hi");
        assert_eq!(value["truncated"], false);
        assert_eq!(value["signal"], 9);
        assert_eq!(value["exitCode"], Value::Null);
    }
}
