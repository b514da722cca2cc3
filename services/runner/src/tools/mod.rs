//! Tools an agent's model may call, and how a run executes them.
//!
//! A [`Tool`] has a [`ToolSpec`] (name, description, JSON Schema of its
//! arguments) and runs with a [`ToolContext`]: the run's user, narrowed to
//! that user's own rows (a tool never sees the tenant-wide view an admin's
//! socket has), and the run's session. A [`ToolSet`] holds the tools a runner
//! offers; an agent's allowlist picks from it (an empty allowlist: every tool
//! that is on by default). Built in: the session tools ([`sessions`]) and
//! the SSRF-guarded [`web_fetch`]; every runner adds [`sessions_send`] (it
//! starts runs through the runner) and, when configured, [`exec`] (each call
//! waits for a human approval, see `crate::approvals`; with nodes it may run
//! on one of the user's nodes, [`exec_node`]). A runner with nodes also adds
//! per run one tool per command its user's live nodes offer
//! ([`node_commands`]; allowlist entry `nodes`) to that run's [`AgentTools`].
//!
//! Invariants: a tool's output is bounded ([`MAX_OUTPUT_BYTES`], cut on a
//! character boundary with a note); arguments that are not a JSON object, and
//! calls of tools the agent does not have, become error results the model
//! sees, never a failed run; a tool runs until the run's deadline or abort at
//! most (the caller drops its future).

pub mod exec;
pub mod exec_gate;
pub mod exec_node;
pub mod node_commands;
pub mod process;
pub mod sessions;
pub mod sessions_send;
pub mod web_fetch;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use clawgate_proto::Principal;
use clawgate_proto::session::SessionClient;
use serde_json::Value;

use crate::provider::ToolSpec;

/// Longest tool output sent back to the model.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What a tool call may use.
#[derive(Clone)]
pub struct ToolContext {
    /// The run's user, without tenant-wide access.
    pub principal: Principal,
    pub session: SessionClient,
    /// The session the run belongs to.
    pub session_key: String,
    pub agent_id: String,
    pub run_id: String,
}

impl ToolContext {
    /// The run's principal narrowed to its own user's rows.
    pub fn narrowed(principal: &Principal) -> Principal {
        Principal {
            role: "operator".to_owned(),
            scopes: Vec::new(),
            ..principal.clone()
        }
    }
}

/// What a tool call produced, as the model will read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }

    /// A JSON value as the output.
    pub fn json(value: &Value) -> Self {
        Self::ok(value.to_string())
    }

    /// The output cut to [`MAX_OUTPUT_BYTES`].
    fn bounded(mut self) -> Self {
        if self.content.len() > MAX_OUTPUT_BYTES {
            let mut end = MAX_OUTPUT_BYTES;
            while !self.content.is_char_boundary(end) {
                end -= 1;
            }
            self.content.truncate(end);
            self.content.push_str("\n[output truncated]");
        }
        self
    }
}

/// A tool a model may call.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn spec(&self) -> ToolSpec;
    /// Whether an agent without a tool allowlist has it.
    fn on_by_default(&self) -> bool {
        true
    }
    /// Whether each call waits for a human approval.
    fn needs_approval(&self) -> bool {
        false
    }
    /// Runs the call; `arguments` is a JSON object.
    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput;
}

/// The tools a runner offers, by name.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolSet {
    /// The built-in tools.
    pub fn builtin() -> Self {
        Self::default()
            .with(Arc::new(sessions::SessionsList))
            .with(Arc::new(sessions::SessionsHistory))
            .with(Arc::new(web_fetch::WebFetch::default()))
    }

    /// Every tool of the set, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    /// This set with `tool` added (replacing one of its name).
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.insert(tool.spec().name, tool);
        self
    }

    /// The tools of an agent with `allowlist` (empty: those on by default).
    /// Names the runner does not have are left out.
    pub fn for_agent(&self, allowlist: &[String]) -> AgentTools {
        let tools = if allowlist.is_empty() {
            self.tools
                .iter()
                .filter(|(_, tool)| tool.on_by_default())
                .map(|(name, tool)| (name.clone(), tool.clone()))
                .collect()
        } else {
            allowlist
                .iter()
                .filter_map(|name| Some((name.clone(), self.tools.get(name)?.clone())))
                .collect()
        };
        AgentTools { tools }
    }
}

/// The tools one run may call.
#[derive(Clone, Default)]
pub struct AgentTools {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl AgentTools {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Whether the run may call `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// Adds `tool` for this run only, unless one of its name is there;
    /// returns whether it was added.
    pub(crate) fn add(&mut self, tool: Arc<dyn Tool>) -> bool {
        match self.tools.entry(tool.spec().name) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(tool);
                true
            }
        }
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|tool| tool.spec()).collect()
    }

    /// Runs call `name(arguments_json)`; every failure is an error output.
    pub async fn call(
        &self,
        context: &ToolContext,
        name: &str,
        arguments_json: &str,
    ) -> ToolOutput {
        let Some(tool) = self.tools.get(name) else {
            return ToolOutput::error(format!("unknown tool: {name}"));
        };
        let arguments = if arguments_json.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments_json) {
                Ok(value @ Value::Object(_)) => value,
                Ok(_) => return ToolOutput::error("the arguments must be a JSON object"),
                Err(err) => {
                    return ToolOutput::error(format!("the arguments are not valid JSON: {err}"));
                }
            }
        };
        tool.call(context, arguments).await.bounded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_OUTPUT_BYTES);
        let cut = ToolOutput::ok(long).bounded();
        assert!(cut.content.ends_with("\n[output truncated]"));
        assert!(cut.content.len() <= MAX_OUTPUT_BYTES + 20);
        assert_eq!(ToolOutput::ok("short").bounded().content, "short");
    }

    #[test]
    fn allowlists_pick_from_the_set() {
        let set = ToolSet::builtin();
        let names = |tools: &AgentTools| -> Vec<String> {
            tools.specs().into_iter().map(|spec| spec.name).collect()
        };
        assert_eq!(
            names(&set.for_agent(&[])),
            ["sessions_history", "sessions_list", "web_fetch"]
        );
        let only = set.for_agent(&["sessions_list".to_owned(), "nope".to_owned()]);
        assert_eq!(names(&only), ["sessions_list"]);
    }
}
