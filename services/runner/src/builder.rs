//! [`RunnerBuilder`]: how a [`RunnerService`] is put together — in-process
//! (memory registry, memory replay log on the given bus), or as one runner of a
//! cluster sharing Redis (Redis leases and records, Redis stream replay, control
//! topic, renewal and reaper loops; see [`crate::cluster`]).

use std::sync::Arc;

use clawgate_proto::ServiceError;
use clawgate_proto::session::SessionClient;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::lease::{LeaseOptions, RedisRunLeases};
use clawgate_runtime::replay::memory::MemoryReplayLog;
use clawgate_runtime::replay::redis::RedisReplayLog;
use clawgate_runtime::replay::{ReplayLog, ReplayOptions};

use crate::cluster::{Cluster, ClusterOptions};
use crate::config::RunnerConfig;
use crate::provider::{ModelProvider, OpenAiProvider};
use crate::registry::RedisRegistry;
use crate::service::{ProviderSlot, RunnerService};

/// Builds a [`RunnerService`]: in-process (embedded mode, the default) or as one
/// runner of a cluster sharing Redis ([`RunnerBuilder::cluster`]).
pub struct RunnerBuilder {
    pub(crate) config: RunnerConfig,
    pub(crate) session: SessionClient,
    pub(crate) bus: Arc<dyn EventBus>,
    pub(crate) provider: Option<Arc<dyn ModelProvider>>,
    pub(crate) cluster: Option<(RedisBus, ClusterOptions)>,
    pub(crate) replay: Option<Arc<dyn ReplayLog>>,
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

impl RunnerBuilder {
    /// Calls `provider` instead of the provider of the config.
    pub fn provider(mut self, provider: Arc<dyn ModelProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Joins the runners sharing `redis`: run leases and records, replay
    /// histories and run events all go through it (the bus given to
    /// [`RunnerService::builder`] is then not used).
    pub fn cluster(mut self, redis: RedisBus, options: ClusterOptions) -> Self {
        self.cluster = Some((redis, options));
        self
    }

    /// Records run events in `replay` (in-process mode only; a cluster runner
    /// uses Redis streams). By default a [`MemoryReplayLog`] on the bus.
    pub fn replay_log(mut self, replay: Arc<dyn ReplayLog>) -> Self {
        self.replay = Some(replay);
        self
    }

    /// Builds the service; a cluster runner also subscribes to its control
    /// topic and starts its lease renewal and reaper (must run in a Tokio
    /// runtime, which then hosts them).
    pub async fn build(self) -> Result<RunnerService, ServiceError> {
        let provider = match self.provider {
            Some(provider) => ProviderSlot::Ready(provider),
            None => provider_slot(&self.config),
        };
        let Some((redis, options)) = self.cluster else {
            let replay = self.replay.unwrap_or_else(|| {
                Arc::new(MemoryReplayLog::new(
                    self.bus.clone(),
                    ReplayOptions::default(),
                ))
            });
            return Ok(RunnerService::assemble(
                self.config,
                provider,
                self.session,
                replay,
                None,
            ));
        };
        let leases = RedisRunLeases::on_bus(
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
            Arc::new(RedisReplayLog::on_bus(&redis, options.replay.clone()));
        let cluster = Cluster::new(options, registry, Arc::new(redis));
        let service =
            RunnerService::assemble(self.config, provider, self.session, replay, Some(cluster));
        if let Some(cluster) = &service.inner.cluster {
            crate::cluster::start(&service.inner, cluster, service.inner.background.clone())
                .await?;
        }
        Ok(service)
    }
}

pub(crate) fn provider_slot(config: &RunnerConfig) -> ProviderSlot {
    match &config.provider {
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
    }
}

impl std::fmt::Debug for RunnerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
