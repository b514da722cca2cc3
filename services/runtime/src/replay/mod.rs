//! Replay of a run's events from a given `seq`: a clawgate extension, modelled
//! on Centrifugo's history and recovery.
//!
//! Run events travel on pub/sub, which delivers at most once: a socket that
//! reconnects (to the same or another edge) mid-run misses what was published
//! meanwhile. OpenClaw `chat` deltas carry the full text, so the next delta heals
//! a chat view; clients that need every `agent` event can ask for the ones they
//! missed.
//!
//! **What it owns.** A bounded history per run: every [`RunEvent`] the runner
//! publishes is first appended to its run's history, then published on the bus,
//! on every topic the caller names (the run's user topic and its tenant's run
//! topic, see [`crate::bus::Topic::tenant_runs`]) ([`ReplayLog::append_and_publish`]).
//! On Redis all of it happens in one pipeline on the bus's multiplexed
//! connection (`XADD … MAXLEN ~ N`, `PEXPIRE`, one `PUBLISH` per topic), so
//! history and the extra topic cost no extra round trip per event.
//!
//! **API for the edge** ([`ReplayLog::read_from`]):
//!
//! ```text
//! read_from(RunRef { tenant_id, user_id, run_id }, after_seq, limit) -> Vec<RunEvent>
//! ```
//!
//! returns the run's events with `seq > after_seq`, oldest first, at most `limit`
//! (0 means the history bound). The caller takes tenant and user from the
//! caller's principal, never from the request, so a user reads only their own
//! runs. The runner also serves it as the `ReadRunEvents` RPC (principal-scoped),
//! which is what an edge should call: e.g. a `chat.replay` / `agent.replay
//! {runId, afterSeq}` method, or, on reconnect mid-run, replaying from the last
//! `seq` the client saw to restore the full text. Recipe for a reconnect without
//! a gap: subscribe to the user's topic first, then read from the last seen seq,
//! then drop live events whose seq is not above the last replayed one.
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
use clawgate_proto::pb::common::v1::{BusMessage, RunEvent, bus_message, run_event};
use prost::Message as _;

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

    /// The run an event belongs to.
    pub fn of(event: &RunEvent) -> Self {
        Self::new(&event.tenant_id, &event.user_id, &event.run_id)
    }
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
    /// Appends `event` to its run's history, then publishes it (as a
    /// [`BusMessage`]) on each of `topics`, in order, in one round trip where
    /// the broker allows it. Either part failing is an error; the append (and
    /// some of the publishes) may have happened even then.
    async fn append_and_publish(
        &self,
        topics: &[Topic],
        event: &RunEvent,
    ) -> Result<(), ReplayError>;

    /// The events of `run` with `seq > after_seq`, oldest first, at most `limit`
    /// (0: the history bound).
    async fn read_from(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, ReplayError>;
}

/// The bus payload of a run event.
pub fn bus_payload(event: &RunEvent) -> Bytes {
    BusMessage {
        body: Some(bus_message::Body::RunEvent(event.clone())),
    }
    .encode_to_vec()
    .into()
}

/// Decodes a bus payload holding a run event (anything else is `None`).
pub fn decode_event(payload: &[u8]) -> Option<RunEvent> {
    match BusMessage::decode(payload).ok()?.body? {
        bus_message::Body::RunEvent(event) => Some(event),
        _ => None,
    }
}

/// The assistant text the deltas of `events` add up to, when they are complete
/// from the start (the first delta at offset 0, no gap); `None` otherwise.
pub fn assistant_text(events: &[RunEvent]) -> Option<String> {
    let mut text = String::new();
    for event in events {
        if let Some(run_event::Kind::Assistant(delta)) = &event.kind {
            if delta.offset != text.len() as u64 {
                return None;
            }
            text.push_str(&delta.delta);
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use clawgate_proto::pb::common::v1::AssistantDelta;

    use super::*;

    fn delta(seq: u64, offset: u64, text: &str) -> RunEvent {
        RunEvent {
            seq,
            kind: Some(run_event::Kind::Assistant(AssistantDelta {
                delta: text.into(),
                offset,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn text_is_known_only_without_gaps() {
        assert_eq!(
            assistant_text(&[delta(2, 0, "ab"), delta(3, 2, "c")]).as_deref(),
            Some("abc")
        );
        assert_eq!(assistant_text(&[delta(3, 2, "c")]), None);
        assert_eq!(assistant_text(&[]).as_deref(), Some(""));
    }

    #[test]
    fn payload_round_trips() {
        let event = delta(1, 0, "x");
        assert_eq!(decode_event(&bus_payload(&event)), Some(event));
    }
}
