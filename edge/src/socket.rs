//! The life of one socket: challenge, handshake, the authenticated loop, goodbye.
//!
//! Before `connect` succeeds the dialect is unknown, so the OpenClaw rules of
//! reference §1.4 apply to every client (goclaw clients included): frames over
//! 64 KiB close 1009, non-JSON closes 1000, an invalid request frame closes 1008,
//! a first request other than `connect` is answered with an error and closes 1008,
//! and no connect within the handshake timeout closes 1000. The `connect` params
//! pick the dialect: with `minProtocol`/`maxProtocol` it is OpenClaw, without them
//! goclaw.
//!
//! Invariants: a socket holds a slot of its IP's pre-auth budget from the upgrade
//! until its handshake ends (however it ends), and gives it back before the
//! connect response is queued; one handshake attempt per socket (every connect
//! failure closes, so a challenge nonce is never accepted twice); the socket is
//! registered with the hub (its user's and its tenant's topics confirmed
//! subscribed) before the connect response is queued; closing a socket never
//! touches its runs; a closing socket gets a bounded grace period to write what
//! is queued and its close frame and is then dropped, so a client that stops
//! reading cannot hold the task.
//!
//! One task per socket: it reads frames, handles inbox events, call results and
//! timers, and writes through its [`Wire`] (see [`crate::writer`]). Before each
//! wait it writes what can be written at once, so no busy input starves the
//! writes; while it waits, the wait on the client's next frame keeps writing.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::Dialect;
use clawgate_runtime::bus::Topic;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::limits::BudgetPermit;
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::PREAUTH_MAX_PAYLOAD_BYTES;
use crate::conn::{Accepted, Cx, DialectConn, Rejected, Spawner};
use crate::frames::{
    self, CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG,
    ErrorShape, Inbound,
};
use crate::hub::{HubEvent, Registration};
use crate::out::Out;
use crate::queue::Popped;
use crate::registry::DeviceEntry;
use crate::server::EdgeState;
use crate::writer::{Io, Received, Wire};
use crate::{goclaw, openclaw};

/// Where a socket comes from.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote_addr: String,
    /// Loopback without proxy headers.
    pub is_local: bool,
}

/// Facts about a socket that handshakes need.
#[derive(Debug, Clone)]
pub struct SocketInfo {
    pub conn_id: String,
    pub nonce: String,
    pub peer: Peer,
}

pub async fn serve_socket(
    ws: WebSocket,
    state: Arc<EdgeState>,
    peer: Peer,
    permit: Option<BudgetPermit>,
) {
    let info = SocketInfo {
        conn_id: uuid::Uuid::new_v4().to_string(),
        nonce: uuid::Uuid::new_v4().to_string(),
        peer,
    };
    let span =
        tracing::info_span!("ws.conn", conn_id = %info.conn_id, remote = %info.peer.remote_addr);
    run(ws, state, info, permit).instrument(span).await;
}

async fn run(ws: WebSocket, state: Arc<EdgeState>, info: SocketInfo, permit: Option<BudgetPermit>) {
    let mut wire = Wire::new(ws);
    let mut out = Out::new(state.config.socket_queue_bytes);
    out.unnumbered(
        "connect.challenge",
        &json!({ "nonce": info.nonce, "ts": now_ms() }),
    );
    tracing::debug!("socket open");
    // Boxed: the handshake's state would otherwise stay inline in this socket's
    // future for the socket's whole life.
    let connected = Box::pin(handshake(&state, &info, &mut wire, &mut out, permit)).await;
    if let Some(connected) = connected {
        match connected {
            Connected::OpenClaw(conn, registration) => {
                authenticated(conn, registration, &state, &mut wire, &mut out).await;
            }
            Connected::Goclaw(conn, registration) => {
                authenticated(conn, registration, &state, &mut wire, &mut out).await;
            }
        }
        if let Some(devices) = &state.devices {
            devices.remove(&info.conn_id).await;
        }
    }
    out.close_quietly();
    let grace = state.config.close_timeout;
    if tokio::time::timeout(grace, wire.finish(&mut out))
        .await
        .is_err()
    {
        tracing::debug!("close grace period over");
    }
    tracing::debug!("socket closed");
}

enum Connected {
    OpenClaw(openclaw::Conn, Registration),
    Goclaw(goclaw::Conn, Registration),
}

