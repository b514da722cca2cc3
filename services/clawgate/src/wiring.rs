//! Composes the services one process runs and serves them.
//!
//! Order of construction follows the dependencies: session, auth, runner (calls
//! session), edge (calls all three). A service in this process is wired with its
//! local client; one elsewhere with a lazily connecting gRPC client, so a process
//! can start before its peers are up. Rate limits (the auth service's failed-auth
//! lockout, the edge's pre-auth socket budget) are shared through Redis when the
//! process has one, and kept in the process otherwise.
//!
//! A runner given Redis joins the cluster of runners sharing it (run leases,
//! forwarded aborts, reaper, replay histories); the edge reaches runners through
//! a balanced channel (`dns://<headless service>:<port>` or a URL list). Every
//! gRPC service reports its health ([`crate::health`]). On shutdown the edge
//! drains its sockets; a runner is marked `NOT_SERVING`, lets its in-flight runs
//! finish within its grace while gRPC keeps serving (forwarded aborts and
//! history reads still work), then the gRPC server stops.
//!
//! Databases: each storing service opens its own pool ([`crate::database`]),
//! which warns when its role bypasses row-level security. The auth service gets
//! the keyring of `CLAWGATE_ENCRYPTION_KEY` (tenant secrets); the key never
//! appears in logs or errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clawgate_auth::keyring::Keyring;
use clawgate_auth::{AuthConfig, AuthService, GatewayToken};
use clawgate_edge::{Edge, EdgeConfig, EdgeServices};
use clawgate_proto::auth::{AuthClient, AuthGrpc};
use clawgate_proto::runner::{RunnerClient, RunnerGrpc};
use clawgate_proto::session::{SessionClient, SessionGrpc};
use clawgate_runner::{ClusterOptions, ProviderConfig, RunnerConfig, RunnerService};
use clawgate_runtime::bus::BusError;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::device_registry::{DeviceRegistry, RedisDeviceRegistry};
use clawgate_runtime::internal_token::KeySet;
use clawgate_runtime::limits::fallback::FailOpenSocketBudget;
use clawgate_runtime::limits::memory::{MemoryAuthLimiter, MemorySocketBudget};
use clawgate_runtime::limits::redis::{RedisAuthLimiter, RedisLimits, RedisSocketBudget};
use clawgate_runtime::limits::{AuthLimitConfig, AuthLimiter, SocketBudget, SocketBudgetConfig};
use clawgate_runtime::redis::Redis;
use clawgate_session::SessionService;
use tokio::net::TcpListener;

use crate::cli::{ClusterArgs, CommonArgs, ServeArgs};
use crate::database;
pub use crate::database::database_url_for;
use crate::health::{Dependency, Health, ProbeTask};

const RUNNER_SERVICE: &str = "clawgate.runner.v1.RunnerService";
/// How often a session process purges sessions whose retention has passed.
const RETENTION_PURGE_EVERY: Duration = Duration::from_secs(60 * 60);

/// The services of one process and how to reach the others.
pub struct Plan {
    pub common: CommonArgs,
    pub services: Vec<String>,
    /// Database URL per storing service (already specific to that service).
    pub database_url: Option<String>,
    pub bus: Arc<dyn EventBus>,
    pub auth_url: Option<String>,
    pub runner_url: Option<String>,
    pub session_url: Option<String>,
    pub gateway_token: Option<GatewayToken>,
    pub migrate: bool,
    /// Keys of the signed call tokens every gRPC hop carries. `None` gives a
    /// throwaway key, which only suits a process without gRPC hops (`up`).
    pub signing_keys: Option<KeySet>,
    /// The process's Redis (the bus is on it too): shared rate limits, the
    /// cluster of runners, the device registry. `None` keeps them in this
    /// process.
    pub redis: Option<Redis>,
    /// How a runner takes part in that cluster.
    pub runner_cluster: ClusterOptions,
    /// How long a stopping runner lets in-flight runs finish.
    pub runner_shutdown_grace: Duration,
}

