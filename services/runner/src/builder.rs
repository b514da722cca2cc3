//! [`RunnerBuilder`]: how a [`RunnerService`] is put together — in-process
//! (memory registry, memory replay log on the given bus), or as one runner of a
//! cluster sharing Redis (Redis leases and records, Redis stream replay, control
//! topic, renewal and reaper loops; see [`crate::cluster`]) — and, given a node
//! registry ([`RunnerBuilder::nodes`]), with the nodes its agents may use (its
//! reply topic `nodes.<runner id>`, see [`crate::nodes`]).
//!
//! Invariants: a cluster runner uses the one [`Redis`] handle it is given for
//! everything it shares (leases, histories, run events, control messages,
//! node calls); an in-process runner uses the bus it is given for all of it;
//! every subscription a runner needs is confirmed before `build` returns.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clawgate_proto::ServiceError;
use clawgate_proto::auth::AuthClient;
use clawgate_proto::runner::RunnerApi;
use clawgate_proto::session::SessionClient;
use clawgate_runtime::approvals::memory::MemoryApprovals;
use clawgate_runtime::approvals::redis::RedisApprovals;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::lease::{LeaseOptions, RedisRunLeases};
use clawgate_runtime::nodes::NodeRegistry;
use clawgate_runtime::presence::PresenceRegistry;
use clawgate_runtime::presence::redis::RedisPresence;
use clawgate_runtime::redis::Redis;
use clawgate_runtime::replay::memory::MemoryReplayLog;
use clawgate_runtime::replay::redis::RedisReplayLog;
use clawgate_runtime::replay::{ReplayLog, ReplayOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::Approvals;
use crate::approvals::gate::ApprovalGate;
use crate::cluster::{Cluster, ClusterOptions, background};
use crate::config::RunnerConfig;
use crate::history::RunHistory;
use crate::nodes::{Nodes, Replies, reply_topic};
use crate::provider::tenant::TenantProviders;
use crate::provider::{ModelProvider, ProviderSlot};
use crate::registry::{MemoryRegistry, RedisRegistry, RunRegistry};
use crate::service::{Inner, RunnerService};
use crate::tools::exec::ExecTool;
use crate::tools::sessions_send::SessionsSend;

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
    nodes: Option<Arc<dyn NodeRegistry>>,
}

