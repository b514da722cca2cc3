//! The seam between the socket lifecycle and a dialect: what a dialect
//! connection must handle once the handshake succeeded, the context it gets, and
//! the authenticated loop that feeds it (client frames, hub events, results of
//! its calls, `tick`s and pings, new health snapshots, shutdown).
//!
//! Invariants: all of a connection's state is touched by its socket task only
//! (no locks); service calls run in spawned tasks, at most
//! `max_in_flight_requests` at a time, and report back through a queue that
//! never refuses or waits, so a finishing task never waits; that queue holds a
//! buffer only while results wait; the loop writes what it can before every wait,
//! so a busy input never starves the client's writes; it ends when the client
//! leaves, the socket starts closing or the write side ends, and then always
//! leaves the hub and presence.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    Disconnect, ExecApprovalEvent, NodeInvokeRequest, NodePairingEvent, PairingEvent, RunEvent,
    SessionChange, TranscriptNote,
};
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tracing::Instrument as _;

use crate::frames::{CLOSE_POLICY, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG, ErrorShape};
use crate::health_cache::Snapshot;
use crate::hub::{HubEvent, Registration};
use crate::out::Out;
use crate::presence::Seat;
use crate::queue::{ByteQueue, Popped};
use crate::state::EdgeState;
use crate::version::Protocol;
use crate::writer::{Io, Read, Wire, read_text};

/// A handshake that succeeded: who connected and what to answer.
#[derive(Debug)]
pub struct Accepted {
    /// Who connected; for a goclaw socket still pairing, an empty principal.
    pub principal: Principal,
    /// Payload of the `res` to the connect request.
    pub reply: Value,
    /// goclaw: browser pairing is under way, the socket is not authenticated
    /// (it may only poll `browser.pairing.status`) until this time (epoch ms).
    pub pending_until_ms: Option<i64>,
    /// goclaw: the (sender id, channel) the connection authenticated as, so a
    /// revocation of that sender can close it.
    pub paired_sender: Option<(String, String)>,
    /// OpenClaw: the protocol version negotiated (goclaw: always v3).
    pub protocol: Protocol,
}

impl Accepted {
    pub fn new(principal: Principal, reply: Value) -> Self {
        Self {
            principal,
            reply,
            pending_until_ms: None,
            paired_sender: None,
            protocol: Protocol::V3,
        }
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
}

/// A handshake that failed: the error `res` and how to close.
#[derive(Debug)]
pub struct Rejected {
    pub error: ErrorShape,
    /// A payload sent alongside the error, if any.
    pub payload: Option<Value>,
    pub close_code: u16,
    pub close_reason: String,
}

/// The calls of one connection: their results, and how many are running.
struct Calls<D> {
    /// Results not yet handled, boxed so that a slot stays small whatever the
    /// dialect's result type.
    done: ByteQueue<Box<D>>,
    in_flight: AtomicUsize,
}

/// Runs service calls for one connection and collects their results.
pub struct Spawner<D> {
    calls: Arc<Calls<D>>,
    max: usize,
}

impl<D: Send + 'static> Spawner<D> {
    pub fn new(max: usize) -> Self {
        Self {
            calls: Arc::new(Calls {
                done: ByteQueue::new(0),
                in_flight: AtomicUsize::new(0),
            }),
            max: max.max(1),
        }
    }

