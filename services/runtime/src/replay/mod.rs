//! Replay of a run's events from a given `seq`: a clawgate extension, modelled
//! on Centrifugo's history and recovery.
//!
//! Run events travel on pub/sub, which delivers at most once: a socket that
//! reconnects (to the same or another edge) mid-run misses what was published
//! meanwhile. OpenClaw `chat` deltas carry the full text, so the next delta heals
//! a chat view; clients that need every `agent` event can ask for the ones they
//! missed.
//!
//! **What it owns.** A bounded history per run: every event a run's publisher
//! hands it ([`ReplayEvent`]: the run, the event's `seq`, its bus payload) is
//! first appended to its run's history, then published on the bus, on every
//! topic the caller names (e.g. the run's user topic and its tenant's run topic,
//! see [`crate::bus::Topic::tenant_runs`]) ([`ReplayLog::append_and_publish`]).
//! The payload is opaque here: what an event says is the publisher's business.
//! On Redis all of it happens in one pipeline on the process's multiplexed
//! connection (`XADD … MAXLEN ~ N`, `PEXPIRE`, one `PUBLISH` per topic), so
//! history and the extra topic cost no extra round trip per event.
//!
//! **Reading** ([`ReplayLog::read_from`]):
//!
//! ```text
//! read_from(RunRef { tenant_id, user_id, run_id }, after_seq, limit) -> Vec<payload>
//! ```
//!
//! returns the payloads of the run's events with `seq > after_seq`, oldest
//! first, at most `limit` (0 means the history bound). The caller takes tenant
//! and user from the caller's principal, never from the request, so a user reads
//! only their own runs (the runner serves it as the principal-scoped
//! `ReadRunEvents` RPC). Recipe for a reconnect without a gap: subscribe to the
//! user's topic first, then read from the last seen seq, then drop live events
//! whose seq is not above the last replayed one.
//!
//! Guarantees and limits:
//! - an event is in the history before any subscriber can receive it (append
//!   precedes publish), so "subscribe, then read" never leaves a hole;
//! - the history holds about the last `max_events_per_run` events of a run
//!   (Redis trims approximately, `MAXLEN ~`); when older events were trimmed, the
//!   first returned `seq` is above `after_seq + 1`, and the caller sees the gap;
//! - a history lives `retention` after the run's last event (10 minutes by
//!   default), then disappears: reading an unknown or expired run returns nothing;
//! - the memory implementation ([`memory::MemoryReplayLog`], embedded mode)
//!   also bounds the number of runs it remembers.

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::Topic;

/// Which run's history: runs are scoped by tenant and user like everything else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunRef {
    pub tenant_id: String,
    pub user_id: String,
    pub run_id: String,
}

impl RunRef {
    pub fn new(tenant_id: &str, user_id: &str, run_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            run_id: run_id.to_owned(),
        }
    }
}

/// One event of a run's history as the log sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayEvent {
    pub run: RunRef,
    /// Position in the run, from 1; reads are ordered and filtered by it.
    pub seq: u64,
    /// What is stored and published, untouched.
    pub payload: Bytes,
}

/// Bounds of the history.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Events kept per run (approximately, on Redis).
    pub max_events_per_run: usize,
    /// How long a run's history lives after its last event.
    pub retention: Duration,
    /// Runs remembered at most (memory implementation only; Redis relies on TTLs).
    pub max_runs: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            max_events_per_run: 2_000,
            retention: Duration::from_secs(600),
            max_runs: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store cannot be reached; the caller should report `UNAVAILABLE`.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

impl From<ReplayError> for clawgate_proto::ServiceError {
    fn from(err: ReplayError) -> Self {
        tracing::warn!(error = %err, "replay store error");
        clawgate_proto::ServiceError::unavailable("run history unavailable")
    }
}

/// Appends run events to their run's history and publishes them; reads them back.
#[async_trait]
pub trait ReplayLog: Send + Sync + 'static {
    /// Appends `event` to its run's history, then publishes its payload on each
    /// of `topics`, in order, in one round trip where the broker allows it.
    /// Either part failing is an error; the append (and some of the publishes)
    /// may have happened even then.
    async fn append_and_publish(
        &self,
        topics: &[Topic],
        event: &ReplayEvent,
    ) -> Result<(), ReplayError>;

    /// The payloads of the events of `run` with `seq > after_seq`, oldest
    /// first, at most `limit` (0: the history bound).
    async fn read_from(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Bytes>, ReplayError>;
}
