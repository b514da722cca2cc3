//! [`RunnerService`]: the runner's RPCs (`StartRun`, `AbortRun`, `GetRun`,
//! `ReadRunEvents`, and what it is configured and doing: `ListModels`,
//! `RunnerStats`, `ListTools`, see [`crate::catalog`]; `ActiveRuns`: which
//! sessions have a run in flight, for session listings; the exec approval
//! RPCs, see [`crate::approvals`]). Shutdown, aborts, accepting a turn, a
//! run's tools (with its user's node tools) and the `ActiveRuns` lookups are
//! in `service_ops`.
//!
//! Invariants:
//! - every call requires a principal, and runs are scoped by its tenant and user:
//!   another user's run is invisible (unknown), never an error that reveals it;
//! - `StartRun` returns before the model is called, but only after the user turn
//!   is in the transcript; the run then lives on its own task, owned by the
//!   runner, not by the caller;
//! - a run id is the caller's idempotency key, and one key yields at most one run
//!   while it is remembered (running, or finished within the dedupe TTL);
//! - at most one active run per session — across every runner sharing one Redis
//!   when built with [`crate::RunnerBuilder::cluster`] (see [`crate::cluster`]);
//! - an abort reaches the run wherever it runs: a run of another runner is
//!   aborted through that runner's control topic.
//!
//! **Shutdown** ([`RunnerService::shutdown`]): new runs are refused
//! (`UNAVAILABLE`, retryable); in-flight runs may finish on their own until
//! `grace - shutdown_abort_margin`, then the rest are aborted (stop reason
//! `shutdown`: their partial text is written as an aborted turn, the lease freed
//! and a terminal `end` event with outcome aborted published) and awaited until
//! `grace`. Cluster loops stop afterwards; a run still not ended then loses its
//! lease and is ended by another runner's reaper (`runner_lost`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::runner::{
    AbortRunRequest, AbortRunResponse, ActiveRunsRequest, ActiveRunsResponse, ExecApproval,
    GetApprovalRequest, GetRunRequest, ListApprovalsRequest, ListApprovalsResponse,
    ListModelsRequest, ListModelsResponse, ListToolsRequest, ListToolsResponse,
    ReadRunEventsRequest, ReadRunEventsResponse, ResolveApprovalRequest, ResolveApprovalResponse,
    RunInfo, RunState, RunnerApi, RunnerStatsRequest, RunnerStatsResponse, StartRunRequest,
    StartRunResponse, StartStatus, WaitApprovalRequest,
};
use clawgate_proto::session::{GetAgentRequest, SessionApi as _, SessionClient};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::replay::{ReplayLog, RunRef};
use futures_util::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::approvals::Approvals;
use crate::cluster::Cluster;
use crate::config::RunnerConfig;
use crate::events::{EventPublisher, RunIdentity};
use crate::failover::Cooldowns;
use crate::history::RunHistory;
use crate::nodes::Nodes;
use crate::provider::ProviderSlot;
use crate::provider::tenant::{Models, TenantProviders};
use crate::registry::{Admission, RunControl, RunRegistry};
use crate::run::RunTask;
use crate::stopwords::is_stop_command;
use crate::tools::ToolSet;
use crate::validate::{
    MAX_IDEMPOTENCY_KEY_CHARS, session_busy, validate_session_key, validate_start,
};

const MAX_STOP_REASON_CHARS: usize = 64;
/// Most events one `ReadRunEvents` call returns.
const MAX_REPLAY_EVENTS: usize = 5_000;

