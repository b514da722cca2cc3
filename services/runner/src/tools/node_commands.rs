//! Node commands as tools, built per run: one `node_<command>` tool for each
//! distinct command that the run's user's live nodes may run (e.g.
//! `camera.snap` → `node_camera_snap`), calling it on one of those nodes.
//!
//! What it owns: which commands become tools ([`offered`]), their names
//! ([`tool_name`]), their specs (naming the command, the nodes offering it
//! and their declared permissions) and the call (`node` picks the node, by id
//! or name; `params` are passed through as the command's params).
//!
//! **Allowlist**: an agent without a tool allowlist has every node tool; an
//! agent with one has them all when it lists [`NODES_ENTRY`] (`"nodes"`),
//! else only the `node_*` tools it names. `exec` on a node is the `exec`
//! tool's own (`host: "node"`), never a node tool.
//!
//! Invariants:
//! - the nodes are read once per run, when it starts (one registry `list`),
//!   and only when the agent may have a node tool;
//! - only live nodes of the run's own user are offered and callable; every
//!   call names that user as the owner ([`InvokeCall::owner`]);
//! - exec commands ([`EXEC_COMMANDS`]) and the node's approval policy
//!   (`system.execApprovals.*`) are never tools;
//! - a call waits at most the runner's node timeout, bounded by the run's
//!   deadline; each call has a fresh idempotency key; every failure is an
//!   error output the model reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::Principal;
use clawgate_runtime::nodes::invoker::InvokeCall;
use clawgate_runtime::nodes::{EXEC_COMMANDS, FORBIDDEN_PREFIXES, NodeRecord};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{AgentTools, Tool, ToolContext, ToolOutput};
use crate::nodes::{Nodes, label, pick};
use crate::provider::ToolSpec;

/// The allowlist entry that gives an agent every node tool.
pub const NODES_ENTRY: &str = "nodes";
/// Prefix of every node tool's name.
pub const PREFIX: &str = "node_";
/// Longest tool name (as providers accept them).
const MAX_NAME: usize = 64;
/// Most node tools one run is offered.
const MAX_TOOLS: usize = 64;
/// Most nodes one tool's description lists.
const MAX_LISTED: usize = 8;
/// Most permissions listed per node.
const MAX_PERMISSIONS: usize = 16;

/// The tool name of `command`: `node_` and the command with every character
/// other than `[a-zA-Z0-9_]` replaced by `_`, at most 64 characters.
pub fn tool_name(command: &str) -> String {
    let mut name = String::from(PREFIX);
    name.extend(command.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name.truncate(MAX_NAME);
    name
}

/// Whether `command` may become a tool (not an exec command, not the node's
/// approval policy, not empty).
pub fn offered(command: &str) -> bool {
    !command.trim().is_empty()
        && !EXEC_COMMANDS.contains(&command)
        && !FORBIDDEN_PREFIXES.iter().any(|p| command.starts_with(p))
}

/// Which node tools an agent with `allowlist` has.
enum Wanted<'a> {
    All,
    Named(&'a [String]),
    None,
}

fn wanted(allowlist: &[String]) -> Wanted<'_> {
    if allowlist.is_empty() || allowlist.iter().any(|entry| entry == NODES_ENTRY) {
        Wanted::All
    } else if allowlist.iter().any(|entry| entry.starts_with(PREFIX)) {
        Wanted::Named(allowlist)
    } else {
        Wanted::None
    }
}

/// Adds to `tools` the node tools of a run of `principal` whose agent has
/// `allowlist`, calls bounded by `timeout` and `deadline`. A registry failure
/// is logged and offers none (the run goes on without them).
pub(crate) async fn offer(
    tools: &mut AgentTools,
    nodes: &Arc<Nodes>,
    principal: &Principal,
    allowlist: &[String],
    timeout: Duration,
    deadline: Instant,
) {
    let wanted = wanted(allowlist);
    if matches!(wanted, Wanted::None) {
        return;
    }
    let live = match nodes.live(&principal.tenant_id, &principal.user_id).await {
        Ok(live) => live,
        Err(err) => {
            tracing::warn!(error = %err, "node registry unavailable; the run has no node tools");
            return;
        }
    };
    // Commands in order, with the nodes that may run them.
    let mut commands: BTreeMap<&str, Vec<&NodeRecord>> = BTreeMap::new();
    for node in &live {
        for command in &node.allowed_commands {
            if offered(command) && node.allows(command) {
                commands.entry(command).or_default().push(node);
            }
        }
    }
    let mut added = 0;
    for (command, offering) in commands {
        let name = tool_name(command);
        if let Wanted::Named(names) = wanted
            && !names.contains(&name)
        {
            continue;
        }
        if added >= MAX_TOOLS {
            tracing::debug!(command, "too many node commands; the rest are not offered");
            break;
        }
        let tool = NodeCommand {
            name,
            command: command.to_owned(),
            nodes: offering.into_iter().cloned().collect(),
            access: nodes.clone(),
            timeout,
            deadline,
        };
        // A name taken (another command with the same name, or a runner
        // tool) keeps its first owner.
        if tools.add(Arc::new(tool)) {
            added += 1;
        } else {
            tracing::debug!(command, "a node command's tool name is taken; not offered");
        }
    }
}

