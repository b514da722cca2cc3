//! Presence on a real Redis (a random key prefix per test;
//! `CLAWGATE_TEST_REDIS_URL` points elsewhere): register, list, version,
//! ownership, refresh and expiry, and tenants kept apart.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clawgate_runtime::presence::redis::RedisPresence;
use clawgate_runtime::presence::{PresenceRecord, PresenceRegistry, Refresh};
use clawgate_runtime::redis::Redis;

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn presence() -> RedisPresence {
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&redis_url(), &prefix)
        .await
        .expect("presence tests need Redis (CLAWGATE_TEST_REDIS_URL)");
    RedisPresence::new(&redis)
}

fn record(key: &str, owner: &str, payload: &str) -> PresenceRecord {
    PresenceRecord {
        key: key.into(),
        owner: owner.into(),
        payload: payload.as_bytes().to_vec(),
    }
}

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn registers_lists_and_removes_with_a_growing_version() {
    let presence = presence().await;
    let empty = presence.list("t:1").await.unwrap();
    assert_eq!((empty.payloads.len(), empty.version), (0, 1));
    let first = presence
        .register("t:1", &record("a", "c1", "A"), TTL)
        .await
        .unwrap();
    assert_eq!(
        (first.payloads.clone(), first.version),
        (vec![b"A".to_vec()], 2)
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = presence
        .register("t:1", &record("b{x}", "c2", "B"), TTL)
        .await
        .unwrap();
    assert_eq!(second.payloads, vec![b"B".to_vec(), b"A".to_vec()]);
    assert_eq!(second.version, 3);
    // Another tenant (even one whose id looks like a key part) sees nothing.
    assert!(presence.list("t").await.unwrap().payloads.is_empty());
    assert!(presence.list("t:1}").await.unwrap().payloads.is_empty());
    // Only the owner removes its record.
    let kept = presence.remove("t:1", "a", "c2").await.unwrap();
    assert_eq!((kept.payloads.len(), kept.version), (2, 3));
    let gone = presence.remove("t:1", "a", "c1").await.unwrap();
    assert_eq!((gone.payloads, gone.version), (vec![b"B".to_vec()], 4));
    assert_eq!(presence.list("t:1").await.unwrap().version, 4);
}

#[tokio::test]
async fn records_expire_unless_refreshed_by_their_owner() {
    let presence = presence().await;
    let ttl = Duration::from_millis(300);
    presence
        .register("t", &record("a", "c1", "A"), ttl)
        .await
        .unwrap();
    presence
        .register("t", &record("b", "c2", "B"), ttl)
        .await
        .unwrap();
    let refresh = |key: &str, owner: &str, payload: &str| Refresh {
        tenant_id: "t".into(),
        record: record(key, owner, payload),
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    presence
        .refresh(
            &[refresh("a", "c1", "A2"), refresh("b", "intruder", "X")],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = presence.list("t").await.unwrap();
    assert_eq!(list.payloads, vec![b"A2".to_vec()]);
    assert_eq!(list.version, 4, "the expiry of b is a change");
    // A refresh does not bring back a removed record.
    presence.remove("t", "a", "c1").await.unwrap();
    presence
        .refresh(&[refresh("a", "c1", "A3")], TTL)
        .await
        .unwrap();
    assert!(presence.list("t").await.unwrap().payloads.is_empty());
}

#[tokio::test]
async fn a_later_connection_of_the_same_key_takes_the_record_over() {
    let presence = presence().await;
    presence
        .register("t", &record("d", "c1", "old"), TTL)
        .await
        .unwrap();
    presence
        .register("t", &record("d", "c2", "new"), TTL)
        .await
        .unwrap();
    let kept = presence.remove("t", "d", "c1").await.unwrap();
    assert_eq!(kept.payloads, vec![b"new".to_vec()]);
    // Refreshes of many records go in one pipeline.
    let many: Vec<Refresh> = (0..600)
        .map(|i| Refresh {
            tenant_id: "t".into(),
            record: record(&format!("k{i}"), "c", "p"),
        })
        .collect();
    presence.refresh(&many, TTL).await.unwrap();
    assert_eq!(presence.list("t").await.unwrap().payloads.len(), 1);
}