    /// Runs `work` in its own task; its result comes back through
    /// [`Spawner::finished`]. Returns false (and runs nothing) when too many calls
    /// are in flight.
    pub fn spawn(
        &self,
        span: tracing::Span,
        work: impl Future<Output = D> + Send + 'static,
    ) -> bool {
        let calls = &self.calls;
        if calls.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max {
            calls.in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let calls = calls.clone();
        tokio::spawn(
            async move {
                let done = work.await;
                calls.in_flight.fetch_sub(1, Ordering::AcqRel);
                // Never waits (at most `max` results are ever queued); the socket
                // may be gone, the call itself has had its effect.
                calls.done.push(Box::new(done), 0);
            }
            .instrument(span),
        );
        true
    }

    /// Waits for results of spawned calls and takes all of them, oldest first.
    /// Cancel safe.
    pub async fn finished(&self) -> Vec<Box<D>> {
        match self.calls.done.pop_all().await {
            Popped::Items(items) => items,
            // Only bounded pushes overflow a queue.
            Popped::Overflowed => std::future::pending().await,
        }
    }
}

/// What a dialect connection works with while handling one input.
pub struct Cx<'a, D> {
    pub state: &'a Arc<EdgeState>,
    pub out: &'a mut Out,
    pub spawner: &'a Spawner<D>,
}

