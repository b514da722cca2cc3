//! What decides whether an `exec` call runs, shared by exec on the gateway
//! (`super::exec`) and on a node (`super::exec_node`): the requests an
//! approver sees ([`ExecRequest`], [`NodeExecRequest`]), the gate's decision
//! and the gate itself ([`ExecGate`]), and the output the model reads of a
//! finished command (`outcome_json`).
//!
//! Invariant: knows neither how a command runs nor where; both exec modules
//! depend on it, it on neither.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::process::ProcessOutcome;
use super::{MAX_OUTPUT_BYTES, ToolContext};

/// What an exec call asks to run, as an approver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: String,
    /// The canonical absolute directory the command starts in.
    pub cwd: String,
    /// The timeout the command will run with, in milliseconds.
    pub timeout_ms: u64,
}

/// What the gate decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateDecision {
    /// May run (allowlisted, or `allow-once`).
    Allow,
    /// May run, and the approver allowed it always (`allow-always`; a node
    /// is told so, and may remember it in its own policy).
    AllowAlways,
    /// Why, shown to the model.
    Deny(String),
}

/// Decides whether an exec call may run (policy, then a human approval).
#[async_trait]
pub trait ExecGate: Send + Sync + 'static {
    async fn check(&self, context: &ToolContext, request: &ExecRequest) -> GateDecision;

    /// Decides an exec call on a node; a gate that does not know nodes
    /// refuses them.
    async fn check_node(&self, _context: &ToolContext, _request: &NodeExecRequest) -> GateDecision {
        GateDecision::Deny("exec on a node is not available here".to_owned())
    }
}

/// What an exec call on a node asks to run, as the gate (and an approver)
/// sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeExecRequest {
    pub node_id: String,
    /// The command line (`/bin/sh -c`).
    pub command: String,
    /// The directory the call named (on the node), if any.
    pub cwd: Option<String>,
    /// The timeout the node runs it with, in milliseconds.
    pub timeout_ms: u64,
    /// The `systemRunPlan` (JSON object text).
    pub plan_json: String,
}

/// The outcome as the model reads it (with `extra` fields), cut to fit
/// [`MAX_OUTPUT_BYTES`].
pub(crate) fn outcome_json(
    outcome: &ProcessOutcome,
    cwd: Value,
    extra: serde_json::Map<String, Value>,
) -> String {
    let mut output = outcome.output.clone();
    let mut truncated = outcome.truncated;
    loop {
        let mut value = json!({
            "exitCode": outcome.exit_code,
            "output": output,
            "timedOut": outcome.timed_out,
            "truncated": truncated,
            "durationMs": u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            "cwd": cwd.clone(),
        });
        if let Some(signal) = outcome.signal {
            value["signal"] = json!(signal);
        }
        for (key, field) in &extra {
            value[key] = field.clone();
        }
        let text = value.to_string();
        if text.len() <= MAX_OUTPUT_BYTES || output.is_empty() {
            return text;
        }
        // Each byte cut from the output shortens the JSON by at least one.
        let mut end = output.len().saturating_sub(text.len() - MAX_OUTPUT_BYTES);
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
        truncated = true;
    }
}
