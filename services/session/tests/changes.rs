//! What the session service tells the bus about its changes, and the listing
//! filters and reset behind the OpenClaw session methods, on SQLite and
//! PostgreSQL (in-process; the bus is the in-process one).

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{BusMessage, SessionChange, bus_message};
use clawgate_proto::session::{
    DeleteSessionRequest, EnsureSessionRequest, ListSessionsRequest, PatchSessionRequest,
    ResetSessionRequest, SessionApi,
};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::{Delivery, EventBus, SubscriptionControl, Topic};
use prost::Message as _;
use support::{Harness, append, ensure, principal};
use tokio::sync::mpsc;

/// The service of `harness` publishing on a fresh bus, and the deliveries of
/// `alice`'s user topic and of her tenant's run topic.
async fn watched(
    harness: &Harness,
) -> (
    clawgate_session::SessionService,
    mpsc::Receiver<Delivery>,
    Arc<dyn SubscriptionControl>,
) {
    let bus = Arc::new(MemoryBus::new());
    let subscriber = bus.subscriber(64).await.unwrap();
    subscriber
        .control
        .subscribe(&Topic::user("t1", "alice"))
        .await
        .unwrap();
    subscriber
        .control
        .subscribe(&Topic::tenant_runs("t1"))
        .await
        .unwrap();
    let service = harness.service().clone().with_bus(bus);
    // The control keeps the subscription alive.
    (service, subscriber.deliveries, subscriber.control)
}

/// The next change on `topic`, skipping the copies on the other topic.
async fn next_change(deliveries: &mut mpsc::Receiver<Delivery>, topic: &Topic) -> SessionChange {
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(5), deliveries.recv())
            .await
            .expect("a change within 5 s")
            .expect("bus open");
        if &delivery.topic != topic {
            continue;
        }
        let message = BusMessage::decode(delivery.payload).unwrap();
        match message.body {
            Some(bus_message::Body::SessionChange(change)) => return change,
            other => panic!("not a session change: {other:?}"),
        }
    }
}

async fn no_more(deliveries: &mut mpsc::Receiver<Delivery>) {
    let more = tokio::time::timeout(Duration::from_millis(200), deliveries.recv()).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");
}

async fn changes_are_published_once_committed(harness: Harness) {
    let (service, mut deliveries, _control) = watched(&harness).await;
    let alice = principal("t1", "alice");
    let user = Topic::user("t1", "alice");
    let api: &dyn SessionApi = &service;

    let created = api.ensure_session(&alice, ensure("a")).await.unwrap();
    let change = next_change(&mut deliveries, &user).await;
    assert_eq!(
        (change.reason.as_str(), change.session_key.as_str()),
        ("create", "a")
    );
    assert_eq!(
        change.session.as_ref().unwrap().session_id,
        created.session_id
    );
    // Both topics carry it (one per kind of viewer).
    let tenant = next_change(&mut deliveries, &Topic::tenant_runs("t1")).await;
    assert_eq!(tenant.reason, "create");
    // Ensuring again changes nothing, so nothing is published.
    api.ensure_session(&alice, ensure("a")).await.unwrap();
    no_more(&mut deliveries).await;

    let message = append(api, &alice, "a", "user", "hello").await;
    let change = next_change(&mut deliveries, &user).await;
    assert_eq!(change.reason, "message");
    let sent = change.message.unwrap();
    assert_eq!((sent.id.as_str(), sent.seq), (message.id.as_str(), 1));
    assert_eq!(change.session.unwrap().message_count, 1);

    let patch = PatchSessionRequest {
        session_key: "a".into(),
        label: Some("Work".into()),
    };
    api.patch_session(&alice, patch).await.unwrap();
    let change = next_change(&mut deliveries, &user).await;
    assert_eq!(change.reason, "patch");
    assert_eq!(change.session.unwrap().label, "Work");

    let reset = ResetSessionRequest {
        session_key: "a".into(),
        agent_id: String::new(),
        reason: "new".into(),
    };
    let fresh = api.reset_session(&alice, reset).await.unwrap();
    assert_ne!(fresh.session_id, created.session_id);
    assert_eq!((fresh.label.as_str(), fresh.message_count), ("Work", 0));
    let change = next_change(&mut deliveries, &user).await;
    assert_eq!(change.reason, "new");

    let delete = DeleteSessionRequest {
        session_key: "a".into(),
    };
    assert!(
        api.delete_session(&alice, delete.clone())
            .await
            .unwrap()
            .deleted
    );
    assert_eq!(next_change(&mut deliveries, &user).await.reason, "delete");
    // Deleting what is gone publishes nothing.
    assert!(!api.delete_session(&alice, delete).await.unwrap().deleted);
    drain(&mut deliveries).await;
    no_more(&mut deliveries).await;

    // Another user's changes are on that user's topic, not alice's.
    api.ensure_session(&principal("t1", "bob"), ensure("b"))
        .await
        .unwrap();
    let tenant = next_change(&mut deliveries, &Topic::tenant_runs("t1")).await;
    assert_eq!(
        (tenant.user_id.as_str(), tenant.reason.as_str()),
        ("bob", "create")
    );
    no_more(&mut deliveries).await;
}