/// Reads frames until a `connect` succeeds or the socket must close. `permit`
/// (the socket's pre-auth slot) is given back when the handshake ends.
async fn handshake(
    state: &Arc<EdgeState>,
    info: &SocketInfo,
    wire: &mut Wire,
    out: &mut Out,
    permit: Option<BudgetPermit>,
) -> Option<Connected> {
    let deadline = Instant::now() + state.config.handshake_timeout;
    let request = loop {
        if wire.write_now(out).await {
            return None;
        }
        let io = tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!("handshake timeout");
                out.close(CLOSE_NORMAL, "");
                return None;
            }
            () = state.shutdown.cancelled() => {
                out.close(CLOSE_SERVICE_RESTART, "service restart");
                return None;
            }
            io = wire.next(out) => io,
        };
        let Io::Read(message) = io else {
            return None;
        };
        let text = match read_text(message, PREAUTH_MAX_PAYLOAD_BYTES) {
            Read::Text(text) => text,
            Read::Skip => continue,
            Read::TooBig => {
                out.close_now(CLOSE_TOO_BIG, "preauth payload too large");
                return None;
            }
            Read::End => return None,
        };
        match frames::parse_openclaw(&text) {
            Inbound::NotJson(_) => {
                out.close(CLOSE_NORMAL, "");
                return None;
            }
            Inbound::Invalid { .. } => {
                out.close(CLOSE_POLICY, "invalid request frame");
                return None;
            }
            Inbound::Request(request) => break request,
        }
    };
    let span = tracing::info_span!("ws.connect", req_id = %request.id);
    let _enter = span.enter();
    if request.method != "connect" {
        let err = ServiceError::invalid("invalid handshake: first request must be connect");
        out.response(&request.id, None, Some(&ErrorShape::openclaw(&err)));
        out.close(CLOSE_POLICY, "invalid handshake");
        return None;
    }
    drop(_enter);
    let goclaw = goclaw::connect::is_goclaw_connect(&request.params);
    let attempt = async {
        if goclaw {
            goclaw::connect::handshake(state, info, &request.params).await
        } else {
            openclaw::handshake::handshake(state, info, &request.params).await
        }
    }
    .instrument(span.clone());
    let outcome = tokio::select! {
        () = tokio::time::sleep_until(deadline) => {
            out.close(CLOSE_NORMAL, "");
            return None;
        }
        outcome = attempt => outcome,
    };
    if let Some(permit) = permit {
        permit.release().await;
    }
    let accepted = match outcome {
        Ok(accepted) => accepted,
        Err(Rejected {
            error,
            payload,
            close_code,
            close_reason,
        }) => {
            tracing::info!(parent: &span, code = error.code, "connect refused");
            out.response(&request.id, payload.as_ref(), Some(&error));
            out.close(close_code, &close_reason);
            return None;
        }
    };
    let Accepted {
        mut principal,
        reply,
        pending_until_ms,
        paired_sender,
    } = accepted;
    principal.connection_id = info.conn_id.clone();
    if principal.dialect == Dialect::Unspecified as i32 {
        let dialect = if goclaw {
            Dialect::Goclaw
        } else {
            Dialect::Openclaw
        };
        principal.dialect = dialect as i32;
    }
    // A socket still pairing is on no topic: it may see nothing.
    let topics = match pending_until_ms {
        Some(_) => Vec::new(),
        None => vec![
            Topic::user(&principal.tenant_id, &principal.user_id),
            Topic::tenant(&principal.tenant_id),
        ],
    };
    let registration = match state.hub.register(&topics).await {
        Ok(registration) => registration,
        Err(err) => {
            let err = ServiceError::from(err);
            let shape = if goclaw {
                ErrorShape::goclaw(&err)
            } else {
                ErrorShape::openclaw(&err)
            };
            out.response(&request.id, None, Some(&shape));
            out.close(CLOSE_INTERNAL, "event bus unavailable");
            return None;
        }
    };
    // A device socket is entered in the device registry before `hello-ok`, so a
    // message targeted at the device afterwards reaches this pod.
    if let Some(devices) = &state.devices
        && pending_until_ms.is_none()
        && !principal.device_id.is_empty()
    {
        let entry = DeviceEntry {
            tenant_id: principal.tenant_id.clone(),
            device_id: principal.device_id.clone(),
            conn_id: info.conn_id.clone(),
            pod_id: state.config.pod_id.clone(),
        };
        if let Err(err) = devices.add(entry).await {
            let shape = if goclaw {
                ErrorShape::goclaw(&err)
            } else {
                ErrorShape::openclaw(&err)
            };
            out.response(&request.id, None, Some(&shape));
            out.close(CLOSE_INTERNAL, "device registry unavailable");
            registration.release().await;
            return None;
        }
    }
    tracing::info!(
        parent: &span,
        tenant = %principal.tenant_id,
        user = %principal.user_id,
        role = %principal.role,
        dialect = if goclaw { "goclaw" } else { "openclaw" },
        pending = pending_until_ms.is_some(),
        "connected"
    );
    out.response(&request.id, Some(&reply), None);
    Some(if goclaw {
        out.set_numbered(false);
        let conn = goclaw::Conn::new(principal, info, pending_until_ms, paired_sender);
        Connected::Goclaw(conn, registration)
    } else {
        Connected::OpenClaw(
            openclaw::Conn::new(principal, info, &request.params),
            registration,
        )
    })
}

/// What one read from the socket produced.
enum Read {
    Text(String),
    /// Ping, pong: nothing to do.
    Skip,
    /// Over the size limit.
    TooBig,
    /// Closed or failed.
    End,
}

