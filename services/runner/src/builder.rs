//! [`RunnerBuilder`]: how a [`RunnerService`] is put together — in-process
//! (memory registry, memory replay log on the given bus), or as one runner of a
//! cluster sharing Redis (Redis leases and records, Redis stream replay, control
//! topic, renewal and reaper loops; see [`crate::cluster`]).
//!
//! Invariant: a cluster runner uses the one [`Redis`] handle it is given for
//! everything it shares (leases, histories, run events, control messages).

use std::sync::Arc;

use clawgate_proto::ServiceError;
use clawgate_proto::auth::AuthClient;
use clawgate_proto::session::SessionClient;
use clawgate_runtime::approvals::memory::MemoryApprovals;
use clawgate_runtime::approvals::redis::RedisApprovals;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::lease::{LeaseOptions, RedisRunLeases};
use clawgate_runtime::presence::PresenceRegistry;
use clawgate_runtime::presence::redis::RedisPresence;
use clawgate_runtime::redis::Redis;
use clawgate_runtime::replay::memory::MemoryReplayLog;
use clawgate_runtime::replay::redis::RedisReplayLog;
use clawgate_runtime::replay::{ReplayLog, ReplayOptions};

use crate::approvals::Approvals;
use crate::cluster::{Cluster, ClusterOptions, background};
use crate::config::RunnerConfig;
use crate::provider::{ModelProvider, ProviderSlot};
use crate::registry::RedisRegistry;
use crate::service::RunnerService;

/// Builds a [`RunnerService`]: in-process (embedded mode, the default) or as one
/// runner of a cluster sharing Redis ([`RunnerBuilder::cluster`]).
pub struct RunnerBuilder {
    config: RunnerConfig,
    session: SessionClient,
    bus: Arc<dyn EventBus>,
    provider: Option<Arc<dyn ModelProvider>>,
    cluster: Option<(Redis, ClusterOptions)>,
    replay: Option<Arc<dyn ReplayLog>>,
    approvers: Option<Arc<dyn PresenceRegistry>>,
    auth: Option<AuthClient>,
}

impl std::fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field("config", &self.config)
            .field(
                "cluster",
                &self.cluster.as_ref().map(|(_, options)| options),
            )
            .finish_non_exhaustive()
    }
}

impl RunnerService {
    /// A builder; see [`RunnerBuilder`].
    pub fn builder(
        config: RunnerConfig,
        session: SessionClient,
        bus: Arc<dyn EventBus>,
    ) -> RunnerBuilder {
        RunnerBuilder {
            config,
            session,
            bus,
            provider: None,
            cluster: None,
            replay: None,
            approvers: None,
            auth: None,
        }
    }
}

impl RunnerBuilder {
    /// Calls `provider` instead of the provider of the config.
    pub fn provider(mut self, provider: Arc<dyn ModelProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Joins the runners sharing `redis`: run leases and records, replay
    /// histories and run events all go through it (the bus given to
    /// [`RunnerService::builder`] is then not used).
    pub fn cluster(mut self, redis: Redis, options: ClusterOptions) -> Self {
        self.cluster = Some((redis, options));
        self
    }

    /// Records run events in `replay` (in-process mode only; a cluster runner
    /// uses Redis streams). By default a [`MemoryReplayLog`] on the bus.
    pub fn replay_log(mut self, replay: Arc<dyn ReplayLog>) -> Self {
        self.replay = Some(replay);
        self
    }

    /// Reads who may answer exec approvals from `approvers` (the edges'
    /// presence registry); an approval nobody can answer then expires at
    /// once. A cluster runner reads the Redis registry by default; without
    /// one, approvals wait until they are answered or expire.
    pub fn approvers(mut self, approvers: Arc<dyn PresenceRegistry>) -> Self {
        self.approvers = Some(approvers);
        self
    }

    /// Reads tenant secrets (the API keys of tenants' own providers) through
    /// `auth`; without it, a tenant provider that names a key secret fails.
    pub fn auth(mut self, auth: AuthClient) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Builds the service; a cluster runner also subscribes to its control
    /// topic and starts its lease renewal and reaper (must run in a Tokio
    /// runtime, which then hosts them).
    pub async fn build(self) -> Result<RunnerService, ServiceError> {
        let provider = match self.provider {
            Some(provider) => ProviderSlot::Ready(provider),
            None => ProviderSlot::from_config(&self.config),
        };
        let Some((redis, options)) = self.cluster else {
            let replay = self.replay.unwrap_or_else(|| {
                Arc::new(MemoryReplayLog::new(
                    self.bus.clone(),
                    ReplayOptions::default(),
                ))
            });
            let approvals = Approvals::new(
                Arc::new(MemoryApprovals::new()),
                self.bus.clone(),
                self.approvers,
                String::new(),
                self.session.clone(),
            );
            return Ok(RunnerService::assemble(
                self.config,
                provider,
                self.session,
                replay,
                None,
                approvals,
                self.auth,
            ));
        };
        let leases = RedisRunLeases::new(
            &redis,
            LeaseOptions {
                lease: options.lease,
                record_ttl: self.config.dedupe_ttl,
            },
        );
        let registry = Arc::new(RedisRegistry::new(
            leases,
            options.runner_id.clone(),
            self.config.max_active_runs,
        ));
        let replay: Arc<dyn ReplayLog> =
            Arc::new(RedisReplayLog::new(&redis, options.replay.clone()));
        let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(&redis));
        let approvers = self
            .approvers
            .unwrap_or_else(|| Arc::new(RedisPresence::new(&redis)));
        let approvals = Approvals::new(
            Arc::new(RedisApprovals::new(&redis)),
            bus.clone(),
            Some(approvers),
            options.runner_id.clone(),
            self.session.clone(),
        );
        let cluster = Cluster::new(options, registry, Arc::new(RedisBus::new(&redis)));
        let service = RunnerService::assemble(
            self.config,
            provider,
            self.session,
            replay,
            Some(cluster),
            approvals,
            self.auth,
        );
        if let Some(cluster) = &service.inner.cluster {
            background::start(&service.inner, cluster, service.inner.background.clone()).await?;
        }
        Ok(service)
    }
}