/// A connection in one dialect, after its handshake.
pub trait DialectConn: Send + 'static {
    /// Result of a spawned service call.
    type Done: Send + 'static;

    /// Handles one text frame from the client.
    fn on_text(&mut self, text: &str, cx: &mut Cx<'_, Self::Done>);

    /// Handles one run event the connection may see (its own user's, or any
    /// user's of its tenant when it sees the whole tenant).
    fn on_event(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Self::Done>);

    /// Handles one pairing event of the connection's tenant (the connection
    /// decides whether it may see it).
    fn on_pairing(&mut self, event: &PairingEvent, cx: &mut Cx<'_, Self::Done>);

    /// Handles one transcript note of a user whose runs the connection sees
    /// (on the same topics as run events); by default it shows nothing.
    fn on_note(&mut self, _note: &TranscriptNote, _cx: &mut Cx<'_, Self::Done>) {}

    /// Handles one session change of a user whose runs the connection sees
    /// (on the same topics as run events); by default it shows nothing.
    fn on_session(&mut self, _change: &SessionChange, _cx: &mut Cx<'_, Self::Done>) {}

    /// Handles one exec approval event of the connection's tenant (the
    /// connection decides whether it may see it); by default it shows nothing.
    fn on_approval(&mut self, _event: &ExecApprovalEvent, _cx: &mut Cx<'_, Self::Done>) {}

    /// Handles a call for a node socket of this pod (the connection sends it
    /// only if it is that socket); by default it shows nothing.
    fn on_node_invoke(&mut self, _request: &NodeInvokeRequest, _cx: &mut Cx<'_, Self::Done>) {}

    /// Handles one node pairing event of the connection's tenant (the
    /// connection decides whether it may see it); by default it shows nothing.
    fn on_node_pairing(&mut self, _event: &NodePairingEvent, _cx: &mut Cx<'_, Self::Done>) {}

    /// Whether `disconnect` (published for the connection's tenant) targets
    /// this connection.
    fn is_target(&self, disconnect: &Disconnect) -> bool;

    /// Handles the result of a spawned call.
    fn on_done(&mut self, done: Self::Done, cx: &mut Cx<'_, Self::Done>);

    /// Called every `tick_interval`.
    fn on_tick(&mut self, cx: &mut Cx<'_, Self::Done>);

    /// The process is shutting down: say goodbye (the socket closes with 1012).
    fn on_shutdown(&mut self, cx: &mut Cx<'_, Self::Done>);

    /// A new health snapshot was published (see [`crate::health`]); by
    /// default nothing is sent.
    fn on_health(&mut self, _snapshot: &Snapshot, _cx: &mut Cx<'_, Self::Done>) {}
}

/// A connection after its handshake: its dialect state and its place in the
/// hub. Boxed for the socket's life, so the loop's future holds a pointer, not
/// the state (an async fn keeps its arguments twice).
pub struct Session<C> {
    pub conn: C,
    pub registration: Registration,
    /// Its part in presence (OpenClaw connections that are listed or watch).
    pub presence: Option<Seat>,
}

/// The authenticated loop: until the client leaves, the socket closes, or the
/// write side ends. Then the socket leaves the hub.
pub async fn authenticated<C: DialectConn>(
    mut session: Box<Session<C>>,
    state: &Arc<EdgeState>,
    wire: &mut Wire,
    out: &mut Out,
) {
    let spawner = Spawner::new(state.config.max_in_flight_requests);
    let inbox = session.registration.inbox.clone();
    let mut timers = Timers::new(state.config.tick_interval, state.config.ping_interval);
    let max_payload = state.config.max_payload_bytes;
    let mut health = state.health.subscribe();
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
            // The sender lives as long as the state this loop holds.
            Ok(()) = health.changed() => Input::Health(health.borrow_and_update().clone()),
        };
        let mut cx = Cx {
            state,
            out: &mut *out,
            spawner: &spawner,
        };
        match input {
            Input::Shutdown => {
                session.conn.on_shutdown(&mut cx);
                cx.out.close(CLOSE_SERVICE_RESTART, "service restart");
            }
            Input::Read(Read::Text(text)) => {
                if let Some(seat) = &mut session.presence {
                    seat.touch(state);
                }
                session.conn.on_text(&text, &mut cx);
            }
            Input::Read(Read::Skip) => {}
            Input::Read(Read::TooBig) => cx.out.close_now(CLOSE_TOO_BIG, "payload too large"),
            Input::Read(Read::End) => break,
            Input::Events(Popped::Items(events)) => {
                for event in events {
                    match event {
                        HubEvent::Run(event) => session.conn.on_event(event, &mut cx),
                        HubEvent::Pairing(event) => session.conn.on_pairing(&event, &mut cx),
                        HubEvent::Presence(event) => {
                            if let Some(seat) = &mut session.presence {
                                seat.deliver(&event, &state.presence, cx.out);
                            }
                        }
                        HubEvent::Note(note) => session.conn.on_note(&note, &mut cx),
                        HubEvent::Session(change) => session.conn.on_session(&change, &mut cx),
                        HubEvent::Approval(event) => session.conn.on_approval(&event, &mut cx),
                        HubEvent::NodeInvoke(request) => {
                            session.conn.on_node_invoke(&request, &mut cx);
                        }
                        HubEvent::NodePairing(event) => {
                            session.conn.on_node_pairing(&event, &mut cx);
                        }
                        // Results go to the pod's invoker, never to a socket.
                        HubEvent::NodeResult(_) => {}
                        HubEvent::Disconnect(disconnect) => {
                            if session.conn.is_target(&disconnect) {
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
                    session.conn.on_done(*done, &mut cx);
                }
            }
            Input::Timer(Timer::Tick) => session.conn.on_tick(&mut cx),
            Input::Timer(Timer::Ping) => wire.ping(),
            Input::Health(snapshot) => session.conn.on_health(&snapshot, &mut cx),
        }
        if out.is_closing() {
            break;
        }
    }
    let Session {
        registration,
        presence,
        ..
    } = *session;
    if let Some(seat) = presence {
        seat.close(state);
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
    Health(Arc<Snapshot>),
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
    sleep: std::pin::Pin<Box<Sleep>>,
    tick_period: Duration,
    ping_period: Duration,
    next_tick: Instant,
    next_ping: Instant,
}

impl Timers {
    /// Both duties start one period from now.
    fn new(tick_period: Duration, ping_period: Duration) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timers_run_both_duties_on_their_own_periods() {
        let mut timers = Timers::new(Duration::from_millis(80), Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(timers.next().await, Timer::Ping);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(timers.next().await, Timer::Tick);
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert_eq!(timers.next().await, Timer::Ping);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn call_results_come_back_and_the_bound_holds() {
        let spawner = Spawner::new(1);
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        assert!(spawner.spawn(tracing::Span::none(), async move {
            let _ = wait.await;
            7
        }));
        assert!(
            !spawner.spawn(tracing::Span::none(), async { 8 }),
            "one call in flight at most"
        );
        let _ = release.send(());
        let done = spawner.finished().await;
        assert_eq!(done.into_iter().map(|d| *d).collect::<Vec<_>>(), vec![7]);
    }
}