fn read_text(message: Received, limit: usize) -> Read {
    let text = match message {
        None | Some(Ok(Message::Close(_))) => return Read::End,
        Some(Err(err)) => {
            return if is_too_big(err) {
                Read::TooBig
            } else {
                Read::End
            };
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Read::Skip,
        Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
        // Binary frames are read as text, as OpenClaw does.
        Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if text.len() > limit {
        Read::TooBig
    } else {
        Read::Text(text)
    }
}

fn is_too_big(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    err.into_inner()
        .downcast_ref::<WsError>()
        .is_some_and(|err| matches!(err, WsError::Capacity(CapacityError::MessageTooLong { .. })))
}

/// The authenticated loop: until the client leaves, the socket closes, or the
/// write side ends.
async fn authenticated<C: DialectConn>(
    mut conn: C,
    registration: Registration,
    state: &Arc<EdgeState>,
    wire: &mut Wire,
    out: &mut Out,
) {
    let spawner = Spawner::new(state.config.max_in_flight_requests);
    let inbox = registration.inbox.clone();
    let mut timers = Timers::new(state.config.tick_interval, state.config.ping_interval);
    let max_payload = state.config.max_payload_bytes;
    loop {
        if wire.write_now(out).await {
            break;
        }
        let input = tokio::select! {
            () = state.shutdown.cancelled() => Input::Shutdown,
            io = wire.next(out) => match io {
                Io::Read(message) => Input::Read(read_text(message, max_payload)),
                Io::WriteDone => break,
            },
            popped = inbox.pop_all() => Input::Events(popped),
            done = spawner.finished() => Input::Done(done),
            timer = timers.next() => Input::Timer(timer),
        };
        let mut cx = Cx {
            state,
            out: &mut *out,
            spawner: &spawner,
        };
        match input {
            Input::Shutdown => {
                conn.on_shutdown(&mut cx);
                cx.out.close(CLOSE_SERVICE_RESTART, "service restart");
            }
            Input::Read(Read::Text(text)) => conn.on_text(&text, &mut cx),
            Input::Read(Read::Skip) => {}
            Input::Read(Read::TooBig) => cx.out.close_now(CLOSE_TOO_BIG, "payload too large"),
            Input::Read(Read::End) => break,
            Input::Events(Popped::Items(events)) => {
                for event in events {
                    match event {
                        HubEvent::Run(event) => conn.on_event(event, &mut cx),
                        HubEvent::Pairing(event) => conn.on_pairing(&event, &mut cx),
                        HubEvent::Disconnect(disconnect) => {
                            if conn.is_target(&disconnect) {
                                tracing::info!(
                                    code = disconnect.close_code,
                                    "disconnected by request"
                                );
                                let code =
                                    u16::try_from(disconnect.close_code).unwrap_or(CLOSE_POLICY);
                                cx.out.close(code, &disconnect.close_reason);
                            }
                        }
                    }
                }
            }
            Input::Events(Popped::Overflowed) => cx.out.close_now(CLOSE_POLICY, "slow consumer"),
            Input::Done(done) => {
                for done in done {
                    conn.on_done(*done, &mut cx);
                }
            }
            Input::Timer(Timer::Tick) => conn.on_tick(&mut cx),
            Input::Timer(Timer::Ping) => wire.ping(),
        }
        if out.is_closing() {
            break;
        }
    }
    registration.release().await;
}

/// What woke the authenticated loop.
enum Input<D> {
    Shutdown,
    Read(Read),
    Events(Popped<HubEvent>),
    Done(Vec<Box<D>>),
    Timer(Timer),
}

/// Which periodic duty is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The dialect's `tick` (every `tick_interval`).
    Tick,
    /// A WebSocket ping (every `ping_interval`).
    Ping,
}

/// The socket's two periodic duties on one timer: one timer entry per socket
/// instead of two. A duty that is late is not made up for: its next one comes a
/// full period after it ran.
struct Timers {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    tick_period: std::time::Duration,
    ping_period: std::time::Duration,
    next_tick: Instant,
    next_ping: Instant,
}

impl Timers {
    /// Both duties start one period from now.
    fn new(tick_period: std::time::Duration, ping_period: std::time::Duration) -> Self {
        let now = Instant::now();
        let next_tick = now + tick_period;
        let next_ping = now + ping_period;
        Self {
            sleep: Box::pin(tokio::time::sleep_until(next_tick.min(next_ping))),
            tick_period,
            ping_period,
            next_tick,
            next_ping,
        }
    }

    /// Waits for the next due duty. Cancel safe.
    async fn next(&mut self) -> Timer {
        self.sleep.as_mut().await;
        let now = Instant::now();
        let timer = if self.next_ping <= self.next_tick {
            self.next_ping = now + self.ping_period;
            Timer::Ping
        } else {
            self.next_tick = now + self.tick_period;
            Timer::Tick
        };
        let deadline = self.next_tick.min(self.next_ping);
        self.sleep.as_mut().reset(deadline);
        timer
    }
}