/// The rate-limit store of `plan`, if it has Redis.
fn redis_limits(plan: &Plan) -> Option<RedisLimits> {
    plan.redis.as_ref().map(RedisLimits::new)
}

/// The failed-auth lockout from the flags.
fn auth_limiter(plan: &Plan, redis: Option<&RedisLimits>) -> Arc<dyn AuthLimiter> {
    let flags = &plan.common.auth;
    let config = AuthLimitConfig {
        max_failures: flags.auth_max_failures,
        window: Duration::from_millis(flags.auth_failure_window_ms),
        lockout: Duration::from_millis(flags.auth_lockout_ms),
        exempt_loopback: !flags.auth_limit_loopback,
        ..AuthLimitConfig::default()
    };
    match redis {
        Some(redis) => Arc::new(RedisAuthLimiter::new(redis.clone(), config)),
        None => Arc::new(MemoryAuthLimiter::new(config)),
    }
}

/// The pre-auth socket budget from the flags: the Redis one failing open to a
/// per-process one, or only the per-process one.
fn socket_budget(
    plan: &Plan,
    redis: Option<&RedisLimits>,
) -> anyhow::Result<Arc<dyn SocketBudget>> {
    let edge = &plan.common.edge;
    if edge.preauth_sockets_per_ip == 0 {
        bail!("--preauth-sockets-per-ip (CLAWGATE_PREAUTH_SOCKETS_PER_IP) must be at least 1");
    }
    // A slot outlives the handshake timeout, after which every such socket is closed.
    let permit_ttl = Duration::from_millis(edge.handshake_timeout_ms) + Duration::from_secs(5);
    let config = SocketBudgetConfig {
        max_per_ip: edge.preauth_sockets_per_ip,
        permit_ttl: permit_ttl.max(SocketBudgetConfig::default().permit_ttl),
        ..SocketBudgetConfig::default()
    };
    let local: Arc<dyn SocketBudget> = Arc::new(MemorySocketBudget::new(config.clone()));
    Ok(match redis {
        Some(redis) => {
            let shared: Arc<dyn SocketBudget> =
                Arc::new(RedisSocketBudget::new(redis.clone(), config));
            Arc::new(FailOpenSocketBudget::new(shared, local))
        }
        None => local,
    })
}

/// What a process built: clients for every service it runs or calls.
pub struct Wired {
    pub auth: Option<AuthClient>,
    pub runner: Option<RunnerClient>,
    pub session: Option<SessionClient>,
    /// gRPC services to serve, when this process runs any non-edge service.
    pub grpc: Option<tonic::service::Routes>,
    pub edge: Option<Edge>,
    /// The runner of this process, drained on shutdown.
    pub runner_service: Option<RunnerService>,
    pub runner_shutdown_grace: Duration,
    /// Health of the gRPC services of this process.
    pub health: Health,
    /// Keeps the dependency probes running.
    pub probes: Option<ProbeTask>,
    /// Stops the session retention task when dropped.
    pub retention: Option<tokio_util::sync::DropGuard>,
}

