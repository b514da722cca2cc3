//! The seam between the socket lifecycle and a dialect: what a dialect
//! connection must handle once the handshake succeeded, and the context it gets.
//!
//! Invariants: all of a connection's state is touched by its socket task only
//! (no locks); service calls run in spawned tasks, at most
//! `max_in_flight_requests` at a time, and report back through a queue that
//! never refuses or waits, so a finishing task never waits; a connection that
//! never called a service holds no per-call buffers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{Disconnect, PairingEvent, RunEvent};
use serde_json::Value;
use tracing::Instrument as _;

use crate::frames::ErrorShape;
use crate::out::Out;
use crate::queue::{ByteQueue, Popped};
use crate::server::EdgeState;

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
}

impl Accepted {
    pub fn new(principal: Principal, reply: Value) -> Self {
        Self {
            principal,
            reply,
            pending_until_ms: None,
            paired_sender: None,
        }
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

    /// Handles one run event of the connection's user.
    fn on_event(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Self::Done>);

    /// Handles one pairing event of the connection's tenant (the connection
    /// decides whether it may see it).
    fn on_pairing(&mut self, event: &PairingEvent, cx: &mut Cx<'_, Self::Done>);

    /// Whether `disconnect` (published for the connection's tenant) targets
    /// this connection.
    fn is_target(&self, disconnect: &Disconnect) -> bool;

    /// Handles the result of a spawned call.
    fn on_done(&mut self, done: Self::Done, cx: &mut Cx<'_, Self::Done>);

    /// Called every `tick_interval`.
    fn on_tick(&mut self, cx: &mut Cx<'_, Self::Done>);

    /// The process is shutting down: say goodbye (the socket closes with 1012).
    fn on_shutdown(&mut self, cx: &mut Cx<'_, Self::Done>);
}
