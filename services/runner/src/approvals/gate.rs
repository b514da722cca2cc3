//! The approval gate of the `exec` tool: a command on its agent's exec
//! allowlist runs; any other waits for a human decision ([`Approvals::ask`]).
//! A command on a node always waits for one (host `node`, with the node and
//! its `systemRunPlan`): the agent's allowlist is the gateway's.
//!
//! Invariant: only the allowlist (exact command line, gateway only),
//! `allow-once` and `allow-always` let a command run; a
//! denial, an expiry, an abort or a store failure refuses it, with a reason
//! the model reads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::session::{GetAgentRequest, SessionApi as _};

use super::{ALLOW_ALWAYS, ALLOW_ONCE, ApprovalAsk, Approvals, DENY, EXPIRED, HOST_NODE};
use crate::tools::ToolContext;
use crate::tools::exec::{ExecGate, ExecRequest, GateDecision};
use crate::tools::exec_node::NodeExecRequest;

/// Asks the tenant's approvers about every exec call.
pub struct ApprovalGate {
    approvals: Arc<Approvals>,
    timeout: Duration,
}

impl ApprovalGate {
    /// A gate whose approvals expire after `timeout`.
    pub fn new(approvals: Arc<Approvals>, timeout: Duration) -> Self {
        Self { approvals, timeout }
    }

    /// Asks for `ask` and maps the decision.
    async fn decide(&self, ask: ApprovalAsk) -> GateDecision {
        let approval = match self.approvals.ask(ask).await {
            Ok(approval) => approval,
            Err(err) => {
                tracing::warn!(error = %err, "exec approval failed");
                return GateDecision::Deny(format!(
                    "the approval could not be asked: {}",
                    err.message
                ));
            }
        };
        tracing::info!(
            approval_id = %approval.id,
            decision = %approval.decision,
            host = %approval.host,
            "exec approval decided"
        );
        match approval.decision.as_str() {
            ALLOW_ONCE => GateDecision::Allow,
            ALLOW_ALWAYS => GateDecision::AllowAlways,
            DENY => GateDecision::Deny(format!("denied by {}", approval.resolved_by)),
            EXPIRED => GateDecision::Deny(
                "the approval expired without an answer (no approver answered)".to_owned(),
            ),
            other => GateDecision::Deny(format!("unexpected decision {other:?}")),
        }
    }

    fn ask(&self, context: &ToolContext, command: &str, cwd: &str) -> ApprovalAsk {
        ApprovalAsk {
            tenant_id: context.principal.tenant_id.clone(),
            user_id: context.principal.user_id.clone(),
            agent_id: context.agent_id.clone(),
            session_key: context.session_key.clone(),
            run_id: context.run_id.clone(),
            command: command.to_owned(),
            cwd: cwd.to_owned(),
            timeout: self.timeout,
            ..ApprovalAsk::default()
        }
    }
}

#[async_trait]
impl ExecGate for ApprovalGate {
    async fn check(&self, context: &ToolContext, request: &ExecRequest) -> GateDecision {
        // A command an approver allowed always runs without asking.
        let agent = context
            .session
            .get_agent(
                &context.principal,
                GetAgentRequest {
                    agent_id: context.agent_id.clone(),
                },
            )
            .await;
        match agent {
            Ok(agent) if agent.exec_allowlist.contains(&request.command) => {
                tracing::info!(agent = %context.agent_id, "exec allowlisted; no approval asked");
                return GateDecision::Allow;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "agent allowlist unavailable; asking"),
        }
        // On the gateway either allowance lets it run.
        match self
            .decide(self.ask(context, &request.command, &request.cwd))
            .await
        {
            GateDecision::AllowAlways => GateDecision::Allow,
            decision => decision,
        }
    }

    async fn check_node(&self, context: &ToolContext, request: &NodeExecRequest) -> GateDecision {
        // Never the agent's allowlist: it names what the gateway may run.
        let ask = ApprovalAsk {
            host: HOST_NODE.to_owned(),
            node_id: request.node_id.clone(),
            system_run_plan_json: request.plan_json.clone(),
            ..self.ask(
                context,
                &request.command,
                request.cwd.as_deref().unwrap_or_default(),
            )
        };
        self.decide(ask).await
    }
}
