//! Publishing a run's events: appended to the run's replay history and
//! published on the bus ([`ReplayLog::append_and_publish`], one round trip on
//! Redis).
//!
//! Invariants: every event of a run carries the run's tenant, user, session key,
//! run id and agent id, and a `seq` that starts at 1 and grows by exactly one per
//! event, whether or not its publish succeeded (so a receiver can see a gap). A
//! failed or stalled publish is logged and given up after a timeout; it never
//! stops the run.

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{RunEvent, run_event};
use clawgate_runtime::bus::Topic;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::replay::ReplayLog;
use clawgate_runtime::telemetry::current_trace_context;
use tracing::Instrument as _;

/// The identity stamped on every event of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunIdentity {
    pub tenant_id: String,
    pub user_id: String,
    pub session_key: String,
    pub run_id: String,
    pub agent_id: String,
}

pub(crate) struct EventPublisher {
    log: Arc<dyn ReplayLog>,
    topic: Topic,
    identity: RunIdentity,
    seq: u64,
    timeout: Duration,
}

impl EventPublisher {
    pub fn new(log: Arc<dyn ReplayLog>, identity: RunIdentity, timeout: Duration) -> Self {
        Self::resume(log, identity, timeout, 0)
    }

    /// A publisher whose next event gets `last_seq + 1` (a reaper ending
    /// another runner's run).
    pub fn resume(
        log: Arc<dyn ReplayLog>,
        identity: RunIdentity,
        timeout: Duration,
        last_seq: u64,
    ) -> Self {
        Self {
            topic: Topic::user(&identity.tenant_id, &identity.user_id),
            log,
            identity,
            seq: last_seq,
            timeout,
        }
    }

    /// Publishes one event of the run. Failures are logged, never returned.
    pub async fn publish(&mut self, kind: run_event::Kind) {
        self.seq += 1;
        let event = RunEvent {
            tenant_id: self.identity.tenant_id.clone(),
            user_id: self.identity.user_id.clone(),
            session_key: self.identity.session_key.clone(),
            run_id: self.identity.run_id.clone(),
            seq: self.seq,
            ts_ms: now_ms(),
            trace: Some(current_trace_context()).filter(|trace| !trace.traceparent.is_empty()),
            agent_id: self.identity.agent_id.clone(),
            kind: Some(kind),
        };
        let span = tracing::debug_span!("bus.publish", topic = %self.topic, seq = self.seq);
        let publish = self.log.append_and_publish(&self.topic, &event);
        match tokio::time::timeout(self.timeout, publish)
            .instrument(span)
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, run_id = %self.identity.run_id, seq = self.seq, "run event publish failed");
            }
            Err(_) => {
                tracing::warn!(run_id = %self.identity.run_id, seq = self.seq, "run event publish timed out");
            }
        }
    }
}
