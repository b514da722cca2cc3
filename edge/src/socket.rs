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
//! registered with the hub (its run-event topic, [`crate::hub::run_topic`], and
//! its tenant's topic confirmed subscribed) before the connect response is
//! queued; closing a socket never
//! touches its runs; the writer gets a bounded grace period to say goodbye and is
//! then dropped, so a client that stops reading cannot hold the task.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::Dialect;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::limits::BudgetPermit;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::PREAUTH_MAX_PAYLOAD_BYTES;
use crate::conn::{Accepted, Cx, DialectConn, Rejected, Spawner};
use crate::frames::{
    self, CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG,
    ErrorShape, Inbound,
};
use crate::hub::{self, HubEvent, Registration};
use crate::out::{Out, OutQueue};
use crate::queue::Popped;
use crate::registry::DeviceEntry;
use crate::server::EdgeState;
use crate::{goclaw, openclaw, writer};

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

type Stream = SplitStream<WebSocket>;

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
    let (sink, mut stream) = ws.split();
    let queue = Arc::new(OutQueue::new(state.config.socket_queue_bytes));
    let mut writer = tokio::spawn(writer::run_writer(
        sink,
        queue.clone(),
        state.config.ping_interval,
    ));
    let mut out = Out::new(queue);
    out.unnumbered(
        "connect.challenge",
        &json!({ "nonce": info.nonce, "ts": now_ms() }),
    );
    tracing::debug!("socket open");
    let mut writer_done = false;
    // Boxed: the handshake's state would otherwise stay inline in this socket's
    // future for the socket's whole life.
    let connected = Box::pin(handshake(&state, &info, &mut stream, &mut out, permit)).await;
    if let Some(connected) = connected {
        writer_done = match connected {
            Connected::OpenClaw(conn, registration) => {
                authenticated(
                    conn,
                    registration,
                    &state,
                    &mut stream,
                    &mut out,
                    &mut writer,
                )
                .await
            }
            Connected::Goclaw(conn, registration) => {
                authenticated(
                    conn,
                    registration,
                    &state,
                    &mut stream,
                    &mut out,
                    &mut writer,
                )
                .await
            }
        };
        if let Some(devices) = &state.devices {
            devices.remove(&info.conn_id).await;
        }
    }
    if !out.is_closing() {
        out.close_quietly();
    }
    let grace = state.config.close_timeout;
    if !writer_done && tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
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
    stream: &mut Stream,
    out: &mut Out,
    permit: Option<BudgetPermit>,
) -> Option<Connected> {
    let deadline = Instant::now() + state.config.handshake_timeout;
    let request = loop {
        let message = tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!("handshake timeout");
                out.close(CLOSE_NORMAL, "");
                return None;
            }
            () = state.shutdown.cancelled() => {
                out.close(CLOSE_SERVICE_RESTART, "service restart");
                return None;
            }
            message = stream.next() => message,
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
        None => hub::socket_topics(&principal).to_vec(),
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
    out.start_ping();
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

fn read_text(message: Option<Result<Message, axum::Error>>, limit: usize) -> Read {
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

/// The authenticated loop. Returns whether the writer task already finished.
async fn authenticated<C: DialectConn>(
    mut conn: C,
    registration: Registration,
    state: &Arc<EdgeState>,
    stream: &mut Stream,
    out: &mut Out,
    writer: &mut tokio::task::JoinHandle<()>,
) -> bool {
    let (spawner, mut done_rx) = Spawner::new(state.config.max_in_flight_requests);
    let inbox = registration.inbox.clone();
    let period = state.config.tick_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_payload = state.config.max_payload_bytes;
    let mut writer_done = false;
    loop {
        let mut cx = Cx {
            state,
            out: &mut *out,
            spawner: &spawner,
        };
        tokio::select! {
            () = state.shutdown.cancelled() => {
                conn.on_shutdown(&mut cx);
                cx.out.close(CLOSE_SERVICE_RESTART, "service restart");
            }
            message = stream.next() => match read_text(message, max_payload) {
                Read::Text(text) => conn.on_text(&text, &mut cx),
                Read::Skip => {}
                Read::TooBig => cx.out.close_now(CLOSE_TOO_BIG, "payload too large"),
                Read::End => break,
            },
            popped = inbox.pop_all() => match popped {
                Popped::Items(events) => {
                    for event in events {
                        match event {
                            HubEvent::Run(event) => conn.on_event(event, &mut cx),
                            HubEvent::Pairing(event) => conn.on_pairing(&event, &mut cx),
                            HubEvent::Disconnect(disconnect) => {
                                if conn.is_target(&disconnect) {
                                    tracing::info!(code = disconnect.close_code, "disconnected by request");
                                    let code = u16::try_from(disconnect.close_code).unwrap_or(CLOSE_POLICY);
                                    cx.out.close(code, &disconnect.close_reason);
                                }
                            }
                        }
                    }
                }
                Popped::Overflowed => cx.out.close_now(CLOSE_POLICY, "slow consumer"),
                Popped::Closed => break,
            },
            Some(done) = done_rx.recv() => conn.on_done(*done, &mut cx),
            _ = tick.tick() => conn.on_tick(&mut cx),
            _ = &mut *writer => {
                writer_done = true;
                break;
            }
        }
        if out.is_closing() {
            break;
        }
    }
    registration.release().await;
    writer_done
}
