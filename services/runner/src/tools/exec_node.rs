//! `exec` with `host: "node"`: the command runs on one of the run's user's
//! nodes (`system.run`), after the same approval gate as on the gateway.
//!
//! What it owns: picking the node (the one named by id or name, or the only
//! live node of the user that may run `system.run`), the `systemRunPlan`
//! an approver is shown (`{argv: ["/bin/sh","-c",<command>], cwd, commandText,
//! commandPreview, agentId, sessionKey}`), the `system.run` params sent once
//! approved, and how the node's answer (`{exitCode, stdout, stderr, timedOut,
//! success, error?}`) reads to the model: the gateway exec's JSON shape
//! (`exitCode`, `output` = stdout then stderr, `timedOut`, `truncated`,
//! `durationMs`, `cwd`) plus `host: "node"` and `node`.
//!
//! Invariants:
//! - nothing reaches the node before the gate allowed it
//!   ([`ExecGate::check_node`]); a denial or an expiry is the gateway's
//!   `exec denied: …` output;
//! - an `allow-always` for a node command is passed to the node
//!   (`approvalDecision`) and is never added to the agent's gateway exec
//!   allowlist (see `crate::approvals`), so it never lets the gateway run
//!   the command unasked; and the gateway allowlist never lets a node command
//!   run unasked;
//! - only live nodes of the run's own user are candidates, and the call names
//!   that user as the owner;
//! - the output fits [`super::MAX_OUTPUT_BYTES`] whole, as the gateway's does.

use std::time::Duration;

use clawgate_runtime::nodes::NodeRecord;
use clawgate_runtime::nodes::invoker::InvokeCall;
use serde_json::{Map, Value, json};

pub use super::exec_gate::NodeExecRequest;
use super::exec_gate::{ExecGate, GateDecision, outcome_json};
use super::process::ProcessOutcome;
use super::{ToolContext, ToolOutput};
use crate::approvals::{ALLOW_ALWAYS, ALLOW_ONCE};
use crate::nodes::{Nodes, label, pick};
use crate::provider::ToolSpec;

/// The node command that runs programs.
pub const RUN_COMMAND: &str = "system.run";
/// How long past the command's own timeout the node's answer is awaited.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(10);
/// Characters of the command an approver sees as its preview.
pub const PREVIEW_CHARS: usize = 80;

/// Where an exec call runs.
pub(crate) enum Host {
    Gateway,
    /// The node named (id or name), if any.
    Node(Option<String>),
}

/// Where the call runs: `host` (`gateway` | `node`; absent: `node` when a
/// `node` is named, else `gateway`).
pub(crate) fn host(arguments: &Value) -> Result<Host, ToolOutput> {
    let node = match arguments.get("node") {
        None | Some(Value::Null) => None,
        Some(Value::String(node)) if node.trim().is_empty() => None,
        Some(Value::String(node)) => Some(node.trim().to_owned()),
        Some(_) => {
            return Err(ToolOutput::error(
                "node must be a node id or name (a string)",
            ));
        }
    };
    match arguments.get("host") {
        None | Some(Value::Null) if node.is_some() => Ok(Host::Node(node)),
        None | Some(Value::Null) => Ok(Host::Gateway),
        Some(Value::String(host)) if host == "node" => Ok(Host::Node(node)),
        Some(Value::String(host)) if host == "gateway" && node.is_none() => Ok(Host::Gateway),
        Some(Value::String(host)) if host == "gateway" => Err(ToolOutput::error(
            "node is only for host \"node\" (leave it out to run on the gateway)",
        )),
        Some(_) => Err(ToolOutput::error("host must be \"gateway\" or \"node\"")),
    }
}

/// The `exec` spec of a runner with nodes: `host` and `node` arguments.
pub(crate) fn extend_spec(spec: &mut ToolSpec) {
    spec.description.push_str(
        " With host \"node\" it runs on one of the user's connected nodes instead \
        (`node`: its id or name; required when several may run commands), with that \
        node's own environment; workdir is then a directory on the node.",
    );
    let properties = &mut spec.parameters["properties"];
    properties["host"] = json!({"type": "string", "enum": ["gateway", "node"],
        "description": "Where to run: the gateway (the default) or a node."});
    properties["node"] = json!({"type": "string",
        "description": "With host \"node\": the node's id or display name."});
}

