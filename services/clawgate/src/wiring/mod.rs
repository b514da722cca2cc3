//! Composes the services one process runs and serves them.
//!
//! [`wire`] is one call per service, in dependency order: session, auth,
//! runner (calls session), edge (calls all three). Each lives in its own
//! module (`session`, `auth`, `runner`, `edge`) and returns a [`Wired`]: the
//! handle the rest of the process uses, its gRPC server, the work to do on
//! shutdown and a guard of its background tasks. Whether a service is built
//! here or reached over gRPC is decided in one place ([`here_or_there`]): one
//! in this process gets its local client; one elsewhere a lazily connecting
//! gRPC client, so a process can start before its peers are up.
//!
//! Adding a service: a variant of [`crate::cli::Service`] (its name and the
//! services it calls), a module here with its `wire`, one line in [`wire`].
//!
//! Redis: a process opens at most one [`Redis`] handle (in `serve`), and every
//! Redis user of the process takes it: the bus, the rate limits (the auth
//! service's failed-auth lockout, the edge's pre-auth socket budget), a
//! runner's cluster (run leases, forwarded aborts, reaper, replay histories)
//! and the edge's device registry. Without it all of these stay in the process.
//!
//! Every gRPC service reports its health ([`crate::health`]). On shutdown the
//! edge drains its sockets; the services' drains (a runner finishing its runs)
//! run while gRPC keeps serving, then the gRPC server stops.
//!
//! Databases: each storing service opens its own pool ([`crate::database`]),
//! which warns when its role bypasses row-level security. The auth service gets
//! the keyring of `CLAWGATE_ENCRYPTION_KEY` (tenant secrets); the key never
//! appears in logs or errors.

mod auth;
mod config_snapshot;
mod edge;
mod runner;
mod serve;
mod session;
mod wired;

use clawgate_runtime::nodes::NodeRegistry;
use clawgate_runtime::nodes::memory::MemoryNodeRegistry;
use clawgate_runtime::nodes::redis::RedisNodeRegistry;
use clawgate_runtime::presence::PresenceRegistry;
use clawgate_runtime::presence::memory::MemoryPresence;
use clawgate_runtime::presence::redis::RedisPresence;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clawgate_auth::GatewayToken;
use clawgate_edge::Edge;
use clawgate_runner::ClusterOptions;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::internal_token::KeySet;
use clawgate_runtime::redis::Redis;
use tokio::net::TcpListener;

use crate::cli::{CommonArgs, Service};
pub use crate::database::database_url_for;
use crate::health::{Health, ProbeTask};
pub use serve::serve;
pub use wired::{Drain, GrpcService, Wired, here_or_there};

/// The services of one process and how to reach the others.
pub struct Plan {
    pub common: CommonArgs,
    pub services: Vec<Service>,
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
    /// Who is connected (Redis with `redis`, else this process's): the edge
    /// lists connections and approvers in it, the runner reads approvers.
    pub presence: Arc<dyn PresenceRegistry>,
    /// Where nodes are (Redis with `redis`, else this process's): the edge
    /// holding a node writes it, every edge and runner reads it.
    pub nodes: Arc<dyn NodeRegistry>,
}

/// The node registry of a process with `redis` (or without).
pub fn node_registry(redis: Option<&Redis>) -> Arc<dyn NodeRegistry> {
    match redis {
        Some(redis) => Arc::new(RedisNodeRegistry::new(redis)),
        None => Arc::new(MemoryNodeRegistry::new()),
    }
}

/// The presence registry of a process with `redis` (or without).
pub fn presence_registry(redis: Option<&Redis>) -> Arc<dyn PresenceRegistry> {
    match redis {
        Some(redis) => Arc::new(RedisPresence::new(redis)),
        None => Arc::new(MemoryPresence::new()),
    }
}

impl Plan {
    pub fn runs(&self, service: Service) -> bool {
        self.services.contains(&service)
    }

