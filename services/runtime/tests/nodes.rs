//! The node registry on both backends (Redis with a random key prefix per
//! test) and the invoker against a fake edge on the bus: records per tenant, a
//! disconnect applied only to the socket a record names, calls answered,
//! deduplicated by idempotency key, refused without delivery, waiting for a
//! reconnecting node, failing at once when the node leaves or its pod's inbox
//! loses its listener, and timing out.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawgate_proto::pb::common::v1::{
    BusMessage, NodeInvokeRequest, NodeInvokeResult, bus_message,
};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::device_registry::inbox_topic;
use clawgate_runtime::nodes::invoker::{InvokeCall, InvokeError, Invoker, LEFT, NOT_HERE};
use clawgate_runtime::nodes::memory::MemoryNodeRegistry;
use clawgate_runtime::nodes::redis::RedisNodeRegistry;
use clawgate_runtime::nodes::{NodeRecord, NodeRegistry};
use clawgate_runtime::redis::Redis;
use prost::Message as _;

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis() -> Redis {
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    Redis::connect(&redis_url(), &prefix)
        .await
        .expect("node registry tests need Redis (CLAWGATE_TEST_REDIS_URL)")
}

fn record(tenant: &str, node: &str, conn: &str, pod: &str) -> NodeRecord {
    NodeRecord {
        tenant_id: tenant.into(),
        node_id: node.into(),
        user_id: "alice".into(),
        pod_id: pod.into(),
        conn_id: conn.into(),
        commands: vec!["camera.snap".into(), "screen.record".into()],
        allowed_commands: vec!["camera.snap".into()],
        connected: true,
        connected_at_ms: now_ms(),
        ..NodeRecord::default()
    }
    .renewed()
}

#[tokio::test]
async fn records_stay_in_their_tenant_and_a_disconnect_names_its_socket() {
    let redis = redis().await;
    let registries: Vec<(&str, Arc<dyn NodeRegistry>)> = vec![
        ("memory", Arc::new(MemoryNodeRegistry::new())),
        ("redis", Arc::new(RedisNodeRegistry::new(&redis))),
    ];
    for (name, registry) in registries {
        registry
            .put(&[
                record("ta", "n1", "c1", "p1"),
                record("tb", "n1", "c9", "p1"),
            ])
            .await
            .unwrap();
        let ta = registry.list("ta").await.unwrap();
        assert_eq!(ta.len(), 1, "{name}");
        assert_eq!(ta[0].conn_id, "c1", "{name}");
        assert_eq!(
            registry.get("tb", "n1").await.unwrap().unwrap().conn_id,
            "c9"
        );
        assert!(registry.get("tc", "n1").await.unwrap().is_none(), "{name}");
        // The node reconnected on another socket: the old socket's close
        // leaves the new record alone.
        registry
            .put(&[record("ta", "n1", "c2", "p2")])
            .await
            .unwrap();
        registry
            .disconnect("ta", "n1", "c1", "disconnect")
            .await
            .unwrap();
        let now = registry.get("ta", "n1").await.unwrap().unwrap();
        assert!(now.is_live(now_ms()), "{name}: {now:?}");
        assert_eq!(now.pod_id, "p2");
        registry
            .disconnect("ta", "n1", "c2", "disconnect")
            .await
            .unwrap();
        let gone = registry.get("ta", "n1").await.unwrap().unwrap();
        assert!(!gone.connected, "{name}");
        assert_eq!(gone.last_seen_reason, "disconnect");
        assert!(gone.last_seen_at_ms > 0);
        // The other tenant's node is untouched.
        assert!(registry.get("tb", "n1").await.unwrap().unwrap().connected);
        registry.forget("ta", "n1").await.unwrap();
        assert!(registry.get("ta", "n1").await.unwrap().is_none(), "{name}");
    }
}

/// How the fake edge answers.
#[derive(Clone, Copy)]
enum Answer {
    Payload,
    NotHere,
    Left,
    Silent,
}

