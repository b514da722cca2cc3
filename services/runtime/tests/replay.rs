//! Behaviour suite of the replay log: the same tests run against
//! `MemoryReplayLog` and `RedisReplayLog` (a real Redis, a random key prefix per
//! test; `CLAWGATE_TEST_REDIS_URL` points elsewhere).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{AssistantDelta, RunEvent, run_event};
use clawgate_proto::run_events::{bus_payload, decode_event};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::redis::Redis;
use clawgate_runtime::replay::memory::MemoryReplayLog;
use clawgate_runtime::replay::redis::RedisReplayLog;
use clawgate_runtime::replay::{ReplayError, ReplayEvent, ReplayLog, ReplayOptions, RunRef};

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis() -> Redis {
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    Redis::connect(&redis_url(), &prefix)
        .await
        .expect("replay tests need Redis (CLAWGATE_TEST_REDIS_URL)")
}

async fn memory_log(options: ReplayOptions) -> (Arc<dyn ReplayLog>, Arc<dyn EventBus>) {
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    (Arc::new(MemoryReplayLog::new(bus.clone(), options)), bus)
}

async fn redis_log(options: ReplayOptions) -> (Arc<dyn ReplayLog>, Arc<dyn EventBus>) {
    let redis = redis().await;
    (
        Arc::new(RedisReplayLog::new(&redis, options)),
        Arc::new(RedisBus::new(&redis)),
    )
}

/// The log stores opaque payloads; these tests store run events' bus payloads.
trait RunEvents {
    async fn append(&self, topics: &[Topic], event: &RunEvent) -> Result<(), ReplayError>;
    async fn events(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, ReplayError>;
}

impl<L: ReplayLog + ?Sized> RunEvents for L {
    async fn append(&self, topics: &[Topic], event: &RunEvent) -> Result<(), ReplayError> {
        let entry = ReplayEvent {
            run: run_of(event),
            seq: event.seq,
            payload: bus_payload(event),
        };
        self.append_and_publish(topics, &entry).await
    }