    /// Where `service` is when it is not in this process.
    pub fn url(&self, service: Service) -> Option<&str> {
        match service {
            Service::Auth => self.auth_url.as_deref(),
            Service::Runner => self.runner_url.as_deref(),
            Service::Session => self.session_url.as_deref(),
            Service::Edge => None,
        }
    }
}

/// What a process built: the edge to serve, the gRPC services to serve, and
/// what must live (or run on shutdown) as long as they do.
pub struct Wiring {
    /// gRPC services to serve, when this process runs any non-edge service.
    pub grpc: Option<tonic::service::Routes>,
    pub edge: Option<Edge>,
    /// Run on shutdown while gRPC still serves.
    drains: Vec<Drain>,
    /// Keeps the dependency probes running.
    probes: Option<ProbeTask>,
    /// Stop the services' background tasks when dropped.
    guards: Vec<tokio_util::sync::DropGuard>,
}

/// Collects the [`Wired`] parts of every service into one process.
struct Assembly {
    routes: tonic::service::RoutesBuilder,
    serves_grpc: bool,
    health: Health,
    drains: Vec<Drain>,
    guards: Vec<tokio_util::sync::DropGuard>,
}

impl Assembly {
    /// Takes what the process needs from `wired` and leaves its handle.
    async fn take<H>(&mut self, wired: &mut Wired<H>) {
        if let Some(mut grpc) = wired.grpc.take() {
            self.health
                .add(grpc.name, std::mem::take(&mut grpc.dependencies))
                .await;
            grpc.add_to(&mut self.routes);
            self.serves_grpc = true;
        }
        self.drains.extend(wired.drain.take());
        self.guards.extend(wired.guard.take());
    }
}

/// Builds every service the plan names.
pub async fn wire(plan: &Plan) -> anyhow::Result<Wiring> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(health_reporter);
    let keys = plan.signing_keys.clone().unwrap_or_else(KeySet::generate);
    let cx = wired::Context {
        plan,
        signer: keys.signer(),
        verifier: keys.verifier(),
        health: health.clone(),
    };
    let mut assembly = Assembly {
        routes: tonic::service::RoutesBuilder::default(),
        serves_grpc: false,
        health,
        drains: Vec::new(),
        guards: Vec::new(),
    };

    let mut session = session::wire(&cx).await?;
    assembly.take(&mut session).await;
    let mut auth = auth::wire(&cx).await?;
    assembly.take(&mut auth).await;
    let mut runner = runner::wire(&cx, &session, &auth).await?;
    assembly.take(&mut runner).await;
    let peers = edge::Peers {
        auth: &auth,
        runner: &runner,
        session: &session,
    };
    let mut edge = edge::wire(&cx, peers).await?;
    assembly.take(&mut edge).await;

    let Assembly {
        mut routes,
        serves_grpc,
        health,
        drains,
        guards,
    } = assembly;
    let grpc = serves_grpc.then(|| {
        routes.add_service(health_service);
        routes.routes()
    });
    Ok(Wiring {
        grpc,
        edge: edge.handle,
        drains,
        probes: serves_grpc.then(|| health.spawn_probes()),
        guards,
    })
}

/// Serves what `wire` built until `shutdown` resolves.
pub async fn run_wired(
    wired: Wiring,
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
    // The services drain (a runner lets in-flight runs finish within its
    // grace) while gRPC keeps serving; only then does the gRPC server stop.
    let drain = {
        let stop = stopped();
        let drains = wired.drains;
        async move {
            stop.await;
            for drain in drains {
                drain.await;
            }
        }
    };
    let _probes = wired.probes;
    let _guards = wired.guards;
    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(routes), Some(listener)) = (wired.grpc, grpc_listener) {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, drain)
                .await
                .context("gRPC server failed")
        });
    } else {
        tasks.spawn(async move {
            drain.await;
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