/// A fake edge pod: answers every call arriving on its inbox.
async fn fake_edge(bus: Arc<dyn EventBus>, pod: &str, answer: Answer) -> Arc<AtomicUsize> {
    let mut subscriber = bus.subscriber(64).await.unwrap();
    subscriber
        .control
        .subscribe(&inbox_topic(pod))
        .await
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let _control = subscriber.control;
        while let Some(delivery) = subscriber.deliveries.recv().await {
            let Ok(BusMessage {
                body: Some(bus_message::Body::NodeInvokeRequest(request)),
            }) = BusMessage::decode(delivery.payload)
            else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let result = reply(&request, answer);
            if let Some(result) = result {
                let message = BusMessage {
                    body: Some(bus_message::Body::NodeInvokeResult(result)),
                };
                let topic = Topic::from_name(request.reply_topic.clone());
                bus.publish(&topic, Bytes::from(message.encode_to_vec()))
                    .await
                    .unwrap();
            }
        }
    });
    seen
}

fn reply(request: &NodeInvokeRequest, answer: Answer) -> Option<NodeInvokeResult> {
    let base = NodeInvokeResult {
        id: request.id.clone(),
        tenant_id: request.tenant_id.clone(),
        node_id: request.node_id.clone(),
        ..Default::default()
    };
    match answer {
        Answer::Payload => Some(NodeInvokeResult {
            ok: true,
            payload_json: format!(r#"{{"echo":{}}}"#, request.params_json),
            ..base
        }),
        Answer::NotHere | Answer::Left => Some(NodeInvokeResult {
            not_connected: true,
            error_code: if matches!(answer, Answer::NotHere) {
                NOT_HERE
            } else {
                LEFT
            }
            .into(),
            ..base
        }),
        Answer::Silent => None,
    }
}

/// An invoker whose replies arrive on its own topic (it pumps them itself).
async fn invoker(bus: Arc<dyn EventBus>, registry: Arc<dyn NodeRegistry>) -> Invoker {
    let topic = Topic::from_name(format!("caller.{}", uuid::Uuid::new_v4().simple()));
    let invoker = Invoker::new(bus.clone(), registry, topic.clone());
    let mut subscriber = bus.subscriber(64).await.unwrap();
    subscriber.control.subscribe(&topic).await.unwrap();
    let pump = invoker.clone();
    tokio::spawn(async move {
        let _control = subscriber.control;
        while let Some(delivery) = subscriber.deliveries.recv().await {
            if let Ok(BusMessage {
                body: Some(bus_message::Body::NodeInvokeResult(result)),
            }) = BusMessage::decode(delivery.payload)
            {
                pump.complete(result);
            }
        }
    });
    invoker
}

fn call(command: &str, key: &str, timeout: Duration) -> InvokeCall {
    InvokeCall {
        tenant_id: "ta".into(),
        node_id: "n1".into(),
        owner: None,
        command: command.into(),
        params_json: r#"{"q":1}"#.into(),
        timeout,
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn calls_are_answered_deduplicated_and_refused_without_delivery() {
    let redis = redis().await;
    for bus in [
        Arc::new(MemoryBus::new()) as Arc<dyn EventBus>,
        Arc::new(RedisBus::new(&redis)),
    ] {
        let registry: Arc<dyn NodeRegistry> = Arc::new(MemoryNodeRegistry::new());
        registry
            .put(&[record("ta", "n1", "c1", "p1")])
            .await
            .unwrap();
        let seen = fake_edge(bus.clone(), "p1", Answer::Payload).await;
        let invoker = invoker(bus.clone(), registry.clone()).await;
        let done = invoker
            .invoke(call("camera.snap", "k1", Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(done.payload_json, r#"{"echo":{"q":1}}"#);
        let again = invoker
            .invoke(call("camera.snap", "k1", Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(again, done);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a retry of one key runs once"
        );
        // Declared but not approved, and reserved: never delivered.
        for command in ["screen.record", "system.execApprovals.get"] {
            let refused = invoker
                .invoke(call(command, command, Duration::from_secs(5)))
                .await;
            assert_eq!(refused, Err(InvokeError::Disallowed(command.into())));
        }
        // Another user's node reads as not connected.
        let foreign = InvokeCall {
            owner: Some("bob".into()),
            ..call("camera.snap", "k2", Duration::from_secs(5))
        };
        assert_eq!(
            invoker.invoke(foreign).await,
            Err(InvokeError::NotConnected)
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(invoker.in_flight(), 0);
    }
}

#[tokio::test]
async fn a_node_that_left_fails_at_once_and_a_reconnecting_one_is_waited_for() {
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let registry: Arc<dyn NodeRegistry> = Arc::new(MemoryNodeRegistry::new());
    registry
        .put(&[record("ta", "n1", "c1", "left")])
        .await
        .unwrap();
    fake_edge(bus.clone(), "left", Answer::Left).await;
    let invoker = invoker(bus.clone(), registry.clone()).await;
    let started = Instant::now();
    let left = invoker
        .invoke(call("camera.snap", "", Duration::from_secs(10)))
        .await;
    assert_eq!(left, Err(InvokeError::NotConnected));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Not on its pod (it moved): looked up again until it is back elsewhere.
    registry
        .put(&[record("ta", "n1", "c1", "stale")])
        .await
        .unwrap();
    fake_edge(bus.clone(), "stale", Answer::NotHere).await;
    let seen = fake_edge(bus.clone(), "fresh", Answer::Payload).await;
    let moved = registry.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        moved
            .put(&[record("ta", "n1", "c2", "fresh")])
            .await
            .unwrap();
    });
    let invoker = self::invoker(bus.clone(), registry.clone()).await;
    let done = invoker
        .invoke(call("camera.snap", "", Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(done.payload_json.contains("echo"));
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // A known node that does not come back: not connected after the grace.
    registry
        .disconnect("ta", "n1", "c2", "disconnect")
        .await
        .unwrap();
    // (A new caller: the last one may reuse the live record it just read.)
    let invoker = self::invoker(bus.clone(), registry.clone()).await;
    let started = Instant::now();
    let absent = invoker
        .invoke(call("camera.snap", "", Duration::from_secs(10)))
        .await;
    assert_eq!(absent, Err(InvokeError::NotConnected));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // An unknown node is not waited for.
    let started = Instant::now();
    let unknown = InvokeCall {
        node_id: "nobody".into(),
        ..call("camera.snap", "", Duration::from_secs(10))
    };
    assert_eq!(
        invoker.invoke(unknown).await,
        Err(InvokeError::NotConnected)
    );
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn a_dead_pod_fails_the_call_within_a_second_and_silence_times_out() {
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let registry: Arc<dyn NodeRegistry> = Arc::new(MemoryNodeRegistry::new());
    // The record names a pod nobody listens for.
    registry
        .put(&[record("ta", "n1", "c1", "dead")])
        .await
        .unwrap();
    let invoker = invoker(bus.clone(), registry.clone()).await;
    let started = Instant::now();
    let dead = invoker
        .invoke(call("camera.snap", "", Duration::from_secs(10)))
        .await;
    assert_eq!(dead, Err(InvokeError::NotConnected));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    registry
        .put(&[record("ta", "n1", "c1", "mute")])
        .await
        .unwrap();
    fake_edge(bus.clone(), "mute", Answer::Silent).await;
    let invoker = self::invoker(bus.clone(), registry).await;
    let started = Instant::now();
    let silent = invoker
        .invoke(call("camera.snap", "", Duration::from_millis(600)))
        .await;
    assert_eq!(silent, Err(InvokeError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(
        invoker.in_flight(),
        0,
        "a call that ended leaves nothing pending"
    );
}
