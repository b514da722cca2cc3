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
//! until its handshake ends (however it ends), and its release is under way
//! before the connect response is queued; one handshake attempt per socket (every connect
//! failure closes, so a challenge nonce is never accepted twice); the socket is
//! registered with the hub (its run-event topic, [`crate::hub::run_topic`], and
//! its tenant's topic confirmed subscribed) before the connect response is
//! queued; closing a socket never
//! touches its runs; a closing socket gets a bounded grace period to write what
//! is queued and its close frame and is then dropped, so a client that stops
//! reading cannot hold the task.
//!
//! One task per socket: it reads frames, handles inbox events, call results and
//! timers, and writes through its [`Wire`] (see [`crate::writer`]). Before each
//! wait it writes what can be written at once, so no busy input starves the
//! writes; while it waits, the wait on the client's next frame keeps writing.

use std::future::Future;

use axum::extract::ws::WebSocket;
use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::Dialect;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::limits::BudgetPermit;
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::PREAUTH_MAX_PAYLOAD_BYTES;
use crate::conn::{Accepted, Rejected, Session, authenticated};
use crate::frames::{
    self, CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG,
    ErrorShape, Inbound,
};
use crate::hub;
use crate::out::Out;
use crate::presence;
use crate::registry::DeviceEntry;
use crate::state::{Peer, SocketGuard, SocketInfo};
use crate::version::Protocol;
use crate::writer::{Io, Read, Wire, read_text};
use crate::{goclaw, openclaw};
use crate::{nodes, notify};

/// What a socket owns for its whole life, in one allocation: its WebSocket and
/// outbound queue, its facts, and its place among the process's live sockets.
pub(crate) struct Socket {
    wire: Wire,
    out: Out,
    info: SocketInfo,
    /// The socket's pre-auth slot, taken by the handshake (which gives it back).
    permit: Option<BudgetPermit>,
    guard: SocketGuard,
}

/// The task of one upgraded socket. Everything the socket keeps is moved into
/// one box before the task's future is built, so the future holds no copy of
/// the WebSocket and stays small.
pub(crate) fn serve_socket(
    ws: WebSocket,
    guard: SocketGuard,
    peer: Peer,
    permit: Option<BudgetPermit>,
) -> impl Future<Output = ()> + Send + 'static {
    let info = SocketInfo {
        conn_id: uuid::Uuid::new_v4().to_string(),
        nonce: uuid::Uuid::new_v4().to_string(),
        peer,
    };
    let span =
        tracing::info_span!("ws.conn", conn_id = %info.conn_id, remote = %info.peer.remote_addr);
    let out = Out::new(guard.state().config.socket_queue_bytes);
    let socket = Box::new(Socket {
        wire: Wire::new(ws),
        out,
        info,
        permit,
        guard,
    });
    run(socket).instrument(span)
}

async fn run(mut socket: Box<Socket>) {
    let socket = &mut *socket;
    let nonce = &socket.info.nonce;
    socket.out.unnumbered(
        "connect.challenge",
        &json!({ "nonce": nonce, "ts": now_ms() }),
    );
    tracing::debug!("socket open");
    // Boxed: the handshake's state would otherwise stay inline in this socket's
    // future for the socket's whole life.
    let connected = Box::pin(handshake(socket)).await;
    let state = socket.guard.state();
    if let Some(connected) = connected {
        let Socket { wire, out, .. } = socket;
        match connected {
            Connected::OpenClaw(session) => authenticated(session, state, wire, out).await,
            Connected::Goclaw(session) => authenticated(session, state, wire, out).await,
        }
        if let Some(devices) = &state.devices {
            devices.remove(&socket.info.conn_id).await;
        }
        state.approvers.remove(&socket.info.conn_id).await;
        state.nodes.remove(&socket.info.conn_id, "disconnect").await;
    }
    socket.out.close_quietly();
    let grace = state.config.close_timeout;
    if tokio::time::timeout(grace, socket.wire.finish(&mut socket.out))
        .await
        .is_err()
    {
        tracing::debug!("close grace period over");
    }
    tracing::debug!("socket closed");
}

/// A handshake that succeeded, per dialect (boxed: see [`Session`]).
enum Connected {
    OpenClaw(Box<Session<openclaw::Conn>>),
    Goclaw(Box<Session<goclaw::Conn>>),
}

