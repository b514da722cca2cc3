//! `clawgate serve`: the plan of one process from its flags (its services,
//! its peers' URLs, its one Redis handle, its signing keys), then [`wire`] and
//! [`run_wired`] until shutdown.
//!
//! Invariants: Redis is opened once per process, here, and only when
//! `--redis-url` is set; `serve` never starts without a signing key, since
//! every one of its gRPC hops carries a signed call token.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clawgate_auth::GatewayToken;
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::bus::{BusError, EventBus};
use clawgate_runtime::internal_token::KeySet;
use clawgate_runtime::redis::Redis;
use tokio::net::TcpListener;

use super::runner::cluster_options;
use super::{Plan, run_wired, wire};
use crate::cli::{ServeArgs, Service};

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
    let has = |service: Service| args.services.contains(&service);
    if redis.is_none() && has(Service::Session) && !has(Service::Edge) {
        tracing::warn!(
            "the session service runs without --redis-url and without an edge: \
             its session changes reach no client (sessions.changed, session.message)"
        );
    }
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
        presence: super::presence_registry(redis.as_ref()),
        nodes: super::node_registry(redis.as_ref()),
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
        let services: Vec<&str> = args.services.iter().map(|s| s.name()).collect();
        tracing::info!(addr = %listener.local_addr()?, ?services, "gRPC listening");
    }
    if let Some(listener) = &edge_listener {
        tracing::info!(addr = %listener.local_addr()?, "edge listening");
    }
    run_wired(wired, edge_listener, grpc_listener, shutdown).await
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
