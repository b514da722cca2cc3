//! Publishing a run's events: appended to the run's replay history and
//! published on the bus ([`RunHistory::append_and_publish`], one round trip on
//! Redis), on two topics:
//!
//! - [`Topic::user`] of the run's tenant and user, which the sockets of that
//!   user that see only their own runs (operators, viewers) subscribe to;
//! - [`Topic::tenant_runs`] of the run's tenant, which the sockets that see the
//!   whole tenant (admins, owners) subscribe to instead.
//!
//! A socket is on exactly one of the two, so it receives each event once. Every
//! path that publishes a run event goes through [`EventPublisher`] (the run
//! itself, and the reaper ending a dead runner's run), so no event skips either
//! topic.
//!
//! Invariants: every event of a run carries the run's tenant, user, session key,
//! run id and agent id, and a `seq` that starts at 1 and grows by exactly one per
//! event, whether or not its publish succeeded (so a receiver can see a gap); the
//! event is in the replay history before it is published on either topic. A
//! failed or stalled publish is logged and given up after a timeout; it never
//! stops the run.

use std::time::Duration;

use clawgate_proto::pb::common::v1::{RunEvent, run_event};
use clawgate_runtime::bus::Topic;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::telemetry::current_trace_context;
use tracing::Instrument as _;

use crate::history::RunHistory;

/// The identity stamped on every event of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunIdentity {
    pub tenant_id: String,
    pub user_id: String,
    pub session_key: String,
    pub run_id: String,
    pub agent_id: String,
}

/// The topics every event of a run is published on: its user's, then its
/// tenant's run topic.
pub(crate) fn run_topics(tenant_id: &str, user_id: &str) -> [Topic; 2] {
    [
        Topic::user(tenant_id, user_id),
        Topic::tenant_runs(tenant_id),
    ]
}

pub(crate) struct EventPublisher {
    log: RunHistory,
    topics: [Topic; 2],
    identity: RunIdentity,
    seq: u64,
    timeout: Duration,
}

impl EventPublisher {
    pub fn new(log: RunHistory, identity: RunIdentity, timeout: Duration) -> Self {
        Self::resume(log, identity, timeout, 0)
    }

    /// A publisher whose next event gets `last_seq + 1` (a reaper ending
    /// another runner's run).
    pub fn resume(
        log: RunHistory,
        identity: RunIdentity,
        timeout: Duration,
        last_seq: u64,
    ) -> Self {
        Self {
            topics: run_topics(&identity.tenant_id, &identity.user_id),
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
        let span = tracing::debug_span!("bus.publish", topic = %self.topics[0], seq = self.seq);
        let publish = self.log.append_and_publish(&self.topics, &event);
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

#[cfg(test)]
mod tests {
    use clawgate_proto::pb::common::v1::LifecycleStart;
    use clawgate_runtime::bus::EventBus;
    use clawgate_runtime::bus::memory::MemoryBus;
    use std::sync::Arc;

    use clawgate_proto::run_events::decode_event;
    use clawgate_runtime::replay::memory::MemoryReplayLog;
    use clawgate_runtime::replay::{ReplayOptions, RunRef};

    use super::*;

    #[tokio::test]
    async fn events_go_to_the_user_and_the_tenant_run_topics() {
        let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
        let log = RunHistory::new(Arc::new(MemoryReplayLog::new(
            bus.clone(),
            ReplayOptions::default(),
        )));
        let mut subscriber = bus.subscriber(8).await.expect("subscriber");
        for topic in run_topics("t", "alice") {
            subscriber
                .control
                .subscribe(&topic)
                .await
                .expect("subscribe");
        }
        let identity = RunIdentity {
            tenant_id: "t".into(),
            user_id: "alice".into(),
            run_id: "r1".into(),
            ..Default::default()
        };
        let mut publisher = EventPublisher::new(log.clone(), identity, Duration::from_secs(1));
        publisher
            .publish(run_event::Kind::Start(LifecycleStart::default()))
            .await;
        let mut topics = Vec::new();
        for _ in 0..2 {
            let delivery = subscriber.deliveries.recv().await.expect("delivery");
            let event = decode_event(&delivery.payload).expect("run event");
            assert_eq!((event.user_id.as_str(), event.seq), ("alice", 1));
            topics.push(delivery.topic);
        }
        assert_eq!(topics, run_topics("t", "alice").to_vec());
        let history = log
            .read_from(&RunRef::new("t", "alice", "r1"), 0, 0)
            .await
            .expect("history");
        assert_eq!(history.len(), 1, "one history entry per event");
    }
}
