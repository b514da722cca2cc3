//! Wiring of the WebSocket edge: the clients of the services it calls, the
//! event bus, the pre-auth socket budget, presence (on Redis when the process
//! has it, else in-process) and (given Redis) the device registry. The edge is never reached over gRPC: a process serves it or
//! does not have it.
//!
//! Invariant: with Redis the socket budget is shared by every edge and fails
//! open to a per-process one while Redis is unreachable, so an outage never
//! locks every client out.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clawgate_edge::{Edge, EdgeConfig, EdgeServices};
use clawgate_proto::auth::AuthClient;
use clawgate_proto::runner::RunnerClient;
use clawgate_proto::session::SessionClient;
use clawgate_runtime::device_registry::{DeviceRegistry, RedisDeviceRegistry};
use clawgate_runtime::limits::fallback::FailOpenSocketBudget;
use clawgate_runtime::limits::memory::MemorySocketBudget;
use clawgate_runtime::limits::redis::{RedisLimits, RedisSocketBudget};
use clawgate_runtime::limits::{SocketBudget, SocketBudgetConfig};

use super::Plan;
use super::wired::{Context, Wired, here_or_there};
use crate::cli::Service;

/// The clients an edge calls.
pub struct Peers<'a> {
    pub auth: &'a Wired<AuthClient>,
    pub runner: &'a Wired<RunnerClient>,
    pub session: &'a Wired<SessionClient>,
}

pub async fn wire(cx: &Context<'_>, peers: Peers<'_>) -> anyhow::Result<Wired<Edge>> {
    here_or_there(
        cx,
        Service::Edge,
        async || here(cx.plan, peers).await,
        |_| bail!("the edge is not called over gRPC"),
    )
    .await
}

async fn here(plan: &Plan, peers: Peers<'_>) -> anyhow::Result<Wired<Edge>> {
    let services = EdgeServices {
        auth: peers.auth.needed_by(Service::Edge)?,
        runner: peers.runner.needed_by(Service::Edge)?,
        session: peers.session.needed_by(Service::Edge)?,
        bus: plan.bus.clone(),
        socket_budget: socket_budget(plan)?,
        devices: plan
            .redis
            .as_ref()
            .map(|redis| Arc::new(RedisDeviceRegistry::new(redis)) as Arc<dyn DeviceRegistry>),
        presence: plan.presence.clone(),
        nodes: plan.nodes.clone(),
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
        topic_linger: Duration::from_millis(edge.topic_linger_ms),
        effective_config: Some(super::config_snapshot::redacted(plan)),
        ..EdgeConfig::default()
    };
    Ok(Wired::handle(Edge::start(config, services).await?))
}

/// The pre-auth socket budget from the flags: the Redis one failing open to a
/// per-process one, or only the per-process one.
fn socket_budget(plan: &Plan) -> anyhow::Result<Arc<dyn SocketBudget>> {
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
    Ok(match &plan.redis {
        Some(redis) => {
            let shared: Arc<dyn SocketBudget> =
                Arc::new(RedisSocketBudget::new(RedisLimits::new(redis), config));
            Arc::new(FailOpenSocketBudget::new(shared, local))
        }
        None => local,
    })
}
