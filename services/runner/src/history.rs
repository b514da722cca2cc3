//! [`RunHistory`]: a run's replay history in run events. The runtime's replay
//! log ([`ReplayLog`]) stores and publishes opaque payloads; this is where they
//! become [`RunEvent`]s (as their bus payload, [`bus_payload`]) and back.
//!
//! Invariant: what is appended is exactly what subscribers receive on the bus,
//! so a replayed event and a live one decode the same; payloads that are not a
//! run event are skipped on read.

use std::sync::Arc;

use clawgate_proto::pb::common::v1::RunEvent;
use clawgate_proto::run_events::{bus_payload, decode_event};
use clawgate_runtime::bus::Topic;
use clawgate_runtime::replay::{ReplayError, ReplayEvent, ReplayLog, RunRef};

/// The run events of every run, on a replay log. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RunHistory {
    log: Arc<dyn ReplayLog>,
}

/// The run an event belongs to.
pub(crate) fn run_of(event: &RunEvent) -> RunRef {
    RunRef::new(&event.tenant_id, &event.user_id, &event.run_id)
}

impl RunHistory {
    pub fn new(log: Arc<dyn ReplayLog>) -> Self {
        Self { log }
    }

    /// The log underneath.
    pub fn log(&self) -> &Arc<dyn ReplayLog> {
        &self.log
    }

    /// Appends `event` to its run's history, then publishes it on `topics`.
    pub async fn append_and_publish(
        &self,
        topics: &[Topic],
        event: &RunEvent,
    ) -> Result<(), ReplayError> {
        let entry = ReplayEvent {
            run: run_of(event),
            seq: event.seq,
            payload: bus_payload(event),
        };
        self.log.append_and_publish(topics, &entry).await
    }

    /// The events of `run` with `seq > after_seq`, oldest first, at most
    /// `limit` (0: the history bound).
    pub async fn read_from(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, ReplayError> {
        let payloads = self.log.read_from(run, after_seq, limit).await?;
        Ok(payloads
            .iter()
            .filter_map(|payload| decode_event(payload))
            .collect())
    }
}
