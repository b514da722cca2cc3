//! Behaviour suite of the event bus: the same tests run against `MemoryBus` and
//! `RedisBus`, plus Redis-only tests of failure handling (dead broker, broker restart,
//! slow consumer).
//!
//! Redis tests use `redis://127.0.0.1:6379` unless `CLAWGATE_TEST_REDIS_URL` is set;
//! each test uses its own random key prefix. Tests that need their own broker start
//! `redis-server` (which must be on `PATH`) on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::{BusError, Delivery, EventBus, Topic};
use tokio::sync::mpsc;

mod support;

use clawgate_runtime::redis::RedisOptions;
use support::{RedisServer, connect_bus, fast_options, free_port};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Factories and helpers
// ---------------------------------------------------------------------------

async fn memory_bus() -> Arc<dyn EventBus> {
    Arc::new(MemoryBus::new())
}

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random_prefix() -> String {
    format!("cgtest-{}", uuid::Uuid::new_v4().simple())
}

async fn redis_bus() -> Arc<dyn EventBus> {
    match connect_bus(&redis_url(), &random_prefix(), RedisOptions::default()).await {
        Ok(bus) => Arc::new(bus),
        Err(err) => panic!(
            "Redis bus tests need a Redis server (set CLAWGATE_TEST_REDIS_URL to point \
             elsewhere): {err}"
        ),
    }
}

fn topic(name: &str) -> Topic {
    Topic::from_name(format!("t.{name}"))
}

async fn next(deliveries: &mut mpsc::Receiver<Delivery>) -> Delivery {
    match tokio::time::timeout(WAIT, deliveries.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("deliveries closed"),
        Err(_) => panic!("no delivery within {WAIT:?}"),
    }
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.payload).into_owned()
}

// ---------------------------------------------------------------------------
// The behaviour suite (both implementations)
//
// "Nothing else arrived" is shown without sleeping: a later message from the same
// publisher on a subscribed topic is a sentinel; delivery is in publish order on
// one subscriber, so anything unwanted would have arrived before it.
// ---------------------------------------------------------------------------

async fn delivers_only_to_subscribers_of_the_topic(bus: Arc<dyn EventBus>) {
    let (a, b) = (topic("a"), topic("b"));
    let mut sub_a = bus.subscriber(16).await.expect("subscriber");
    let mut sub_b = bus.subscriber(16).await.expect("subscriber");
    sub_a.control.subscribe(&a).await.expect("subscribe a");
    sub_b.control.subscribe(&b).await.expect("subscribe b");

    bus.publish(&b, Bytes::from("b1")).await.expect("publish");
    bus.publish(&a, Bytes::from("a1")).await.expect("publish");
    bus.publish(&b, Bytes::from("b2")).await.expect("publish");
    bus.publish(&topic("nobody"), Bytes::from("x"))
        .await
        .expect("publish to a topic nobody subscribed");
    bus.publish(&a, Bytes::from("a2")).await.expect("publish");

    let first = next(&mut sub_a.deliveries).await;
    assert_eq!(
        (first.topic.clone(), text(&first)),
        (a.clone(), "a1".into())
    );
    assert_eq!(text(&next(&mut sub_a.deliveries).await), "a2");
    let first = next(&mut sub_b.deliveries).await;
    assert_eq!(
        (first.topic.clone(), text(&first)),
        (b.clone(), "b1".into())
    );
    assert_eq!(text(&next(&mut sub_b.deliveries).await), "b2");
}

async fn two_subscribers_both_receive(bus: Arc<dyn EventBus>) {
    let a = topic("a");
    let mut one = bus.subscriber(16).await.expect("subscriber");
    let mut two = bus.subscriber(16).await.expect("subscriber");
    one.control.subscribe(&a).await.expect("subscribe");
    two.control.subscribe(&a).await.expect("subscribe");
    bus.publish(&a, Bytes::from("hello"))
        .await
        .expect("publish");
    assert_eq!(text(&next(&mut one.deliveries).await), "hello");
    assert_eq!(text(&next(&mut two.deliveries).await), "hello");
}