/// Reads frames until a `connect` succeeds or the socket must close. `permit`
/// (the socket's pre-auth slot) is given back when the handshake ends.
async fn handshake(socket: &mut Socket) -> Option<Connected> {
    let Socket {
        wire,
        out,
        info,
        permit,
        guard,
    } = socket;
    let state = guard.state();
    // Held by this future: however the handshake ends, the slot goes with it.
    let permit = permit.take();
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
    // The handshake is over: the pre-auth slot goes back now, its release
    // sent in the background (the client's next socket is at least a round
    // trip away), so no connect response waits for it.
    drop(permit);
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
        mut reply,
        pending_until_ms,
        paired_sender,
        protocol,
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
    // A device socket is entered in the device registry before `hello-ok`, so a
    // message targeted at the device afterwards reaches this pod; that write
    // and the hub's subscriptions go out at once.
    let device_entry = match &state.devices {
        Some(devices) if pending_until_ms.is_none() && !principal.device_id.is_empty() => Some((
            devices,
            DeviceEntry {
                tenant_id: principal.tenant_id.clone(),
                device_id: principal.device_id.clone(),
                conn_id: info.conn_id.clone(),
                pod_id: state.config.pod_id.clone(),
            },
        )),
        _ => None,
    };
    let add_device = async {
        match device_entry {
            Some((devices, entry)) => devices.add(entry).await.map(|()| Some(devices)),
            None => Ok(None),
        }
    };
    let (registered, added) = tokio::join!(state.hub.register(&topics), add_device);
    let failure = match (registered, added) {
        (Ok(registration), Ok(_)) => Ok(registration),
        (Err(err), added) => {
            if let Ok(Some(devices)) = added {
                devices.remove(&info.conn_id).await;
            }
            Err((ServiceError::from(err), "event bus unavailable"))
        }
        (Ok(registration), Err(err)) => {
            registration.release().await;
            Err((err, "device registry unavailable"))
        }
    };
    let registration = match failure {
        Ok(registration) => registration,
        Err((err, reason)) => {
            let shape = if goclaw {
                ErrorShape::goclaw(&err)
            } else {
                ErrorShape::openclaw(&err)
            };
            out.response(&request.id, None, Some(&shape));
            out.close(CLOSE_INTERNAL, reason);
            return None;
        }
    };
    tracing::info!(
        parent: &span,
        tenant = %principal.tenant_id,
        user = %principal.user_id,
        role = %principal.role,
        dialect = if goclaw { "goclaw" } else { "openclaw" },
        pending = pending_until_ms.is_some(),
        "connected"
    );
    // An OpenClaw connection is listed in presence before `hello-ok`, whose
    // snapshot then holds it; the change is published once `hello-ok` is queued.
    // A connection that may answer exec approvals is listed as an approver at
    // the same time (both registry writes go out at once).
    let open_presence = async {
        if goclaw {
            presence::Opened::default()
        } else {
            presence::open(state, &principal, info, &request.params).await
        }
    };
    let add_approver = async {
        if pending_until_ms.is_none() {
            state.approvers.add(&principal, &info.conn_id, goclaw).await;
        }
    };
    // A node is entered in the node registry (reconciled with its pairing)
    // before `hello-ok` too, so a call made after it finds the node.
    let open_node = async {
        if !goclaw && principal.role == "node" {
            let inbox = registration.inbox.clone();
            Some(nodes::seat::open(state, &principal, info, &request.params, inbox).await)
        } else {
            None
        }
    };
    let (mut opened, (), node) = tokio::join!(open_presence, add_approver, open_node);
    let node_notices = match node {
        Some(Err(err)) => {
            tracing::warn!(error = %err, "node not entered");
            if let Some(seat) = opened.seat.take() {
                seat.close(state);
            }
            state.approvers.remove(&info.conn_id).await;
            if let Some(devices) = &state.devices {
                devices.remove(&info.conn_id).await;
            }
            registration.release().await;
            out.response(&request.id, None, Some(&ErrorShape::openclaw(&err)));
            out.close(CLOSE_INTERNAL, "node registry unavailable");
            return None;
        }
        Some(Ok(notices)) => notices,
        None => Vec::new(),
    };
    if !goclaw {
        presence::fill_hello(&mut reply, &opened);
    }
    out.response(&request.id, Some(&reply), None);
    if let Some(event) = opened.event.take() {
        presence::publish_in_background(state, event);
    }
    notify::publish_in_background(state, node_notices);
    let presence = opened.seat;
    Some(if goclaw {
        out.set_numbered(false);
        let conn = goclaw::Conn::new(principal, info, pending_until_ms, paired_sender);
        Connected::Goclaw(Box::new(Session {
            conn,
            registration,
            presence,
        }))
    } else {
        // v4 numbers every event, targeted ones too (v3 left those without).
        out.set_number_targeted(protocol == Protocol::V4);
        let conn = openclaw::Conn::new(principal, info, &request.params, protocol);
        Connected::OpenClaw(Box::new(Session {
            conn,
            registration,
            presence,
        }))
    })
}