/// The `systemRunPlan` of `command`.
pub fn system_run_plan(command: &str, cwd: Option<&str>, context: &ToolContext) -> Value {
    json!({
        "argv": argv(command),
        "cwd": cwd,
        "commandText": command,
        "commandPreview": command.chars().take(PREVIEW_CHARS).collect::<String>(),
        "agentId": context.agent_id,
        "sessionKey": context.session_key,
    })
}

fn argv(command: &str) -> Value {
    json!(["/bin/sh", "-c", command])
}

/// The node of the user's `live` nodes that `wanted` names (or the only one
/// that may run `system.run`), or why none.
fn target<'a>(live: &'a [NodeRecord], wanted: Option<&str>) -> Result<&'a NodeRecord, String> {
    let candidates: Vec<&NodeRecord> = live.iter().filter(|n| n.allows(RUN_COMMAND)).collect();
    match pick(&candidates, wanted, RUN_COMMAND) {
        Ok(node) => Ok(node),
        Err(why) => {
            // Named, connected, but its pairing did not approve system.run.
            let all: Vec<&NodeRecord> = live.iter().collect();
            match wanted.map(|w| pick(&all, Some(w), RUN_COMMAND)) {
                Some(Ok(node)) => Err(format!(
                    "node {} may not run {RUN_COMMAND} (its pairing did not approve it)",
                    label(node)
                )),
                _ => Err(why),
            }
        }
    }
}

/// An exec call for a node, as the model made it (checked).
pub(crate) struct NodeCall {
    pub command: String,
    pub cwd: Option<String>,
    pub timeout_ms: u64,
    /// The node it names (id or name), if any.
    pub node: Option<String>,
}

/// Runs `call` on a node of the run's user once `gate` allowed it.
pub(crate) async fn run(
    nodes: &Nodes,
    gate: &dyn ExecGate,
    context: &ToolContext,
    call: NodeCall,
    max_output_bytes: usize,
) -> ToolOutput {
    let NodeCall {
        command,
        cwd,
        timeout_ms,
        node: wanted,
    } = call;
    let principal = &context.principal;
    let live = match nodes.live(&principal.tenant_id, &principal.user_id).await {
        Ok(live) => live,
        Err(err) => {
            tracing::warn!(error = %err, "node registry unavailable for exec");
            return ToolOutput::error("exec on a node is unavailable: the nodes cannot be read");
        }
    };
    let node = match target(&live, wanted.as_deref()) {
        Ok(node) => node,
        Err(why) => return ToolOutput::error(why),
    };
    let plan = system_run_plan(&command, cwd.as_deref(), context);
    let request = NodeExecRequest {
        node_id: node.node_id.clone(),
        command,
        cwd,
        timeout_ms,
        plan_json: plan.to_string(),
    };
    let decision = match gate.check_node(context, &request).await {
        GateDecision::Allow => ALLOW_ONCE,
        GateDecision::AllowAlways => ALLOW_ALWAYS,
        GateDecision::Deny(reason) => {
            tracing::info!(run_id = %context.run_id, node_id = %request.node_id, %reason,
                "exec on a node denied");
            return ToolOutput::error(format!("exec denied: {reason}"));
        }
    };
    let mut params = json!({
        "command": argv(&request.command),
        "rawCommand": request.command,
        "timeoutMs": request.timeout_ms,
        "agentId": context.agent_id,
        "sessionKey": context.session_key,
        "approved": true,
        "approvalDecision": decision,
        "runId": context.run_id,
    });
    if let Some(cwd) = &request.cwd {
        params["cwd"] = json!(cwd);
    }
    let call = InvokeCall {
        tenant_id: principal.tenant_id.clone(),
        node_id: request.node_id.clone(),
        owner: Some(principal.user_id.clone()),
        command: RUN_COMMAND.to_owned(),
        params_json: params.to_string(),
        timeout: Duration::from_millis(request.timeout_ms).saturating_add(ANSWER_MARGIN),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    };
    let started = std::time::Instant::now();
    let answer = nodes.invoke(call).await;
    let duration = started.elapsed();
    match answer {
        Ok(invoked) => {
            let output = node_output(
                &invoked.payload_json,
                node,
                request.cwd.as_deref(),
                duration,
                max_output_bytes,
            );
            tracing::info!(run_id = %context.run_id, node_id = %request.node_id,
                is_error = output.is_error, duration_ms = duration.as_millis() as u64,
                "exec on a node finished");
            output
        }
        Err(err) => {
            tracing::info!(run_id = %context.run_id, node_id = %request.node_id, error = %err,
                "exec on a node failed");
            ToolOutput::error(format!("exec on node {} failed: {err}", label(node)))
        }
    }
}

