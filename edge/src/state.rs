//! The state one edge process shares between its router and every socket:
//! the services it calls, its configuration, its hub, the count of live
//! sockets (for the drain on shutdown), its listed connections (presence), and the facts of one socket that
//! handshakes and dialects need.
//!
//! Invariant: this module knows no dialect and no socket lifecycle; the
//! dialects, the socket task and the method families all depend on it, never
//! the other way round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use clawgate_proto::auth::AuthClient;
use clawgate_proto::runner::RunnerClient;
use clawgate_proto::session::SessionClient;
use clawgate_runtime::bus::EventBus;
use clawgate_runtime::limits::SocketBudget;
use clawgate_runtime::nodes::NodeRegistry;
use clawgate_runtime::presence::PresenceRegistry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::approvers::EdgeApprovers;
use crate::config::EdgeConfig;
use crate::health_cache::HealthCache;
use crate::hub::Hub;
use crate::nodes::EdgeNodes;
use crate::presence_table::EdgePresence;
use crate::registry::{DeviceRegistry, LocalDevices};

/// Where a socket comes from.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote_addr: String,
    /// Loopback without proxy headers.
    pub is_local: bool,
    /// The upgrade request carried an `Origin` header (a browser).
    pub has_origin: bool,
}

/// Facts about a socket that handshakes need.
#[derive(Debug, Clone)]
pub struct SocketInfo {
    pub conn_id: String,
    pub nonce: String,
    pub peer: Peer,
}

/// The services the edge calls, local or remote.
#[derive(Clone)]
pub struct EdgeServices {
    pub auth: AuthClient,
    pub runner: RunnerClient,
    pub session: SessionClient,
    pub bus: Arc<dyn EventBus>,
    /// Budget of unauthenticated sockets per client IP (shared by every edge
    /// process when it is the Redis one).
    pub socket_budget: Arc<dyn SocketBudget>,
    /// Where device sockets live across edges (Redis); `None`: targeted
    /// messages go on the tenant topic.
    pub devices: Option<Arc<dyn DeviceRegistry>>,
    /// Who is online per tenant (Redis across edges, or in-process).
    pub presence: Arc<dyn PresenceRegistry>,
    /// Where nodes are, across edges (Redis) or in this process.
    pub nodes: Arc<dyn NodeRegistry>,
}

impl std::fmt::Debug for EdgeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeServices")
            .field("auth", &self.auth)
            .field("runner", &self.runner)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Counts live sockets so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct SocketTracker {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a socket task while it runs.
pub struct SocketGuard(Arc<EdgeState>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.0.sockets.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.sockets.idle.notify_waiters();
        }
    }
}

impl SocketGuard {
    /// The state of the process the socket belongs to.
    pub fn state(&self) -> &Arc<EdgeState> {
        &self.0
    }
}

impl SocketTracker {
    /// Sockets currently open (any phase).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves once no socket is live.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// State shared by the router and every socket of this process.
pub struct EdgeState {
    pub config: EdgeConfig,
    pub services: EdgeServices,
    pub hub: Hub,
    pub shutdown: CancellationToken,
    pub sockets: SocketTracker,
    pub started: Instant,
    /// Whether the last readiness probe reached the event bus.
    pub bus_ok: AtomicBool,
    /// This pod's device sockets in the device registry.
    pub devices: Option<LocalDevices>,
    /// This edge's listed connections in the presence registry.
    pub presence: EdgePresence,
    /// This edge's connections that may answer exec approvals.
    pub approvers: EdgeApprovers,
    /// The cached health snapshot (refreshed by [`crate::health`]).
    pub health: HealthCache,
    /// This edge's node sockets, and its calls to nodes anywhere.
    pub nodes: EdgeNodes,
}

impl EdgeState {
    pub fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn track(self: &Arc<Self>) -> SocketGuard {
        self.sockets.live.fetch_add(1, Ordering::AcqRel);
        SocketGuard(self.clone())
    }
}