pub(crate) struct Inner {
    pub config: Arc<RunnerConfig>,
    pub(crate) provider: ProviderSlot,
    pub session: SessionClient,
    pub registry: Arc<dyn RunRegistry>,
    /// Where run events are recorded and published.
    pub replay: RunHistory,
    /// Set when this runner shares Redis with other runners.
    pub cluster: Option<Cluster>,
    pub(crate) tasks: TaskTracker,
    /// Set by [`RunnerService::shutdown`]: no new runs are accepted.
    pub(crate) draining: AtomicBool,
    /// Stops the cluster loops and the node reply loop (on shutdown, or when
    /// the service is dropped).
    pub background: CancellationToken,
    /// Models that failed recently, skipped by every run until they cool off.
    pub(crate) cooldowns: Arc<Cooldowns>,
    /// Exec approvals this runner's runs wait on, and the decisions it applies.
    pub approvals: Arc<Approvals>,
    /// The tools of the config plus `exec` when configured (gated by approvals).
    pub(crate) tools: ToolSet,
    /// The providers tenants configured for themselves.
    pub tenant_providers: TenantProviders,
    /// The nodes runs may use (their commands become per-run tools, see
    /// [`crate::tools::node_commands`]); `None`: no node tools.
    pub(crate) nodes: Option<Arc<Nodes>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.background.cancel();
    }
}

/// The runner service. Cheap to clone; clones share their runs.
#[derive(Clone)]
pub struct RunnerService {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RunnerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RunnerService {
    /// Where this runner records run events (their bus payloads, see
    /// [`clawgate_proto::run_events`]); the edge of an in-process deployment
    /// may read histories from it directly, otherwise it calls `ReadRunEvents`.
    pub fn replay_log(&self) -> Arc<dyn ReplayLog> {
        self.inner.replay.log().clone()
    }

    /// This runner's id in a cluster (`None` in-process).
    pub fn runner_id(&self) -> Option<&str> {
        self.inner
            .cluster
            .as_ref()
            .map(|cluster| cluster.options.runner_id.as_str())
    }
}

#[async_trait]
impl RunnerApi for RunnerService {
    async fn start_run(
        &self,
        principal: &Principal,
        request: StartRunRequest,
    ) -> Result<StartRunResponse, ServiceError> {
        principal.require()?;
        let request = validate_start(&self.inner.config, request)?;
        if is_stop_command(&request.message) {
            let (aborted, aborted_run_ids) = self
                .abort_active(principal, &request.session_key, "stop-command")
                .await?;
            return Ok(StartRunResponse {
                run_id: String::new(),
                status: StartStatus::StopCommand as i32,
                run: None,
                aborted,
                aborted_run_ids,
            });
        }
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(ServiceError::unavailable("the runner is shutting down"));
        }
        // The session key's agent, as its tenant defines it ('' = the
        // default one); an agent the tenant lacks refuses the run.
        // ... and its providers (none: the runner's own), read at once.
        let session = &self.inner.session;
        let (agent, routed) = tokio::join!(
            session.get_agent(
                principal,
                GetAgentRequest {
                    agent_id: request.agent_id.clone(),
                },
            ),
            self.inner.tenant_providers.for_run(session, principal),
        );
        let agent = agent?;
        let models = Models::of(routed?, &agent, || self.provider(), &principal.tenant_id)?;
        let timeout = match agent.timeout_ms {
            0 => request.timeout,
            ms => request.timeout.min(Duration::from_millis(ms)),
        };

        let started_at_ms = now_ms();
        let info = RunInfo {
            run_id: request.run_id.clone(),
            session_key: request.session_key.clone(),
            agent_id: request.agent_id.clone(),
            state: RunState::Running as i32,
            started_at_ms,
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            ..Default::default()
        };
        let control = Arc::new(RunControl::default());
        let registry = &self.inner.registry;
        let existing = |status: StartStatus, run: RunInfo| StartRunResponse {
            run_id: run.run_id.clone(),
            status: status as i32,
            run: Some(run),
            ..Default::default()
        };
        match registry.admit(info, control.clone()).await? {
            Admission::Accepted => {}
            Admission::InFlight(run) => return Ok(existing(StartStatus::InFlight, run)),
            Admission::Done(run) => return Ok(existing(StartStatus::Done, run)),
            Admission::Busy { active_run_id } => return Err(session_busy(&active_run_id)),
            Admission::Full => {
                return Err(ServiceError::new(
                    ErrorCode::ResourceExhausted,
                    "too many runs in progress; try again shortly",
                )
                .retry_after(1_000));
            }
        }
        if let Err(err) = self.accept(principal, &request).await {
            registry
                .release(&principal.tenant_id, &principal.user_id, &request.run_id)
                .await;
            return Err(err);
        }