async fn keeps_per_topic_order_of_1000_messages(bus: Arc<dyn EventBus>) {
    const N: usize = 1000;
    let (a, b) = (topic("a"), topic("b"));
    // A small queue, drained concurrently: exercises backpressure too.
    let mut sub = bus.subscriber(32).await.expect("subscriber");
    sub.control.subscribe(&a).await.expect("subscribe");
    sub.control.subscribe(&b).await.expect("subscribe");

    let publisher = {
        let (bus, a, b) = (bus.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            for i in 0..N {
                let target = if i.is_multiple_of(3) { &b } else { &a };
                bus.publish(target, Bytes::from(format!("p{i}")))
                    .await
                    .expect("publish");
            }
            let one_by_one = started.elapsed();
            let started = Instant::now();
            for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
                let batch = chunk
                    .iter()
                    .map(|i| {
                        let target = if i.is_multiple_of(3) {
                            b.clone()
                        } else {
                            a.clone()
                        };
                        (target, Bytes::from(format!("m{i}")))
                    })
                    .collect();
                bus.publish_many(batch).await.expect("publish_many");
            }
            (one_by_one, started.elapsed())
        })
    };

    let started = Instant::now();
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..2 * N {
        let delivery = next(&mut sub.deliveries).await;
        if delivery.topic == a {
            seen_a.push(text(&delivery));
        } else {
            seen_b.push(text(&delivery));
        }
    }
    let received_all = started.elapsed();
    let (one_by_one, batched) = publisher.await.expect("publisher task");
    let expected = |keep_b: bool| -> Vec<String> {
        let pick = |i: &usize| i.is_multiple_of(3) == keep_b;
        let publishes = (0..N).filter(pick).map(|i| format!("p{i}"));
        let batches = (0..N).filter(pick).map(|i| format!("m{i}"));
        publishes.chain(batches).collect()
    };
    assert_eq!(seen_a, expected(false), "order on topic a");
    assert_eq!(seen_b, expected(true), "order on topic b");
    println!(
        "{N} publishes: {one_by_one:?}; {N} via publish_many (100 per call): {batched:?}; \
         all {} received in {received_all:?}",
        2 * N
    );
}

async fn unsubscribe_stops_delivery(bus: Arc<dyn EventBus>) {
    let (a, b) = (topic("a"), topic("b"));
    let mut sub = bus.subscriber(16).await.expect("subscriber");
    sub.control.subscribe(&a).await.expect("subscribe");
    sub.control.subscribe(&b).await.expect("subscribe");
    bus.publish(&a, Bytes::from("a1")).await.expect("publish");
    assert_eq!(text(&next(&mut sub.deliveries).await), "a1");

    sub.control.unsubscribe(&a).await.expect("unsubscribe");
    bus.publish(&a, Bytes::from("a2")).await.expect("publish");
    bus.publish(&b, Bytes::from("sentinel"))
        .await
        .expect("publish");
    let delivery = next(&mut sub.deliveries).await;
    assert_eq!(
        (delivery.topic.clone(), text(&delivery)),
        (b, "sentinel".into())
    );
    // Unsubscribing twice, or a topic never subscribed, is harmless.
    sub.control
        .unsubscribe(&a)
        .await
        .expect("unsubscribe again");
    sub.control
        .unsubscribe(&topic("never"))
        .await
        .expect("unsubscribe unknown");
}

async fn no_delivery_of_messages_published_before_subscribe(bus: Arc<dyn EventBus>) {
    let a = topic("a");
    let mut sub = bus.subscriber(16).await.expect("subscriber");
    bus.publish(&a, Bytes::from("early"))
        .await
        .expect("publish");
    sub.control.subscribe(&a).await.expect("subscribe");
    bus.publish(&a, Bytes::from("late")).await.expect("publish");
    assert_eq!(text(&next(&mut sub.deliveries).await), "late");
}

async fn dropping_a_subscriber_does_not_break_publishers(bus: Arc<dyn EventBus>) {
    const N: usize = 200;
    let a = topic("a");
    let dropped = bus.subscriber(2).await.expect("subscriber");
    dropped.control.subscribe(&a).await.expect("subscribe");
    // A subscriber whose deliveries are dropped while its control handle lives on.
    let half_dropped = bus.subscriber(2).await.expect("subscriber");
    half_dropped.control.subscribe(&a).await.expect("subscribe");
    let mut alive = bus.subscriber(2).await.expect("subscriber");
    alive.control.subscribe(&a).await.expect("subscribe");

    drop(dropped);
    let control = half_dropped.control.clone();
    drop(half_dropped);

    let publisher = {
        let (bus, a) = (bus.clone(), a.clone());
        tokio::spawn(async move {
            for i in 0..N {
                bus.publish(&a, Bytes::from(format!("{i}")))
                    .await
                    .expect("publish");
            }
        })
    };
    for i in 0..N {
        assert_eq!(text(&next(&mut alive.deliveries).await), format!("{i}"));
    }
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("publishers must not block on dropped subscribers")
        .expect("publisher task");
    drop(control);
}