impl Plan {
    fn runs(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

fn client_url(url: &Option<String>, service: &str) -> anyhow::Result<String> {
    url.clone().with_context(|| {
        format!(
            "the {service} service is not in this process: set --{service}-url (CLAWGATE_{}_URL)",
            service.to_uppercase()
        )
    })
}

/// Builds every service the plan names.
pub async fn wire(plan: &Plan) -> anyhow::Result<Wired> {
    let mut routes = tonic::service::RoutesBuilder::default();
    let mut serves_grpc = false;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(health_reporter);
    let keys = plan.signing_keys.clone().unwrap_or_else(KeySet::generate);
    let (signer, verifier) = (keys.signer(), keys.verifier());
    let redis = if plan.runs("auth") || plan.runs("edge") {
        redis_limits(plan)
    } else {
        None
    };

    let mut retention = None;
    let session = if plan.runs("session") {
        let url = plan
            .database_url
            .as_deref()
            .context("the session service needs --database-url (CLAWGATE_DATABASE_URL)")?;
        let db = database::open(url, "session").await?;
        let retention_days = plan.common.session_retention_days;
        let mut service = SessionService::from_database(db.clone());
        if retention_days > 0 {
            service = service.with_retention(Duration::from_secs(retention_days * 86_400));
        }
        if plan.migrate {
            service.migrate().await?;
        }
        // Soft-deleted sessions are purged once their retention has passed
        // (0 days: kept forever). The guard stops the task with the process.
        if retention_days > 0 {
            let stop = tokio_util::sync::CancellationToken::new();
            service.spawn_retention(RETENTION_PURGE_EVERY, stop.clone());
            retention = Some(stop.drop_guard());
        }
        let service: Arc<dyn clawgate_proto::session::SessionApi> = Arc::new(service);
        routes.add_service(SessionGrpc::new(service.clone(), verifier.clone()).into_server());
        health
            .add(
                "clawgate.session.v1.SessionService",
                vec![Dependency::Database(db)],
            )
            .await;
        serves_grpc = true;
        Some(SessionClient::local(service))
    } else if plan.runs("runner") || plan.runs("edge") {
        Some(SessionClient::connect_lazy(
            &client_url(&plan.session_url, "session")?,
            signer.clone(),
        )?)
    } else {
        None
    };

    let auth = if plan.runs("auth") {
        let Some(token) = plan.gateway_token.clone() else {
            bail!(
                "the auth service needs a gateway token: set --gateway-token (CLAWGATE_GATEWAY_TOKEN)"
            );
        };
        let keyring = keyring(&plan.common)?;
        if keyring.is_none() {
            tracing::warn!(
                "no CLAWGATE_ENCRYPTION_KEY: tenant secrets cannot be stored (secrets.set fails)"
            );
        }
        let config = AuthConfig {
            gateway_token: token,
            default_tenant_id: plan.common.default_tenant.clone(),
            default_user_id: plan.common.default_user.clone(),
            owner_ids: plan.common.owner_ids.clone(),
            auto_approve_local: plan.common.auth.pairing_auto_approve_local,
            keyring,
        };
        // Devices, tokens, pairing requests and API keys must outlive the process
        // and be shared by every auth replica: a database is required.
        let url = plan
            .database_url
            .as_deref()
            .context("the auth service needs --database-url (CLAWGATE_DATABASE_URL)")?;
        let db = database::open(url, "auth").await?;
        let auth_dependencies = vec![Dependency::Database(db.clone())];
        let service = AuthService::from_database(db, config);
        if plan.migrate {
            service.migrate().await?;
        }
        let service = service.with_limiter(auth_limiter(plan, redis.as_ref()));
        let service: Arc<dyn clawgate_proto::auth::AuthApi> = Arc::new(service);
        routes.add_service(AuthGrpc::new(service.clone(), verifier.clone()).into_server());
        health
            .add("clawgate.auth.v1.AuthService", auth_dependencies)
            .await;
        serves_grpc = true;
        Some(AuthClient::local(service))
    } else if plan.runs("edge") {
        Some(AuthClient::connect_lazy(
            &client_url(&plan.auth_url, "auth")?,
            signer.clone(),
        )?)
    } else {
        None
    };

    let mut runner_service = None;
    let runner = if plan.runs("runner") {
        let session = session.clone().context("runner needs a session client")?;
        let builder =
            RunnerService::builder(runner_config(&plan.common), session, plan.bus.clone());
        let mut dependencies = Vec::new();
        let built = match &plan.redis {
            Some(redis) => {
                dependencies.push(Dependency::Bus(Arc::new(RedisBus::new(redis))));
                tracing::info!(runner_id = %plan.runner_cluster.runner_id, "runner joins the cluster");
                builder
                    .cluster(redis.clone(), plan.runner_cluster.clone())
                    .build()
                    .await?
            }
            None => builder.build().await?,
        };
        runner_service = Some(built.clone());
        let service: Arc<dyn clawgate_proto::runner::RunnerApi> = Arc::new(built);
        routes.add_service(RunnerGrpc::new(service.clone(), verifier.clone()).into_server());
        health.add(RUNNER_SERVICE, dependencies).await;
        serves_grpc = true;
        Some(RunnerClient::local(service))
    } else if plan.runs("edge") {
        let spec = client_url(&plan.runner_url, "runner")?;
        let channel = clawgate_runtime::balance::balanced_channel(&spec)?;
        Some(RunnerClient::grpc(channel, signer.clone()))
    } else {
        None
    };

    let edge = if plan.runs("edge") {
        let services = EdgeServices {
            auth: auth.clone().context("edge needs auth")?,
            runner: runner.clone().context("edge needs runner")?,
            session: session.clone().context("edge needs session")?,
            bus: plan.bus.clone(),
            socket_budget: socket_budget(plan, redis.as_ref())?,
            devices: match &plan.redis {
                Some(redis) => {
                    Some(Arc::new(RedisDeviceRegistry::new(redis)) as Arc<dyn DeviceRegistry>)
                }
                None => None,
            },
        };
        let edge = &plan.common.edge;
        let config = EdgeConfig {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_payload_bytes: edge.max_payload_bytes,
            socket_queue_bytes: edge.socket_queue_bytes,
            handshake_timeout: Duration::from_millis(edge.handshake_timeout_ms),
            tick_interval: Duration::from_millis(edge.tick_interval_ms),
            drain_timeout: Duration::from_millis(edge.drain_timeout_ms),
            restart_expected_ms: (edge.restart_expected_ms > 0).then_some(edge.restart_expected_ms),
            ..EdgeConfig::default()
        };
        Some(Edge::start(config, services).await?)
    } else {
        None
    };

    let grpc = serves_grpc.then(|| {
        routes.add_service(health_service);
        routes.routes()
    });
    let probes = serves_grpc.then(|| health.spawn_probes());
    Ok(Wired {
        auth,
        runner,
        session,
        grpc,
        edge,
        runner_service,
        runner_shutdown_grace: plan.runner_shutdown_grace,
        health,
        probes,
        retention,
    })
}

/// The keyring of `CLAWGATE_ENCRYPTION_KEY`, if one is configured. The error
/// names the position of a bad key, never a key.
fn keyring(common: &CommonArgs) -> anyhow::Result<Option<Keyring>> {
    let Some(spec) = common
        .encryption_key
        .as_ref()
        .filter(|key| !key.expose().trim().is_empty())
    else {
        return Ok(None);
    };
    let keyring = Keyring::from_config(spec.expose())
        .context("invalid CLAWGATE_ENCRYPTION_KEY (--encryption-key)")?;
    tracing::info!(key_id = %keyring.active_key_id(), "tenant secrets sealed with the configured key");
    Ok(Some(keyring))
}

fn runner_config(common: &CommonArgs) -> RunnerConfig {
    let provider = common
        .model_base_url
        .as_ref()
        .map(|base_url| ProviderConfig {
            base_url: base_url.clone(),
            api_key: common.model_api_key.clone(),
            model: common.model.clone(),
        });
    RunnerConfig {
        provider,
        coalesce_window: Duration::from_millis(common.coalesce_ms),
        ..RunnerConfig::default()
    }
}

/// Serves what `wire` built until `shutdown` resolves.
pub async fn run_wired(
    wired: Wired,
    edge_listener: Option<TcpListener>,
    grpc_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    // A runner stops taking runs and lets in-flight ones finish (within its
    // grace) while gRPC keeps serving; only then does the gRPC server stop.
    let drain_runner = {
        let stop = stopped();
        let (runner, grace, health) = (
            wired.runner_service.clone(),
            wired.runner_shutdown_grace,
            wired.health.clone(),
        );
        async move {
            stop.await;
            if let Some(runner) = runner {
                health.stopping(RUNNER_SERVICE).await;
                tracing::info!(grace_ms = grace.as_millis() as u64, "runner draining");
                runner.shutdown(grace).await;
                tracing::info!("runner drained");
            }
        }
    };
    let _probes = wired.probes;
    let _retention = wired.retention;
    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(routes), Some(listener)) = (wired.grpc, grpc_listener) {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop = drain_runner;
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .context("gRPC server failed")
        });
    } else {
        tasks.spawn(async move {
            drain_runner.await;
            Ok(())
        });
    }
    if let (Some(edge), Some(listener)) = (wired.edge, edge_listener) {
        let stop = stopped();
        tasks.spawn(async move {
            edge.serve(listener, stop)
                .await
                .context("edge server failed")
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("server task panicked")??;
    }
    Ok(())
}

/// `clawgate serve`.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The process's one Redis handle; it fails as the bus on it would.
    let redis = match &args.redis_url {
        Some(url) => Some(
            Redis::connect(url, &args.redis_prefix)
                .await
                .map_err(BusError::from)?,
        ),
        None => None,
    };
    let bus: Arc<dyn EventBus> = match &redis {
        Some(redis) => Arc::new(RedisBus::new(redis)),
        None => Arc::new(MemoryBus::new()),
    };
    let plan = Plan {
        gateway_token: args.common.gateway_token.clone().map(GatewayToken::new),
        common: args.common.clone(),
        services: args.services.clone(),
        database_url: args.database_url.clone(),
        bus,
        auth_url: args.auth_url.clone(),
        runner_url: args.runner_url.clone(),
        session_url: args.session_url.clone(),
        migrate: args.migrate,
        signing_keys: Some(signing_keys(args.signing_key.as_deref())?),
        redis,
        runner_cluster: cluster_options(&args.cluster),
        runner_shutdown_grace: Duration::from_millis(args.cluster.runner_shutdown_grace_ms),
    };
    let wired = wire(&plan).await?;
    let grpc_listener = match wired.grpc {
        Some(_) => Some(
            TcpListener::bind(args.grpc_listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.grpc_listen))?,
        ),
        None => None,
    };
    let edge_listener = match wired.edge {
        Some(_) => Some(
            TcpListener::bind(args.common.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.common.listen))?,
        ),
        None => None,
    };
    if let Some(listener) = &grpc_listener {
        tracing::info!(addr = %listener.local_addr()?, services = ?args.services, "gRPC listening");
    }
    if let Some(listener) = &edge_listener {
        tracing::info!(addr = %listener.local_addr()?, "edge listening");
    }
    run_wired(wired, edge_listener, grpc_listener, shutdown).await
}

