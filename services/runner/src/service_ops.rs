//! The runner's own operations behind its RPCs: shutdown (drain, then abort
//! what is left), aborting a run here or through the runner that owns it,
//! accepting a user turn (session ensured, turn written) before a run starts,
//! the tools of a run (the agent's, plus its user's node tools: one registry
//! read per run, only when the runner has nodes and the agent may use them),
//! and the runs in flight of given sessions (`ActiveRuns`).
//!
//! Invariant: an abort reaches the run wherever it runs, and waits (bounded
//! by `abort_wait`) for it to write its partial text.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clawgate_proto::runner::{ActiveRunsRequest, ActiveRunsResponse, RunState};
use clawgate_proto::session::{
    AppendMessageRequest, EnsureSessionRequest, MessageStatus, SessionApi as _,
};
use clawgate_proto::{Principal, ServiceError};
use futures_util::StreamExt as _;

use crate::provider::ModelProvider;
use crate::registry::RunEntry;
use crate::service::RunnerService;
use crate::tools::{AgentTools, node_commands};
use crate::validate::ValidStart;

impl RunnerService {
    /// Stops accepting runs (`UNAVAILABLE`, retryable), lets in-flight runs
    /// finish until `grace - shutdown_abort_margin`, then aborts the rest (stop
    /// reason "shutdown") and waits until `grace` for them to write their
    /// partial text, free their lease and publish their last event. Then stops
    /// the cluster loops. Call it on SIGTERM, before the process exits.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.tasks.close();
        let finish_window = grace.saturating_sub(self.inner.config.shutdown_abort_margin);
        let started = tokio::time::Instant::now();
        let finished = !finish_window.is_zero()
            && tokio::time::timeout(finish_window, self.inner.tasks.wait())
                .await
                .is_ok();
        if !finished {
            for entry in self.inner.registry.all_active().await {
                if let Some(control) = &entry.control {
                    control.abort("shutdown");
                }
            }
            let left = grace.saturating_sub(started.elapsed());
            if tokio::time::timeout(left, self.inner.tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("runs still ending after the shutdown grace period");
            }
        }
        self.inner.background.cancel();
    }

    pub(crate) fn provider(&self) -> Result<Arc<dyn ModelProvider>, ServiceError> {
        self.inner.provider.get()
    }

    /// Aborts `entry` — here, or through the runner that owns it — and waits
    /// (bounded) for it to persist its partial text. Returns whether the run
    /// ended aborted (it may have finished on its own).
    pub(crate) async fn abort_entry(
        &self,
        principal: &Principal,
        entry: &RunEntry,
        reason: &str,
    ) -> bool {
        let Some(control) = &entry.control else {
            return match (&self.inner.cluster, &entry.owner) {
                (Some(cluster), Some(owner)) if entry.running => {
                    let wait = self.inner.config.abort_wait;
                    cluster.forward_abort(entry, owner, reason, wait).await
                }
                _ => false,
            };
        };
        control.abort(reason);
        if !control.wait_ended(self.inner.config.abort_wait).await {
            return true;
        }
        match self
            .inner
            .registry
            .get(&principal.tenant_id, &principal.user_id, &entry.info.run_id)
            .await
        {
            Ok(Some(ended)) => ended.info.state == RunState::Aborted as i32,
            _ => true,
        }
    }

    pub(crate) async fn abort_active(
        &self,
        principal: &Principal,
        session_key: &str,
        reason: &str,
    ) -> Result<(bool, Vec<String>), ServiceError> {
        let active = self
            .inner
            .registry
            .active(&principal.tenant_id, &principal.user_id, session_key)
            .await?;
        Ok(match active {
            Some(entry) if self.abort_entry(principal, &entry, reason).await => {
                (true, vec![entry.info.run_id])
            }
            _ => (false, Vec::new()),
        })
    }

    pub(crate) async fn accept(
        &self,
        principal: &Principal,
        request: &ValidStart,
    ) -> Result<(), ServiceError> {
        let session = &self.inner.session;
        session
            .ensure_session(
                principal,
                EnsureSessionRequest {
                    session_key: request.session_key.clone(),
                    agent_id: request.agent_id.clone(),
                },
            )
            .await?;
        session
            .append_message(
                principal,
                AppendMessageRequest {
                    session_key: request.session_key.clone(),
                    role: "user".to_owned(),
                    content: request.message.clone(),
                    run_id: request.run_id.clone(),
                    status: MessageStatus::Complete as i32,
                    error: String::new(),
                    agent_id: request.agent_id.clone(),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    /// The tools of one run: the agent's of the runner's, plus the node
    /// tools of the run's user's live nodes when the runner has nodes and
    /// the agent may use them (read once, here).
    pub(crate) async fn run_tools(
        &self,
        principal: &Principal,
        allowlist: &[String],
        max_tool_steps: u32,
        timeout: Duration,
    ) -> AgentTools {
        let mut tools = self.inner.tools.for_agent(allowlist);
        if let Some(nodes) = &self.inner.nodes
            && max_tool_steps > 0
        {
            let deadline = tokio::time::Instant::now() + timeout;
            let node_timeout = self.inner.config.node_timeout;
            node_commands::offer(
                &mut tools,
                nodes,
                principal,
                allowlist,
                node_timeout,
                deadline,
            )
            .await;
        }
        tools
    }

    /// The runs in flight of the sessions `request` names (another user's
    /// only for a principal that sees the whole tenant).
    pub(crate) async fn active_runs_of(
        &self,
        principal: &Principal,
        request: ActiveRunsRequest,
    ) -> Result<ActiveRunsResponse, ServiceError> {
        if request.sessions.len() > MAX_ACTIVE_RUN_QUERIES {
            return Err(ServiceError::invalid(format!(
                "at most {MAX_ACTIVE_RUN_QUERIES} sessions per call"
            )));
        }
        let registry = &self.inner.registry;
        let tenant_id = principal.tenant_id.as_str();
        // Another user's session only for a principal that sees the whole
        // tenant; for anyone else it simply has no run.
        let lookups = request.sessions.into_iter().filter_map(|session| {
            let user_id = match session.user_id.as_str() {
                "" => principal.user_id.clone(),
                user if user == principal.user_id || principal.sees_tenant() => user.to_owned(),
                _ => return None,
            };
            Some(async move {
                registry
                    .active(tenant_id, &user_id, &session.session_key)
                    .await
            })
        });
        let found: Vec<_> = futures_util::stream::iter(lookups)
            .buffer_unordered(ACTIVE_RUN_LOOKUP_CONCURRENCY)
            .collect()
            .await;
        let mut runs = Vec::new();
        for entry in found {
            if let Some(entry) = entry? {
                runs.push(entry.info);
            }
        }
        Ok(ActiveRunsResponse { runs })
    }
}

/// Sessions one `ActiveRuns` call may ask about.
const MAX_ACTIVE_RUN_QUERIES: usize = 1000;
/// Registry lookups of one `ActiveRuns` call in flight at once (each is one
/// Redis round trip in a cluster).
const ACTIVE_RUN_LOOKUP_CONCURRENCY: usize = 16;