macro_rules! behaviour_suite {
    ($module:ident, $make_bus:path) => {
        mod $module {
            #[tokio::test]
            async fn delivers_only_to_subscribers_of_the_topic() {
                super::delivers_only_to_subscribers_of_the_topic($make_bus().await).await;
            }
            #[tokio::test]
            async fn two_subscribers_both_receive() {
                super::two_subscribers_both_receive($make_bus().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keeps_per_topic_order_of_1000_messages() {
                super::keeps_per_topic_order_of_1000_messages($make_bus().await).await;
            }
            #[tokio::test]
            async fn unsubscribe_stops_delivery() {
                super::unsubscribe_stops_delivery($make_bus().await).await;
            }
            #[tokio::test]
            async fn no_delivery_of_messages_published_before_subscribe() {
                super::no_delivery_of_messages_published_before_subscribe($make_bus().await).await;
            }
            #[tokio::test]
            async fn dropping_a_subscriber_does_not_break_publishers() {
                super::dropping_a_subscriber_does_not_break_publishers($make_bus().await).await;
            }
        }
    };
}

behaviour_suite!(memory, super::memory_bus);
behaviour_suite!(redis, super::redis_bus);

// ---------------------------------------------------------------------------
// Redis only: failure handling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redis_dead_broker_gives_unavailable_quickly() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let result = connect_bus(&url, &random_prefix(), fast_options()).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(BusError::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The error names the failure but never the URL (it may carry a password).
    let secret = "redis://:hunter2@127.0.0.1:1";
    let error = connect_bus(secret, "p", fast_options())
        .await
        .expect_err("port 1 is closed");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    println!("connect to a closed port failed after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriber_survives_a_broker_restart() {
    let port = free_port();
    let mut server = RedisServer::start(port, &[]).await;
    let bus = connect_bus(&server.url(), &random_prefix(), fast_options())
        .await
        .expect("connect");
    let (a, b) = (topic("a"), topic("b"));
    let mut sub = bus.subscriber(64).await.expect("subscriber");
    sub.control.subscribe(&a).await.expect("subscribe");
    bus.publish(&a, Bytes::from("before"))
        .await
        .expect("publish");
    assert_eq!(text(&next(&mut sub.deliveries).await), "before");

    server.kill();
    let started = Instant::now();
    let result = bus.publish(&a, Bytes::from("while down")).await;
    let publish_failed_after = started.elapsed();
    assert!(
        matches!(result, Err(BusError::Unavailable(_))),
        "publish while down: {result:?}"
    );
    assert!(publish_failed_after < Duration::from_secs(3));
    // Later publishes meet the publisher's reconnect attempts: still bounded.
    for _ in 0..3 {
        let started = Instant::now();
        let result = bus.publish(&a, Bytes::from("still down")).await;
        assert!(
            matches!(result, Err(BusError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // Give the subscriber task time to notice the drop, then subscribing must fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let result = sub.control.subscribe(&b).await;
    assert!(
        matches!(result, Err(BusError::Unavailable(_))),
        "subscribe while down: {result:?}"
    );

    let _server = RedisServer::start(port, &[]).await;
    let restarted = Instant::now();
    // Publish until the same subscriber, never recreated, receives again.
    let mut attempt = 0;
    let delivery = loop {
        attempt += 1;
        assert!(restarted.elapsed() < WAIT, "no delivery after the restart");
        let _ = bus
            .publish(&a, Bytes::from(format!("after {attempt}")))
            .await;
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(100), sub.deliveries.recv()).await
        {
            break delivery;
        }
    };
    assert_eq!(delivery.topic, a);
    assert!(text(&delivery).starts_with("after "), "{}", text(&delivery));
    let recovered_after = restarted.elapsed();
    // Subscriptions work again, on the same subscriber.
    sub.control
        .subscribe(&b)
        .await
        .expect("subscribe after restart");
    bus.publish(&b, Bytes::from("b after"))
        .await
        .expect("publish");
    loop {
        let delivery = next(&mut sub.deliveries).await;
        if delivery.topic == b {
            assert_eq!(text(&delivery), "b after");
            break;
        }
    }
    println!(
        "publish failed {publish_failed_after:?} after the kill; delivery resumed \
         {recovered_after:?} after the restart ({attempt} publish attempts)"
    );
}

/// A consumer that stops draining must not make the process buffer without bound:
/// the backlog stays in Redis, which drops the connection at its pub/sub output
/// limit; the subscriber then reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_subscriber_pushes_back_into_redis() {
    const MESSAGES: usize = 4000;
    const SIZE: usize = 16 * 1024; // 64 MiB in all
    let port = free_port();
    let _server =
        RedisServer::start(port, &["--client-output-buffer-limit", "pubsub 2mb 1mb 1"]).await;
    let url = format!("redis://127.0.0.1:{port}");
    let bus = connect_bus(&url, &random_prefix(), fast_options())
        .await
        .expect("connect");
    let a = topic("a");
    let mut sub = bus.subscriber(8).await.expect("subscriber");
    sub.control.subscribe(&a).await.expect("subscribe");

    let payload = Bytes::from(vec![b'x'; SIZE]);
    for _ in 0..MESSAGES {
        bus.publish(&a, payload.clone()).await.expect("publish");
    }
    // Drain what survived; stop once the queue stays empty for a while.
    let mut received = 0;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(500), sub.deliveries.recv()).await
    {
        received += 1;
    }
    assert!(
        received < MESSAGES,
        "all {MESSAGES} messages were buffered somewhere unbounded"
    );
    // The subscriber came back without help.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "subscriber did not recover");
        let _ = bus.publish(&a, Bytes::from("small")).await;
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(100), sub.deliveries.recv()).await
            && delivery.payload == "small"
        {
            break;
        }
    }
    println!("slow consumer: {received} of {MESSAGES} x {SIZE} B messages delivered");
}