/// The node's `system.run` answer as the model reads it.
fn node_output(
    payload_json: &str,
    node: &NodeRecord,
    cwd: Option<&str>,
    duration: Duration,
    max_output_bytes: usize,
) -> ToolOutput {
    let payload = match serde_json::from_str::<Value>(payload_json) {
        Ok(Value::Object(payload)) => payload,
        _ => {
            return ToolOutput::error(format!(
                "node {} answered {RUN_COMMAND} with something other than a result object",
                label(node)
            ));
        }
    };
    let text = |key: &str| payload.get(key).and_then(Value::as_str).unwrap_or_default();
    let flag = |key: &str| payload.get(key).and_then(Value::as_bool);
    let (stdout, stderr) = (text("stdout"), text("stderr"));
    let mut output = String::with_capacity(stdout.len() + stderr.len() + 1);
    output.push_str(stdout);
    if !stdout.is_empty() && !stderr.is_empty() && !stdout.ends_with('\n') {
        output.push('\n');
    }
    output.push_str(stderr);
    let mut truncated = flag("truncated").unwrap_or(false);
    if output.len() > max_output_bytes {
        let mut end = max_output_bytes;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
        truncated = true;
    }
    let exit_code = payload
        .get("exitCode")
        .and_then(Value::as_i64)
        .and_then(|code| i32::try_from(code).ok());
    let timed_out = flag("timedOut").unwrap_or(false);
    let outcome = ProcessOutcome {
        exit_code,
        signal: None,
        output,
        truncated,
        timed_out,
        duration,
    };
    let mut extra = Map::new();
    extra.insert("host".into(), json!("node"));
    extra.insert("node".into(), json!(node.node_id));
    if let Some(error) = payload
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        extra.insert(
            "error".into(),
            json!(error.chars().take(1024).collect::<String>()),
        );
    }
    let failed = exit_code != Some(0) || timed_out || flag("success") == Some(false);
    let content = outcome_json(&outcome, json!(cwd), extra);
    if failed {
        ToolOutput::error(content)
    } else {
        ToolOutput::ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeRecord {
        NodeRecord {
            node_id: "n1".into(),
            display_name: "Mac".into(),
            ..NodeRecord::default()
        }
    }

    #[test]
    fn the_host_is_the_gateway_unless_a_node_is_asked_for() {
        let host_of = |arguments: Value| host(&arguments).map_err(|output| output.content);
        assert!(matches!(host_of(json!({})), Ok(Host::Gateway)));
        assert!(matches!(
            host_of(json!({"host": "gateway"})),
            Ok(Host::Gateway)
        ));
        assert!(matches!(
            host_of(json!({"host": "node"})),
            Ok(Host::Node(None))
        ));
        assert!(matches!(host_of(json!({"node": " Mac "})), Ok(Host::Node(Some(n))) if n == "Mac"));
        assert!(matches!(
            host_of(json!({"host": "node", "node": ""})),
            Ok(Host::Node(None))
        ));
        for bad in [
            json!({"host": "gateway", "node": "Mac"}),
            json!({"host": "sandbox"}),
            json!({"host": 1}),
            json!({"node": 5}),
        ] {
            assert!(host_of(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_answer_reads_like_the_gateway_exec() {
        let payload = json!({"exitCode": 0, "stdout": "out", "stderr": "err\n",
            "timedOut": false, "success": true});
        let output = node_output(
            &payload.to_string(),
            &node(),
            Some("/tmp"),
            Duration::from_millis(7),
            1024,
        );
        assert!(!output.is_error, "{output:?}");
        let value: Value = serde_json::from_str(&output.content).expect("json");
        assert_eq!(value["exitCode"], 0);
        assert_eq!(value["output"], "out\nerr\n");
        assert_eq!(value["cwd"], "/tmp");
        assert_eq!(value["host"], "node");
        assert_eq!(value["node"], "n1");
        assert_eq!(value["durationMs"], 7);

        let failed = json!({"exitCode": 2, "stdout": "x".repeat(50), "success": false,
            "error": "boom"});
        let output = node_output(&failed.to_string(), &node(), None, Duration::ZERO, 10);
        assert!(output.is_error);
        let value: Value = serde_json::from_str(&output.content).expect("json");
        assert_eq!(value["output"], "x".repeat(10));
        assert_eq!(value["truncated"], true);
        assert_eq!(value["cwd"], Value::Null);
        assert_eq!(value["error"], "boom");

        assert!(node_output("[1]", &node(), None, Duration::ZERO, 10).is_error);
    }
}
