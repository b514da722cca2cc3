//! Wiring of the runner: here, in-process or (given Redis) one runner of the
//! cluster sharing it, with its gRPC server and a drain for shutdown;
//! elsewhere, a balanced channel over every runner (`dns://<host>:<port>` or
//! a URL list).
//!
//! Invariant: on shutdown a runner here is marked `NOT_SERVING`, stops taking
//! runs and lets in-flight ones finish within its grace while gRPC keeps
//! serving (forwarded aborts and history reads still work); only then does
//! the process stop its gRPC server.

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::auth::AuthClient;
use clawgate_proto::runner::{RunnerApi, RunnerClient, RunnerGrpc};
use clawgate_proto::session::SessionClient;
use clawgate_runner::tools::exec::ExecConfig;
use clawgate_runner::{ClusterOptions, ProviderConfig, ProviderKind, RunnerConfig, RunnerService};
use clawgate_runtime::balance::balanced_channel;
use clawgate_runtime::bus::redis::RedisBus;

use super::wired::{Context, Drain, GrpcService, Wired, here_or_there};
use crate::cli::{ClusterArgs, CommonArgs, Service};
use crate::health::{Dependency, Health};

pub const GRPC_NAME: &str = "clawgate.runner.v1.RunnerService";

/// Wires the runner; one here calls `session`.
pub async fn wire(
    cx: &Context<'_>,
    session: &Wired<SessionClient>,
    auth: &Wired<AuthClient>,
) -> anyhow::Result<Wired<RunnerClient>> {
    here_or_there(
        cx,
        Service::Runner,
        async || here(cx, session.needed_by(Service::Runner)?, auth.handle.clone()).await,
        |spec| {
            Ok(RunnerClient::grpc(
                balanced_channel(spec)?,
                cx.signer.clone(),
            ))
        },
    )
    .await
}

async fn here(
    cx: &Context<'_>,
    session: SessionClient,
    auth: Option<AuthClient>,
) -> anyhow::Result<Wired<RunnerClient>> {
    let plan = cx.plan;
    // A runner without auth here reaches it when given its URL (optional:
    // only tenants' own providers with key secrets need it).
    let auth = match (auth, plan.url(Service::Auth)) {
        (Some(auth), _) => Some(auth),
        (None, Some(url)) => Some(AuthClient::connect_lazy(url, cx.signer.clone())?),
        (None, None) => None,
    };
    // Agents use the nodes the edges register (their commands as tools,
    // `exec` on a node).
    let mut builder =
        RunnerService::builder(runner_config(&plan.common), session, plan.bus.clone())
            .approvers(plan.presence.clone())
            .nodes(plan.nodes.clone());
    match auth {
        Some(auth) => builder = builder.auth(auth),
        None => tracing::warn!(
            "the runner has no auth service (--auth-url): tenants' own providers cannot use key secrets"
        ),
    }
    let mut dependencies = Vec::new();
    let runner = match &plan.redis {
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
    let service: Arc<dyn RunnerApi> = Arc::new(runner.clone());
    let server = RunnerGrpc::new(service.clone(), cx.verifier.clone()).into_server();
    let grpc = GrpcService::new(GRPC_NAME, dependencies, move |routes| {
        routes.add_service(server);
    });
    Ok(Wired {
        drain: Some(drain(runner, plan.runner_shutdown_grace, cx.health.clone())),
        ..Wired::serving(RunnerClient::local(service), grpc)
    })
}

/// Stops the runner taking runs and waits (within `grace`) for its runs.
fn drain(runner: RunnerService, grace: Duration, health: Health) -> Drain {
    Box::pin(async move {
        health.stopping(GRPC_NAME).await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "runner draining");
        runner.shutdown(grace).await;
        tracing::info!("runner drained");
    })
}

fn runner_config(common: &CommonArgs) -> RunnerConfig {
    let provider = common
        .model_base_url
        .as_ref()
        .map(|base_url| ProviderConfig {
            kind: ProviderKind::parse(&common.model_provider).unwrap_or_default(),
            base_url: base_url.clone(),
            api_key: common.model_api_key.clone(),
            model: common.model.clone(),
        });
    RunnerConfig {
        provider,
        exec: common.exec_workspace.clone().map(ExecConfig::new),
        approval_timeout: Duration::from_millis(common.approval_timeout_ms.max(1)),
        coalesce_window: Duration::from_millis(common.coalesce_ms),
        ..RunnerConfig::default()
    }
}

/// The runner's cluster settings from the flags.
pub fn cluster_options(args: &ClusterArgs) -> ClusterOptions {
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