/// What [`RunnerService::assemble`] puts together.
pub(crate) struct Parts {
    pub config: RunnerConfig,
    pub provider: ProviderSlot,
    pub session: SessionClient,
    pub replay: Arc<dyn ReplayLog>,
    pub cluster: Option<Cluster>,
    pub approvals: Approvals,
    pub auth: Option<AuthClient>,
    pub nodes: Option<Arc<Nodes>>,
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
            nodes: None,
        }
    }

    /// An in-process runner that calls the OpenAI-compatible provider of
    /// `config` (if any) and publishes on `bus`.
    pub fn new(config: RunnerConfig, session: SessionClient, bus: Arc<dyn EventBus>) -> Self {
        let provider = ProviderSlot::from_config(&config);
        Self::in_process(config, provider, session, bus)
    }

    /// A runner that calls `provider` (`config.provider` is ignored).
    pub fn with_provider(
        config: RunnerConfig,
        provider: Arc<dyn ModelProvider>,
        session: SessionClient,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        Self::in_process(config, ProviderSlot::Ready(provider), session, bus)
    }

    fn in_process(
        config: RunnerConfig,
        provider: ProviderSlot,
        session: SessionClient,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        let replay = Arc::new(MemoryReplayLog::new(bus.clone(), ReplayOptions::default()));
        let approvals = Approvals::in_process(bus, session.clone());
        Self::assemble(Parts {
            config,
            provider,
            session,
            replay,
            cluster: None,
            approvals,
            auth: None,
            nodes: None,
        })
    }

    pub(crate) fn assemble(parts: Parts) -> Self {
        let Parts {
            config,
            provider,
            session,
            replay,
            cluster,
            approvals,
            auth,
            nodes,
        } = parts;
        let approvals = Arc::new(approvals);
        let tenant_providers = TenantProviders::new(auth, config.provider_timeouts);
        let mut tools = config.tools.clone();
        if let Some(exec) = &config.exec {
            let gate = ApprovalGate::new(approvals.clone(), config.approval_timeout);
            let mut exec = ExecTool::new(exec.clone(), Arc::new(gate));
            if let Some(nodes) = &nodes {
                exec = exec.with_nodes(nodes.clone());
            }
            tools = tools.with(Arc::new(exec));
        }
        let registry: Arc<dyn RunRegistry> = match &cluster {
            Some(cluster) => cluster.registry.clone(),
            None => Arc::new(MemoryRegistry::new(
                config.dedupe_ttl,
                config.max_active_runs,
                config.max_remembered_runs,
            )),
        };
        // `sessions_send` starts runs through this very runner.
        let inner = Arc::new_cyclic(|runner: &std::sync::Weak<Inner>| Inner {
            config: Arc::new(config),
            provider,
            session,
            registry,
            replay: RunHistory::new(replay),
            cluster,
            tasks: TaskTracker::new(),
            draining: AtomicBool::new(false),
            background: CancellationToken::new(),
            cooldowns: Arc::default(),
            approvals,
            tools: tools.with(Arc::new(SessionsSend::new({
                let runner = runner.clone();
                Box::new(move || {
                    runner
                        .upgrade()
                        .map(|inner| Arc::new(RunnerService { inner }) as Arc<dyn RunnerApi>)
                })
            }))),
            tenant_providers,
            nodes,
        });
        Self { inner }
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

    /// Lets agents use the nodes in `nodes` (the edges' node registry): each
    /// run offers its user's live nodes' commands as tools
    /// ([`crate::tools::node_commands`]; agents with a tool allowlist need
    /// `nodes` in it, or the `node_*` names), and `exec` (when configured)
    /// may run on a node (`host: "node"`). Calls go out on the bus (a cluster
    /// runner's Redis) to the edge holding the node, and come back on this
    /// runner's reply topic (`nodes.<runner id>`). Without it, runs have no
    /// node tools.
    pub fn nodes(mut self, nodes: Arc<dyn NodeRegistry>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// Subscribes the node reply topic on `bus`, when nodes are given.
    async fn listen_nodes(
        nodes: Option<Arc<dyn NodeRegistry>>,
        bus: Arc<dyn EventBus>,
        runner_id: &str,
    ) -> Result<Option<(Arc<Nodes>, Replies)>, ServiceError> {
        match nodes {
            Some(registry) => Ok(Some(
                Nodes::listen(bus, registry, reply_topic(runner_id)).await?,
            )),
            None => Ok(None),
        }
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
            let local_id = format!("local-{}", uuid::Uuid::new_v4().simple());
            let nodes = Self::listen_nodes(self.nodes, self.bus.clone(), &local_id).await?;
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
            let (nodes, replies) = nodes.unzip();
            let service = RunnerService::assemble(Parts {
                config: self.config,
                provider,
                session: self.session,
                replay,
                cluster: None,
                approvals,
                auth: self.auth,
                nodes,
            });
            if let Some(replies) = replies {
                replies.spawn(service.inner.background.clone());
            }
            return Ok(service);
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
        let nodes = Self::listen_nodes(self.nodes, bus.clone(), &options.runner_id).await?;
        let (nodes, replies) = nodes.unzip();
        let cluster = Cluster::new(options, registry, Arc::new(RedisBus::new(&redis)));
        let service = RunnerService::assemble(Parts {
            config: self.config,
            provider,
            session: self.session,
            replay,
            cluster: Some(cluster),
            approvals,
            auth: self.auth,
            nodes,
        });
        if let Some(replies) = replies {
            replies.spawn(service.inner.background.clone());
        }
        if let Some(cluster) = &service.inner.cluster {
            background::start(&service.inner, cluster, service.inner.background.clone()).await?;
        }
        Ok(service)
    }
}
