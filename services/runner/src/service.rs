//! [`RunnerService`]: the runner's RPCs (`StartRun`, `AbortRun`, `GetRun`).
//!
//! Invariants:
//! - every call requires a principal, and runs are scoped by its tenant and user:
//!   another user's run is invisible (unknown), never an error that reveals it;
//! - `StartRun` returns before the model is called, but only after the user turn
//!   is in the transcript; the run then lives on its own task, owned by the
//!   runner, not by the caller;
//! - a run id is the caller's idempotency key, and one key yields at most one run
//!   while it is remembered (running, or finished within the dedupe TTL);
//! - at most one active run per session.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::runner::{
    AbortRunRequest, AbortRunResponse, GetRunRequest, RunInfo, RunState, RunnerApi,
    StartRunRequest, StartRunResponse, StartStatus,
};
use clawgate_proto::session::{
    AppendMessageRequest, EnsureSessionRequest, MessageStatus, SessionApi as _, SessionClient,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::clock::now_ms;
use futures_util::FutureExt as _;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::RunnerConfig;
use crate::events::{EventPublisher, RunIdentity};
use crate::provider::{ModelProvider, OpenAiProvider};
use crate::registry::{Admission, MemoryRegistry, RunControl, RunEntry, RunRegistry};
use crate::run::RunTask;
use crate::stopwords::is_stop_command;

const MAX_SESSION_KEY_CHARS: usize = 512;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 256;
const MAX_AGENT_ID_CHARS: usize = 128;
const MAX_STOP_REASON_CHARS: usize = 64;

/// Shown when no model provider is configured.
pub const NO_PROVIDER_MESSAGE: &str = "no model provider configured: set CLAWGATE_MODEL_BASE_URL (and CLAWGATE_MODEL, CLAWGATE_MODEL_API_KEY)";

enum ProviderSlot {
    Missing,
    /// Configured, but the client could not be built (logged at startup).
    Broken,
    Ready(Arc<dyn ModelProvider>),
}

struct Inner {
    config: Arc<RunnerConfig>,
    provider: ProviderSlot,
    session: SessionClient,
    bus: Arc<dyn EventBus>,
    registry: Arc<dyn RunRegistry>,
    tasks: TaskTracker,
    /// Set by [`RunnerService::shutdown`]: no new runs are accepted.
    draining: AtomicBool,
}

/// The runner service. Cheap to clone; clones share their runs.
#[derive(Clone)]
pub struct RunnerService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RunnerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RunnerService {
    /// A runner that calls the OpenAI-compatible provider of `config` (if any).
    pub fn new(config: RunnerConfig, session: SessionClient, bus: Arc<dyn EventBus>) -> Self {
        let provider = match &config.provider {
            None => ProviderSlot::Missing,
            Some(provider_config) => {
                match OpenAiProvider::new(provider_config.clone(), config.provider_timeouts) {
                    Ok(provider) => ProviderSlot::Ready(Arc::new(provider)),
                    Err(err) => {
                        tracing::error!(error = %err, "model provider unusable");
                        ProviderSlot::Broken
                    }
                }
            }
        };
        Self::build(config, provider, session, bus)
    }

    /// A runner that calls `provider` (`config.provider` is ignored).
    pub fn with_provider(
        config: RunnerConfig,
        provider: Arc<dyn ModelProvider>,
        session: SessionClient,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        Self::build(config, ProviderSlot::Ready(provider), session, bus)
    }

    fn build(
        config: RunnerConfig,
        provider: ProviderSlot,
        session: SessionClient,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        let registry = Arc::new(MemoryRegistry::new(
            config.dedupe_ttl,
            config.max_active_runs,
            config.max_remembered_runs,
        ));
        Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                provider,
                session,
                bus,
                registry,
                tasks: TaskTracker::new(),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Stops accepting runs (`UNAVAILABLE`, retryable), aborts every active run
    /// (stop reason "shutdown") and waits up to `grace` for them to write their
    /// partial text and publish their last event.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.draining.store(true, Ordering::SeqCst);
        for entry in self.inner.registry.all_active().await {
            entry.control.abort("shutdown");
        }
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("runs still ending after the shutdown grace period");
        }
    }

    fn provider(&self) -> Result<Arc<dyn ModelProvider>, ServiceError> {
        match &self.inner.provider {
            ProviderSlot::Ready(provider) => Ok(provider.clone()),
            ProviderSlot::Missing => Err(ServiceError::failed_precondition(NO_PROVIDER_MESSAGE)),
            ProviderSlot::Broken => Err(ServiceError::failed_precondition(
                "the model provider could not be initialised; see the runner's log",
            )),
        }
    }

    /// Aborts `entry` and waits (bounded) for it to persist its partial text.
    /// Returns whether the run ended aborted (it may have finished on its own).
    async fn abort_entry(&self, principal: &Principal, entry: &RunEntry, reason: &str) -> bool {
        entry.control.abort(reason);
        if !entry.control.wait_ended(self.inner.config.abort_wait).await {
            return true;
        }
        match self
            .inner
            .registry
            .get(&principal.tenant_id, &principal.user_id, &entry.info.run_id)
            .await
        {
            Some(ended) => ended.info.state == RunState::Aborted as i32,
            None => true,
        }
    }

    async fn abort_active(
        &self,
        principal: &Principal,
        session_key: &str,
        reason: &str,
    ) -> (bool, Vec<String>) {
        let active = self
            .inner
            .registry
            .active(&principal.tenant_id, &principal.user_id, session_key)
            .await;
        match active {
            Some(entry) if self.abort_entry(principal, &entry, reason).await => {
                (true, vec![entry.info.run_id])
            }
            _ => (false, Vec::new()),
        }
    }

    async fn accept(
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
                },
            )
            .await?;
        Ok(())
    }
}