    async fn events(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, ReplayError> {
        let payloads = self.read_from(run, after_seq, limit).await?;
        Ok(payloads.iter().filter_map(|p| decode_event(p)).collect())
    }
}

fn run_of(event: &RunEvent) -> RunRef {
    RunRef::new(&event.tenant_id, &event.user_id, &event.run_id)
}

fn event(user: &str, run: &str, seq: u64) -> RunEvent {
    RunEvent {
        tenant_id: "t".into(),
        user_id: user.into(),
        session_key: "main".into(),
        run_id: run.into(),
        seq,
        kind: Some(run_event::Kind::Assistant(AssistantDelta {
            delta: format!("d{seq} "),
            offset: 0,
        })),
        ..Default::default()
    }
}

fn seqs(events: &[RunEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

async fn reads_back_in_order_from_a_seq(log: Arc<dyn ReplayLog>, bus: Arc<dyn EventBus>) {
    let topic = Topic::user("t", "alice");
    let mut subscriber = bus.subscriber(64).await.unwrap();
    subscriber.control.subscribe(&topic).await.unwrap();
    for seq in 1..=5 {
        log.append(std::slice::from_ref(&topic), &event("alice", "r1", seq))
            .await
            .unwrap();
        // Appended before published: whoever receives it can replay it.
        let delivery = tokio::time::timeout(Duration::from_secs(5), subscriber.deliveries.recv())
            .await
            .unwrap()
            .unwrap();
        let live = decode_event(&delivery.payload).unwrap();
        assert_eq!(live.seq, seq);
        let replayed = log.events(&run_of(&live), seq - 1, 0).await.unwrap();
        assert_eq!(replayed, vec![live]);
    }
    let run = RunRef::new("t", "alice", "r1");
    let all = log.events(&run, 0, 0).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[0], event("alice", "r1", 1));
    assert_eq!(seqs(&log.events(&run, 2, 0).await.unwrap()), [3, 4, 5]);
    assert_eq!(seqs(&log.events(&run, 2, 2).await.unwrap()), [3, 4]);
    assert!(log.events(&run, 5, 0).await.unwrap().is_empty());
}

async fn runs_are_scoped_by_tenant_and_user(log: Arc<dyn ReplayLog>, _bus: Arc<dyn EventBus>) {
    let topic = Topic::user("t", "alice");
    log.append(std::slice::from_ref(&topic), &event("alice", "r1", 1))
        .await
        .unwrap();
    assert!(
        log.events(&RunRef::new("t", "bob", "r1"), 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        log.events(&RunRef::new("other", "alice", "r1"), 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        log.events(&RunRef::new("t", "alice", "unknown"), 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn history_is_bounded_keeping_the_newest(log: Arc<dyn ReplayLog>, _bus: Arc<dyn EventBus>) {
    let topic = Topic::user("t", "alice");
    for seq in 1..=500 {
        log.append(std::slice::from_ref(&topic), &event("alice", "big", seq))
            .await
            .unwrap();
    }
    let kept = log
        .events(&RunRef::new("t", "alice", "big"), 0, 0)
        .await
        .unwrap();
    // Redis trims approximately (whole stream nodes), memory exactly.
    assert!(kept.len() >= 10 && kept.len() < 500, "kept {}", kept.len());
    assert_eq!(kept.last().unwrap().seq, 500);
    assert!(kept.windows(2).all(|pair| pair[1].seq == pair[0].seq + 1));
}

fn small() -> ReplayOptions {
    ReplayOptions {
        max_events_per_run: 10,
        ..ReplayOptions::default()
    }
}

async fn publishes_on_every_topic_once(log: Arc<dyn ReplayLog>, bus: Arc<dyn EventBus>) {
    let topics = [Topic::user("t", "alice"), Topic::tenant_runs("t")];
    let mut user = bus.subscriber(64).await.unwrap();
    user.control.subscribe(&topics[0]).await.unwrap();
    let mut tenant = bus.subscriber(64).await.unwrap();
    tenant.control.subscribe(&topics[1]).await.unwrap();
    for seq in 1..=3 {
        log.append(&topics, &event("alice", "r1", seq))
            .await
            .unwrap();
    }
    for (subscriber, topic) in [(&mut user, &topics[0]), (&mut tenant, &topics[1])] {
        for seq in 1..=3 {
            let delivery =
                tokio::time::timeout(Duration::from_secs(5), subscriber.deliveries.recv())
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(&delivery.topic, topic);
            assert_eq!(decode_event(&delivery.payload).unwrap().seq, seq);
        }
    }
    // One history entry per event, however many topics it went to.
    let all = log
        .events(&RunRef::new("t", "alice", "r1"), 0, 0)
        .await
        .unwrap();
    assert_eq!(seqs(&all), vec![1, 2, 3]);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $( #[tokio::test] async fn $name() { let (log, bus) = memory_log(small()).await; super::$name(log, bus).await; } )*
        }
        mod redis {
            use super::*;
            $( #[tokio::test] async fn $name() { let (log, bus) = redis_log(small()).await; super::$name(log, bus).await; } )*
        }
    };
}

suite!(
    reads_back_in_order_from_a_seq,
    runs_are_scoped_by_tenant_and_user,
    history_is_bounded_keeping_the_newest,
    publishes_on_every_topic_once,
);

#[tokio::test(start_paused = true)]
async fn memory_histories_expire_and_the_number_of_runs_is_bounded() {
    let (log, _bus) = memory_log(ReplayOptions {
        max_events_per_run: 10,
        retention: Duration::from_millis(100),
        max_runs: 2,
    })
    .await;
    let topic = Topic::user("t", "alice");
    for run in ["a", "b", "c"] {
        log.append(std::slice::from_ref(&topic), &event("alice", run, 1))
            .await
            .unwrap();
    }
    let read = |run: &'static str| {
        let log = log.clone();
        async move {
            log.events(&RunRef::new("t", "alice", run), 0, 0)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(read("a").await, 0, "least recently appended run dropped");
    assert_eq!(read("c").await, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(read("c").await, 0, "expired");
}

#[tokio::test]
async fn redis_histories_carry_a_ttl() {
    let redis = redis().await;
    let log = RedisReplayLog::new(
        &redis,
        ReplayOptions {
            retention: Duration::from_secs(42),
            ..ReplayOptions::default()
        },
    );
    log.append(&[Topic::user("t", "alice")], &event("alice", "r1", 1))
        .await
        .unwrap();
    let key = log.stream_key(&RunRef::new("t", "alice", "r1"));
    assert!(key.contains("{t:alice}"), "{key}");
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 40_000 && ttl <= 42_000, "ttl {ttl}");
}