/// Drops the copies still queued on the tenant's run topic.
async fn drain(deliveries: &mut mpsc::Receiver<Delivery>) {
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(100), deliveries.recv()).await
    {}
}

async fn listings_filter(harness: Harness) {
    let api = harness.api();
    let alice = principal("t1", "alice");
    for key in [
        "agent:main:work",
        "agent:main:play",
        "global",
        "agent:ops:100%_done",
    ] {
        api.ensure_session(&alice, ensure(key)).await.unwrap();
    }
    let patch = PatchSessionRequest {
        session_key: "agent:main:play".into(),
        label: Some("Fun Things".into()),
    };
    api.patch_session(&alice, patch).await.unwrap();
    let list = |request: ListSessionsRequest| async {
        let response = api.list_sessions(&alice, request).await.unwrap();
        let mut keys: Vec<String> = response
            .sessions
            .into_iter()
            .map(|s| s.session_key)
            .collect();
        keys.sort();
        (keys, response.total)
    };
    let (keys, total) = list(ListSessionsRequest {
        search: "FUN".into(),
        ..Default::default()
    })
    .await;
    assert_eq!((keys, total), (vec!["agent:main:play".to_owned()], 1));
    // LIKE wildcards in a search are literal.
    let (keys, _) = list(ListSessionsRequest {
        search: "0%_".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(keys, vec!["agent:ops:100%_done".to_owned()]);
    let (keys, _) = list(ListSessionsRequest {
        search: "_".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(keys, vec!["agent:ops:100%_done".to_owned()]);
    let (keys, _) = list(ListSessionsRequest {
        label: "Fun Things".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(keys, vec!["agent:main:play".to_owned()]);
    let (_, total) = list(ListSessionsRequest {
        exclude_global: true,
        ..Default::default()
    })
    .await;
    assert_eq!(total, 3);
    let (_, total) = list(ListSessionsRequest::default()).await;
    assert_eq!(total, 4);
    let (keys, _) = list(ListSessionsRequest {
        updated_since_ms: i64::MAX / 2,
        ..Default::default()
    })
    .await;
    assert!(keys.is_empty());
    let bad = ListSessionsRequest {
        search: "x".repeat(513),
        ..Default::default()
    };
    assert!(api.list_sessions(&alice, bad).await.is_err());
}

async fn reset_of_a_missing_key_creates_it(harness: Harness) {
    let api = harness.api();
    let alice = principal("t1", "alice");
    let request = ResetSessionRequest {
        session_key: "agent:ops:new".into(),
        agent_id: "ops".into(),
        reason: "reset".into(),
    };
    let fresh = api.reset_session(&alice, request.clone()).await.unwrap();
    assert_eq!(fresh.agent_id, "ops");
    let again = api.reset_session(&alice, request).await.unwrap();
    assert_ne!(again.session_id, fresh.session_id);
    let listed = api
        .list_sessions(&alice, ListSessionsRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 1, "one live session per key");
    let bad = ResetSessionRequest {
        session_key: "agent:ops:new".into(),
        agent_id: String::new(),
        reason: "later".into(),
    };
    assert!(api.reset_session(&alice, bad).await.is_err());
    // Ensure after a reset finds the fresh session.
    let ensured = api
        .ensure_session(
            &alice,
            EnsureSessionRequest {
                session_key: "agent:ops:new".into(),
                agent_id: "ops".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ensured.session_id, again.session_id);
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Harness::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Harness::postgres().await).await;
                }
            )*
        }
    };
}

on_both!(
    changes_are_published_once_committed,
    listings_filter,
    reset_of_a_missing_key_creates_it
);