        let identity = RunIdentity {
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            session_key: request.session_key.clone(),
            run_id: request.run_id.clone(),
            agent_id: request.agent_id.clone(),
        };
        let span = tracing::info_span!(
            "run",
            otel.name = "invoke_agent",
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.id = %identity.agent_id,
            run.id = %identity.run_id,
            session.key = %identity.session_key,
            tenant.id = %identity.tenant_id,
            user.id = %identity.user_id,
        );
        let task = RunTask {
            principal: principal.clone(),
            publisher: EventPublisher::new(
                self.inner.replay.clone(),
                identity.clone(),
                self.inner.config.publish_timeout,
            ),
            identity,
            started_at_ms,
            timeout,
            control,
            provider: models.provider,
            session: self.inner.session.clone(),
            registry: registry.clone(),
            config: self.inner.config.clone(),
            system_prompt: agent.system_prompt,
            model: models.model,
            fallbacks: models.fallbacks,
            cooldown_scope: models.cooldown_scope,
            cooldowns: self.inner.cooldowns.clone(),
            tools: self
                .run_tools(principal, &agent.tools, agent.max_tool_steps, timeout)
                .await,
            max_tool_steps: agent.max_tool_steps,
            next_part: 0,
            step_start: 0,
        };
        let registry = registry.clone();
        self.inner.tasks.spawn(
            async move {
                let mut failed_info = task.failed_info();
                let control = task.control.clone();
                // A bug in a run must not leave its session busy forever.
                if AssertUnwindSafe(task.run()).catch_unwind().await.is_err() {
                    tracing::error!("run panicked");
                    failed_info.ended_at_ms = now_ms();
                    if registry.claim_end(&failed_info).await {
                        registry.finish(failed_info).await;
                    }
                    control.mark_ended();
                }
            }
            .instrument(span),
        );
        Ok(StartRunResponse {
            run_id: request.run_id,
            status: StartStatus::Started as i32,
            ..Default::default()
        })
    }

    async fn abort_run(
        &self,
        principal: &Principal,
        request: AbortRunRequest,
    ) -> Result<AbortRunResponse, ServiceError> {
        principal.require()?;
        validate_session_key(&request.session_key)?;
        let reason = match request.stop_reason.trim() {
            "" => "rpc".to_owned(),
            reason => reason.chars().take(MAX_STOP_REASON_CHARS).collect(),
        };
        let not_aborted = AbortRunResponse {
            aborted: false,
            run_ids: Vec::new(),
        };
        if request.run_id.is_empty() {
            let (aborted, run_ids) = self
                .abort_active(principal, &request.session_key, &reason)
                .await?;
            return Ok(AbortRunResponse { aborted, run_ids });
        }
        let entry = self
            .inner
            .registry
            .get(&principal.tenant_id, &principal.user_id, &request.run_id)
            .await?;
        match entry {
            None => Ok(not_aborted),
            Some(entry) if entry.info.session_key != request.session_key => {
                Err(ServiceError::invalid("runId does not match sessionKey"))
            }
            Some(entry) if !entry.running => Ok(not_aborted),
            Some(entry) => {
                if self.abort_entry(principal, &entry, &reason).await {
                    Ok(AbortRunResponse {
                        aborted: true,
                        run_ids: vec![entry.info.run_id],
                    })
                } else {
                    Ok(not_aborted)
                }
            }
        }
    }

    async fn get_run(
        &self,
        principal: &Principal,
        request: GetRunRequest,
    ) -> Result<RunInfo, ServiceError> {
        principal.require()?;
        if request.run_id.is_empty() {
            return Err(ServiceError::invalid("runId is required"));
        }
        self.inner
            .registry
            .get(&principal.tenant_id, &principal.user_id, &request.run_id)
            .await?
            .map(|entry| entry.info)
            .ok_or_else(|| ServiceError::not_found("run not found"))
    }