/// A `StartRunRequest` that passed validation.
struct ValidStart {
    session_key: String,
    agent_id: String,
    message: String,
    run_id: String,
    timeout: Duration,
}

fn validate_session_key(session_key: &str) -> Result<(), ServiceError> {
    if session_key.trim().is_empty() {
        return Err(ServiceError::invalid("sessionKey is required"));
    }
    if session_key.chars().count() > MAX_SESSION_KEY_CHARS {
        return Err(ServiceError::invalid(format!(
            "sessionKey is longer than {MAX_SESSION_KEY_CHARS} characters"
        )));
    }
    Ok(())
}

fn validate_start(
    config: &RunnerConfig,
    request: StartRunRequest,
) -> Result<ValidStart, ServiceError> {
    validate_session_key(&request.session_key)?;
    let run_id = request.idempotency_key;
    if run_id.trim().is_empty() {
        return Err(ServiceError::invalid("idempotencyKey is required"));
    }
    if run_id.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(ServiceError::invalid(format!(
            "idempotencyKey is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )));
    }
    if request.agent_id.chars().count() > MAX_AGENT_ID_CHARS {
        return Err(ServiceError::invalid(format!(
            "agentId is longer than {MAX_AGENT_ID_CHARS} characters"
        )));
    }
    if request.message.len() > config.max_message_bytes {
        return Err(ServiceError::invalid(format!(
            "message is longer than {} bytes",
            config.max_message_bytes
        )));
    }
    // Control characters other than line breaks and tabs are stripped, as OpenClaw does.
    let message: String = request
        .message
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect();
    if message.trim().is_empty() {
        return Err(ServiceError::invalid("message required"));
    }
    let timeout = match request.timeout_ms {
        0 => config.run_timeout,
        ms => Duration::from_millis(u64::from(ms)).min(config.run_timeout),
    };
    Ok(ValidStart {
        session_key: request.session_key,
        agent_id: request.agent_id,
        message,
        run_id,
        timeout,
    })
}

fn session_busy(active_run_id: &str) -> ServiceError {
    let mut err = ServiceError::failed_precondition("a run is already active in this session")
        .with_details(serde_json::json!({"reason": "session-busy", "runId": active_run_id}));
    err.retryable = true;
    err
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
                .await;
            return Ok(StartRunResponse {
                run_id: String::new(),
                status: StartStatus::StopCommand as i32,
                run: None,
                aborted,
                aborted_run_ids,
            });
        }
        let provider = self.provider()?;
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(ServiceError::unavailable("the runner is shutting down"));
        }

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
        match registry.admit(info, control.clone()).await {
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
                self.inner.bus.clone(),
                identity.clone(),
                self.inner.config.publish_timeout,
            ),
            identity,
            started_at_ms,
            timeout: request.timeout,
            control,
            provider,
            session: self.inner.session.clone(),
            registry: registry.clone(),
            config: self.inner.config.clone(),
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
                    registry.finish(failed_info).await;
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
                .await;
            return Ok(AbortRunResponse { aborted, run_ids });
        }
        let entry = self
            .inner
            .registry
            .get(&principal.tenant_id, &principal.user_id, &request.run_id)
            .await;
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
            .await
            .map(|entry| entry.info)
            .ok_or_else(|| ServiceError::not_found("run not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(message: &str) -> StartRunRequest {
        StartRunRequest {
            session_key: "main".into(),
            message: message.into(),
            idempotency_key: "k".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation() {
        let config = RunnerConfig::default();
        assert!(validate_start(&config, start("hi")).is_ok());
        assert!(validate_start(&config, start("  ")).is_err());
        let mut request = start("hi");
        request.session_key = "x".repeat(513);
        assert!(validate_start(&config, request).is_err());
        let mut request = start("hi");
        request.idempotency_key.clear();
        assert!(validate_start(&config, request).is_err());
        let big = "x".repeat(config.max_message_bytes + 1);
        assert!(validate_start(&config, start(&big)).is_err());
        let cleaned = validate_start(&config, start("a\u{0}b\nc")).expect("valid");
        assert_eq!(cleaned.message, "ab\nc");
    }

    #[test]
    fn request_timeout_only_shortens() {
        let config = RunnerConfig::default();
        let mut request = start("hi");
        request.timeout_ms = 1_000;
        let valid = validate_start(&config, request).expect("valid");
        assert_eq!(valid.timeout, Duration::from_secs(1));
        let mut request = start("hi");
        request.timeout_ms = u32::MAX;
        let valid = validate_start(&config, request).expect("valid");
        assert_eq!(valid.timeout, config.run_timeout);
    }

    #[test]
    fn busy_error_is_retryable_with_details() {
        let err = session_busy("run-1");
        assert_eq!(err.code, ErrorCode::FailedPrecondition);
        assert!(err.retryable);
        assert_eq!(
            err.details,
            Some(serde_json::json!({"reason": "session-busy", "runId": "run-1"}))
        );
    }
}