/// The runner's cluster settings from the flags.
fn cluster_options(args: &ClusterArgs) -> ClusterOptions {
    let runner_id = args
        .runner_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("runner-{}", uuid::Uuid::new_v4().simple()));
    let defaults = ClusterOptions::default();
    ClusterOptions {
        runner_id,
        lease: Duration::from_millis(args.run_lease_ms.max(1)),
        renew_interval: None,
        reap_interval: Duration::from_millis(args.reap_interval_ms.max(1)),
        replay: clawgate_runtime::replay::ReplayOptions {
            max_events_per_run: args.replay_max_events.max(1),
            retention: Duration::from_millis(args.replay_retention_ms.max(1)),
            ..defaults.replay.clone()
        },
        ..defaults
    }
}

/// The call-token keys of `serve`, which always has gRPC hops, so a key is required.
fn signing_keys(pem: Option<&str>) -> anyhow::Result<KeySet> {
    let Some(pem) = pem else {
        bail!(
            "serve needs a signing key for its gRPC hops: set CLAWGATE_SIGNING_KEY (or \
             --signing-key) to an Ed25519 private key in PEM, the same in every process \
             (e.g. from `openssl genpkey -algorithm ed25519`)"
        );
    };
    KeySet::from_pem(pem).context("invalid CLAWGATE_SIGNING_KEY")
}
