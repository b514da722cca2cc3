//! Tests of the fan-out hub: refcounted topics, lingering subscriptions,
//! one inbox per socket, the pod inbox, overflow.

use super::*;
use crate::queue::Popped;
use clawgate_proto::pb::common::v1::{AssistantDelta, run_event};
use clawgate_runtime::bus::memory::MemoryBus;

fn event(seq: u64) -> RunEvent {
    RunEvent {
        tenant_id: "t".into(),
        user_id: "u".into(),
        run_id: "r".into(),
        seq,
        kind: Some(run_event::Kind::Assistant(AssistantDelta {
            delta: "x".into(),
            offset: seq - 1,
        })),
        ..Default::default()
    }
}

async fn publish(bus: &MemoryBus, topic: &Topic, event: RunEvent) {
    let message = BusMessage {
        body: Some(bus_message::Body::RunEvent(event)),
    };
    bus.publish(topic, message.encode_to_vec().into())
        .await
        .expect("publish");
}

async fn next(inbox: &EventInbox) -> Vec<u64> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), inbox.pop_all()).await {
        Ok(Popped::Items(items)) => items
            .iter()
            .map(|e| match e {
                HubEvent::Run(run) => run.seq,
                other => panic!("unexpected {other:?}"),
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn fans_out_and_refcounts_topics() {
    let bus = MemoryBus::new();
    let hub = Hub::start(&bus, 16, 1 << 20, Duration::ZERO)
        .await
        .expect("hub");
    let topic = Topic::user("t", "u");
    let a = hub.register(std::slice::from_ref(&topic)).await.expect("a");
    let b = hub.register(std::slice::from_ref(&topic)).await.expect("b");
    assert_eq!(hub.sockets_on(&topic), 2);
    publish(&bus, &topic, event(1)).await;
    assert_eq!(next(&a.inbox).await, vec![1]);
    assert_eq!(next(&b.inbox).await, vec![1]);
    a.release().await;
    assert_eq!(hub.topic_count(), 1);
    b.release().await;
    assert_eq!(hub.topic_count(), 0);
    // Re-registering subscribes again.
    let c = hub.register(std::slice::from_ref(&topic)).await.expect("c");
    publish(&bus, &topic, event(2)).await;
    assert_eq!(next(&c.inbox).await, vec![2]);
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(hub.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_topic_lingers_after_its_last_socket_left() {
    let bus = MemoryBus::new();
    let linger = Duration::from_secs(10);
    let hub = Hub::start(&bus, 16, 1 << 20, linger).await.expect("hub");
    let topic = Topic::user("t", "u");
    let a = hub.register(std::slice::from_ref(&topic)).await.expect("a");
    a.release().await;
    tokio::time::sleep(linger / 2).await;
    assert_eq!(hub.topic_count(), 1, "still subscribed");
    // A socket back within the linger time finds it subscribed and gets
    // what is published; its leaving starts a new linger time.
    let b = hub.register(std::slice::from_ref(&topic)).await.expect("b");
    publish(&bus, &topic, event(1)).await;
    assert_eq!(next(&b.inbox).await, vec![1]);
    b.release().await;
    tokio::time::sleep(linger * 3 / 4).await;
    assert_eq!(
        hub.topic_count(),
        1,
        "the first linger time no longer applies"
    );
    tokio::time::sleep(linger / 2).await;
    assert_eq!(
        hub.topic_count(),
        0,
        "unsubscribed once the linger time passed"
    );
    // A socket on it while the time passes keeps it.
    let c = hub.register(std::slice::from_ref(&topic)).await.expect("c");
    drop(hub.register(std::slice::from_ref(&topic)).await.expect("d"));
    tokio::time::sleep(linger * 2).await;
    assert_eq!(hub.topic_count(), 1);
    publish(&bus, &topic, event(2)).await;
    assert_eq!(next(&c.inbox).await, vec![2]);
}

#[tokio::test]
async fn one_inbox_for_the_user_and_the_tenant_topics() {
    use clawgate_proto::pb::common::v1::Disconnect;
    let bus = MemoryBus::new();
    let hub = Hub::start(&bus, 16, 1 << 20, Duration::ZERO)
        .await
        .expect("hub");
    let topics = [Topic::user("t", "u"), Topic::tenant("t")];
    let a = hub.register(&topics).await.expect("a");
    let b = hub.register(&topics[1..]).await.expect("b");
    assert_eq!(hub.topic_count(), 2);
    assert_eq!(hub.sockets_on(&topics[1]), 2);
    let message = BusMessage {
        body: Some(bus_message::Body::Disconnect(Disconnect {
            tenant_id: "t".into(),
            device_id: "d".into(),
            ..Default::default()
        })),
    };
    bus.publish(&topics[1], message.encode_to_vec().into())
        .await
        .expect("publish");
    for inbox in [&a.inbox, &b.inbox] {
        match tokio::time::timeout(std::time::Duration::from_secs(2), inbox.pop_all()).await {
            Ok(Popped::Items(items)) => {
                assert!(matches!(&items[..], [HubEvent::Disconnect(d)] if d.device_id == "d"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    publish(&bus, &topics[0], event(1)).await;
    assert_eq!(next(&a.inbox).await, vec![1]);
    a.release().await;
    assert_eq!(hub.topic_count(), 1);
    b.release().await;
    assert_eq!(hub.topic_count(), 0);
    let none = hub.register(&[]).await.expect("no topics");
    assert_eq!(hub.topic_count(), 0);
    drop(none);
}

#[tokio::test]
async fn a_disconnect_on_the_pod_inbox_reaches_the_tenant_sockets() {
    use clawgate_proto::pb::common::v1::Disconnect;
    let bus = MemoryBus::new();
    let hub = Hub::start(&bus, 16, 1 << 20, Duration::ZERO)
        .await
        .expect("hub");
    let inbox = Topic::from_name("edge.pod-1");
    hub.subscribe_inbox(inbox.clone()).await.expect("inbox");
    let socket = hub.register(&[Topic::tenant("t")]).await.expect("socket");
    let message = BusMessage {
        body: Some(bus_message::Body::Disconnect(Disconnect {
            tenant_id: "t".into(),
            device_id: "d".into(),
            ..Default::default()
        })),
    };
    bus.publish(&inbox, message.encode_to_vec().into())
        .await
        .expect("publish");
    match tokio::time::timeout(std::time::Duration::from_secs(2), socket.inbox.pop_all()).await {
        Ok(Popped::Items(items)) => {
            assert!(matches!(&items[..], [HubEvent::Disconnect(d)] if d.device_id == "d"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn admins_take_the_tenant_run_topic_operators_their_own() {
    let mut principal = Principal {
        tenant_id: "t".into(),
        user_id: "u".into(),
        role: "operator".into(),
        ..Default::default()
    };
    assert_eq!(
        socket_topics(&principal),
        [Topic::user("t", "u"), Topic::tenant("t")]
    );
    principal.scopes = vec!["operator.admin".into()];
    assert_eq!(run_topic(&principal), Topic::tenant_runs("t"));
    principal.scopes.clear();
    for role in ["admin", "owner"] {
        principal.role = role.into();
        assert_eq!(run_topic(&principal), Topic::tenant_runs("t"));
    }
    principal.role = "viewer".into();
    assert_eq!(run_topic(&principal), Topic::user("t", "u"));
}

#[tokio::test]
async fn an_event_on_both_run_topics_reaches_each_socket_once() {
    let bus = MemoryBus::new();
    let hub = Hub::start(&bus, 16, 1 << 20, Duration::ZERO)
        .await
        .expect("hub");
    let (user, tenant) = (Topic::user("t", "u"), Topic::tenant_runs("t"));
    let operator = hub
        .register(std::slice::from_ref(&user))
        .await
        .expect("operator");
    let admin = hub
        .register(std::slice::from_ref(&tenant))
        .await
        .expect("admin");
    let message = BusMessage {
        body: Some(bus_message::Body::RunEvent(event(1))),
    };
    let payload: bytes::Bytes = message.encode_to_vec().into();
    bus.publish_many(vec![(user, payload.clone()), (tenant, payload)])
        .await
        .expect("publish");
    assert_eq!(next(&operator.inbox).await, vec![1]);
    assert_eq!(next(&admin.inbox).await, vec![1]);
    publish(&bus, &Topic::user("t", "u"), event(2)).await;
    assert_eq!(next(&operator.inbox).await, vec![2]);
    let nothing =
        tokio::time::timeout(std::time::Duration::from_millis(50), admin.inbox.pop_all()).await;
    assert!(
        nothing.is_err(),
        "the admin got an event twice or one not for it"
    );
}

#[tokio::test]
async fn a_full_inbox_overflows_without_blocking_others() {
    let bus = MemoryBus::new();
    let hub = Hub::start(&bus, 16, 300, Duration::ZERO)
        .await
        .expect("hub");
    let topic = Topic::user("t", "u");
    let slow = hub
        .register(std::slice::from_ref(&topic))
        .await
        .expect("slow");
    let fast = hub
        .register(std::slice::from_ref(&topic))
        .await
        .expect("fast");
    for seq in 1..=10 {
        publish(&bus, &topic, event(seq)).await;
        assert_eq!(next(&fast.inbox).await, vec![seq]);
    }
    assert!(matches!(slow.inbox.pop_all().await, Popped::Overflowed));
}