/// One node command, for one run.
struct NodeCommand {
    name: String,
    command: String,
    /// The run's user's live nodes that may run it (when the run started).
    nodes: Vec<NodeRecord>,
    access: Arc<Nodes>,
    timeout: Duration,
    deadline: Instant,
}

/// `name=value` of a node's declared permissions.
fn permissions(node: &NodeRecord) -> String {
    let mut listed: Vec<String> = node
        .permissions
        .iter()
        .take(MAX_PERMISSIONS)
        .map(|(name, value)| {
            let name: String = name.chars().take(64).collect();
            match value {
                Value::Bool(allowed) => format!("{name}={allowed}"),
                other => format!(
                    "{name}={}",
                    other.to_string().chars().take(32).collect::<String>()
                ),
            }
        })
        .collect();
    listed.sort();
    if node.permissions.len() > MAX_PERMISSIONS {
        listed.push("…".to_owned());
    }
    listed.join(", ")
}

impl NodeCommand {
    fn description(&self) -> String {
        let mut listed: Vec<String> = self
            .nodes
            .iter()
            .take(MAX_LISTED)
            .map(|node| match permissions(node) {
                perms if perms.is_empty() => label(node),
                perms => format!("{} (permissions: {perms})", label(node)),
            })
            .collect();
        if self.nodes.len() > MAX_LISTED {
            listed.push(format!("and {} more", self.nodes.len() - MAX_LISTED));
        }
        let which = if self.nodes.len() > 1 {
            "Name the node with `node` (its id or name): several offer this command."
        } else {
            "`node` may be left out: one node offers this command."
        };
        format!(
            "Runs the node command `{}` on one of the user's own connected devices \
            (nodes) and returns the node's JSON answer. Offered by: {}. {which} \
            `params` is the command's parameters object.",
            self.command,
            listed.join("; "),
        )
    }
}

#[async_trait]
impl Tool for NodeCommand {
    fn spec(&self) -> ToolSpec {
        let mut parameters = json!({
            "type": "object",
            "properties": {
                "node": {"type": "string",
                    "description": "The node to run it on: its id or display name."},
                "params": {"type": "object",
                    "description": format!("Parameters of `{}`.", self.command)},
            },
            "additionalProperties": false,
        });
        if self.nodes.len() > 1 {
            parameters["required"] = json!(["node"]);
        }
        ToolSpec {
            name: self.name.clone(),
            description: self.description(),
            parameters,
        }
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput {
        let wanted = match arguments.get("node") {
            None | Some(Value::Null) => None,
            Some(Value::String(node)) => Some(node.as_str()),
            Some(_) => return ToolOutput::error("node must be a node id or name (a string)"),
        };
        let params_json = match arguments.get("params") {
            None | Some(Value::Null) => String::new(),
            Some(params @ Value::Object(_)) => params.to_string(),
            Some(_) => return ToolOutput::error("params must be a JSON object"),
        };
        let candidates: Vec<&NodeRecord> = self.nodes.iter().collect();
        let node = match pick(&candidates, wanted, &self.command) {
            Ok(node) => node,
            Err(why) => return ToolOutput::error(why),
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = self.timeout.min(left);
        if timeout.is_zero() {
            return ToolOutput::error("not run: the run has no time left");
        }
        let call = InvokeCall {
            tenant_id: context.principal.tenant_id.clone(),
            node_id: node.node_id.clone(),
            owner: Some(context.principal.user_id.clone()),
            command: self.command.clone(),
            params_json,
            timeout,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        };
        match self.access.invoke(call).await {
            Ok(invoked) if invoked.payload_json.trim().is_empty() => ToolOutput::ok("{}"),
            Ok(invoked) => ToolOutput::ok(invoked.payload_json),
            Err(err) => {
                tracing::info!(run_id = %context.run_id, node_id = %node.node_id,
                    command = %self.command, error = %err, "node command failed");
                ToolOutput::error(format!(
                    "{} on node {} failed: {err}",
                    self.command,
                    label(node)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_and_bounded() {
        assert_eq!(tool_name("camera.snap"), "node_camera_snap");
        assert_eq!(tool_name("screen.record-v2 ü"), "node_screen_record_v2__");
        assert_eq!(tool_name(&"x".repeat(100)).len(), 64);
        assert!(offered("camera.snap") && offered("location.get"));
        for reserved in [
            "system.run",
            "system.run.prepare",
            "system.which",
            "system.execApprovals.get",
            " ",
        ] {
            assert!(!offered(reserved), "{reserved}");
        }
    }

    #[test]
    fn the_allowlist_decides_which_node_tools_a_run_has() {
        assert!(matches!(wanted(&[]), Wanted::All));
        assert!(matches!(
            wanted(&["nodes".to_owned(), "exec".to_owned()]),
            Wanted::All
        ));
        assert!(matches!(
            wanted(&["node_camera_snap".to_owned()]),
            Wanted::Named(_)
        ));
        assert!(matches!(wanted(&["exec".to_owned()]), Wanted::None));
    }
}
