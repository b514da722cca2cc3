//! The HTTP side of the edge: the router (WebSocket upgrade on any path,
//! `/healthz`, `/readyz`) and serving with graceful shutdown; the state it
//! shares with every socket is in `state`.
//!
//! Invariants: an upgrade is accepted only with a slot of the client IP's pre-auth
//! socket budget (else HTTP 503), held by the socket until its handshake ends;
//! every upgrade is configured with explicit, small tungstenite
//! buffers and a bounded write buffer; after shutdown starts no new socket is
//! accepted, every live socket is told `shutdown` and closed with 1012, and
//! [`Edge::serve`] returns once they are gone (or the drain timeout passed).
//!
//! Health: `/healthz` answers 200 while the process lives; `/readyz` answers 503
//! while draining or while the event bus (Redis) does not answer: a probe task
//! publishes an empty message on [`READY_TOPIC`] every [`READY_PROBE_INTERVAL`]
//! (bounded by [`READY_PROBE_TIMEOUT`]) and records the outcome.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clawgate_runtime::bus::Topic;
use tokio_util::sync::CancellationToken;

use crate::approvers::EdgeApprovers;
use crate::config::EdgeConfig;
use crate::error::EdgeError;
use crate::health;
use crate::health_cache::HealthCache;
use crate::hub::Hub;
use crate::nodes::EdgeNodes;
use crate::presence_table::EdgePresence;
use crate::registry::{LocalDevices, inbox_topic};
use crate::socket;
use crate::state::{EdgeServices, EdgeState, Peer, SocketTracker};

/// Topic the readiness probe publishes on (nobody subscribes to it).
pub const READY_TOPIC: &str = "edge.ready";
/// How often the readiness probe checks the event bus.
pub const READY_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Bound of one readiness probe.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One edge process.
#[derive(Clone)]
pub struct Edge {
    state: Arc<EdgeState>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Opens the bus subscriber and starts the fan-out hub.
    pub async fn start(config: EdgeConfig, services: EdgeServices) -> Result<Edge, EdgeError> {
        if config.max_payload_bytes == 0 || config.socket_queue_bytes == 0 {
            return Err(EdgeError::Config(
                "max_payload_bytes and socket_queue_bytes must be positive".into(),
            ));
        }
        if config.tick_interval.is_zero() || config.ping_interval.is_zero() {
            return Err(EdgeError::Config(
                "tick_interval and ping_interval must be positive".into(),
            ));
        }
        let hub = Hub::start(
            services.bus.as_ref(),
            config.bus_queue_capacity,
            config.socket_queue_bytes,
            config.topic_linger,
        )
        .await?;
        // The pod inbox carries targeted disconnects and node calls and
        // their results; it is subscribed before any socket is accepted.
        let nodes = EdgeNodes::start(&config.pod_id, services.bus.clone(), services.nodes.clone());
        let handler = nodes.clone();
        hub.on_node_messages(Arc::new(move |event| handler.on_inbox(event)));
        hub.subscribe_inbox(inbox_topic(&config.pod_id)).await?;
        let devices = services
            .devices
            .as_ref()
            .map(|registry| LocalDevices::start(registry.clone()));
        let services_presence = services.presence.clone();
        let state = Arc::new(EdgeState {
            config,
            services,
            hub,
            shutdown: CancellationToken::new(),
            sockets: SocketTracker::default(),
            started: Instant::now(),
            bus_ok: AtomicBool::new(true),
            devices,
            approvers: EdgeApprovers::start(services_presence.clone()),
            presence: EdgePresence::start(services_presence),
            health: HealthCache::default(),
            nodes,
        });
        tokio::spawn(probe_bus(Arc::downgrade(&state)));
        tokio::spawn(health::run(Arc::downgrade(&state)));
        Ok(Edge { state })
    }

    /// The router: `GET /healthz`, `GET /readyz`, and a WebSocket upgrade on every
    /// other path.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(upgrade)
            .with_state(self.state.clone())
    }

    /// Sockets currently open on this edge (any phase).
    pub fn live_sockets(&self) -> usize {
        self.state.sockets.live()
    }

    /// Starts shutdown without serving: new upgrades are refused and live sockets
    /// get `shutdown` and close 1012.
    pub fn begin_shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// Serves until `shutdown` resolves, then drains sockets.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.state.shutdown.clone();
        let stop = {
            let token = token.clone();
            async move {
                tokio::select! {
                    () = shutdown => token.cancel(),
                    () = token.cancelled() => {}
                }
            }
        };
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        // Frames must leave at once: without TCP_NODELAY a frame written while the
        // previous one is unacknowledged waits for the client's delayed ACK (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
        token.cancel();
        let drain = self.state.config.drain_timeout;
        if tokio::time::timeout(drain, self.state.sockets.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                live = self.live_sockets(),
                "sockets still open after drain timeout"
            );
        }
        served
    }
}

/// Whether a request came through a proxy (`Forwarded`, any `X-Forwarded-*`,
/// `X-Real-IP`): such a socket is never "local" (OpenClaw §3.3).
fn has_proxy_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-")
    })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<EdgeState>>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !state.bus_ok.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "event bus unavailable").into_response()
    } else {
        "ready".into_response()
    }
}

/// Records whether the event bus answers, until the edge is gone.
async fn probe_bus(state: std::sync::Weak<EdgeState>) {
    let topic = Topic::from_name(READY_TOPIC);
    let mut interval = tokio::time::interval(READY_PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let publish = state.services.bus.publish(&topic, bytes::Bytes::new());
        let ok = matches!(
            tokio::time::timeout(READY_PROBE_TIMEOUT, publish).await,
            Ok(Ok(()))
        );
        if state.bus_ok.swap(ok, Ordering::AcqRel) != ok {
            if ok {
                tracing::info!("event bus reachable again: ready");
            } else {
                tracing::warn!("event bus unreachable: not ready");
            }
        }
    }
}

async fn upgrade(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let peer = Peer {
        remote_addr: addr.map(|a| a.to_string()).unwrap_or_default(),
        is_local: addr.is_some_and(|a| a.ip().to_canonical().is_loopback())
            && !has_proxy_headers(&headers),
        has_origin: headers.contains_key(axum::http::header::ORIGIN),
    };
    let permit = match addr {
        Some(addr) => match state.services.socket_budget.acquire(addr.ip()).await {
            Ok(Some(permit)) => Some(permit),
            Ok(None) => {
                tracing::info!(ip = %addr.ip(), "pre-auth socket budget exhausted");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many unauthenticated sockets",
                )
                    .into_response();
            }
            Err(err) => {
                tracing::warn!(error = %err, "pre-auth socket budget unavailable");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
            }
        },
        None => None,
    };
    let config = &state.config;
    let guard = state.track();
    upgrade
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_write_buffer_size(config.max_write_buffer())
        .max_message_size(config.reader_limit())
        .max_frame_size(config.reader_limit())
        .on_upgrade(move |ws| socket::serve_socket(ws, guard, peer, permit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_disqualify_locality() {
        let mut headers = HeaderMap::new();
        assert!(!has_proxy_headers(&headers));
        headers.insert("user-agent", "x".parse().expect("value"));
        assert!(!has_proxy_headers(&headers));
        for name in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-for",
            "x-forwarded-host",
        ] {
            let mut proxied = headers.clone();
            proxied.insert(name, "203.0.113.9".parse().expect("value"));
            assert!(has_proxy_headers(&proxied), "{name}");
        }
    }
}