    async fn read_run_events(
        &self,
        principal: &Principal,
        request: ReadRunEventsRequest,
    ) -> Result<ReadRunEventsResponse, ServiceError> {
        principal.require()?;
        if request.run_id.is_empty() {
            return Err(ServiceError::invalid("runId is required"));
        }
        if request.run_id.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(ServiceError::invalid("runId is too long"));
        }
        let limit = match request.limit {
            0 => MAX_REPLAY_EVENTS,
            limit => usize::try_from(limit).map_or(MAX_REPLAY_EVENTS, |l| l.min(MAX_REPLAY_EVENTS)),
        };
        // Another user's run only for a principal that sees the whole tenant;
        // the tenant is always the caller's.
        let user_id = match request.user_id.as_str() {
            "" => principal.user_id.as_str(),
            user if user == principal.user_id || principal.sees_tenant() => user,
            _ => return Ok(ReadRunEventsResponse::default()),
        };
        let run = RunRef::new(&principal.tenant_id, user_id, &request.run_id);
        let events = self
            .inner
            .replay
            .read_from(&run, request.after_seq, limit)
            .await?;
        Ok(ReadRunEventsResponse { events })
    }

    async fn list_models(
        &self,
        principal: &Principal,
        _request: ListModelsRequest,
    ) -> Result<ListModelsResponse, ServiceError> {
        principal.require()?;
        let own = TenantProviders::list(&self.inner.session, principal).await?;
        Ok(if own.is_empty() {
            crate::catalog::models(&self.inner.config)
        } else {
            crate::catalog::tenant_models(&own)
        })
    }

    async fn runner_stats(
        &self,
        principal: &Principal,
        _request: RunnerStatsRequest,
    ) -> Result<RunnerStatsResponse, ServiceError> {
        principal.require()?;
        let active = self.inner.registry.all_active().await;
        let visible = active
            .iter()
            .filter(|entry| crate::catalog::visible(principal, &entry.info))
            .count();
        Ok(RunnerStatsResponse {
            active_runs: u32::try_from(visible).unwrap_or(u32::MAX),
            runner_id: self.runner_id().unwrap_or_default().to_owned(),
            draining: self.inner.draining.load(Ordering::SeqCst),
        })
    }

    async fn active_runs(
        &self,
        principal: &Principal,
        request: ActiveRunsRequest,
    ) -> Result<ActiveRunsResponse, ServiceError> {
        principal.require()?;
        self.active_runs_of(principal, request).await
    }

    async fn list_approvals(
        &self,
        principal: &Principal,
        _request: ListApprovalsRequest,
    ) -> Result<ListApprovalsResponse, ServiceError> {
        principal.require()?;
        let approvals = self.inner.approvals.list(principal).await?;
        Ok(ListApprovalsResponse { approvals })
    }

    async fn get_approval(
        &self,
        principal: &Principal,
        request: GetApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        principal.require()?;
        self.inner.approvals.get(principal, &request.id).await
    }

    async fn resolve_approval(
        &self,
        principal: &Principal,
        request: ResolveApprovalRequest,
    ) -> Result<ResolveApprovalResponse, ServiceError> {
        principal.require()?;
        let (approval, applied) = self
            .inner
            .approvals
            .resolve(
                principal,
                &request.id,
                &request.decision,
                &request.resolved_by,
            )
            .await?;
        Ok(ResolveApprovalResponse {
            approval: Some(approval),
            applied,
        })
    }

    async fn wait_approval(
        &self,
        principal: &Principal,
        request: WaitApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        principal.require()?;
        let timeout = Duration::from_millis(u64::from(request.timeout_ms));
        self.inner
            .approvals
            .wait(principal, &request.id, timeout)
            .await
    }

    async fn list_tools(
        &self,
        principal: &Principal,
        request: ListToolsRequest,
    ) -> Result<ListToolsResponse, ServiceError> {
        principal.require()?;
        let agent = self
            .inner
            .session
            .get_agent(
                principal,
                GetAgentRequest {
                    agent_id: request.agent_id,
                },
            )
            .await?;
        Ok(crate::catalog::tools(
            &self.inner.tools,
            agent.agent_id,
            &agent.tools,
            agent.max_tool_steps,
        ))
    }
}
