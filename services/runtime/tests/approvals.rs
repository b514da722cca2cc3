//! The approval store on both backends (Redis with a random key prefix per
//! test; `CLAWGATE_TEST_REDIS_URL` points elsewhere): create, get, list,
//! a decision applied once (also under concurrency), tenants kept apart,
//! unknown ids refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use clawgate_runtime::approvals::memory::MemoryApprovals;
use clawgate_runtime::approvals::redis::RedisApprovals;
use clawgate_runtime::approvals::{ApprovalStore, Decide};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::redis::Redis;

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn stores() -> Vec<(&'static str, Arc<dyn ApprovalStore>)> {
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&redis_url(), &prefix)
        .await
        .expect("approval store tests need Redis (CLAWGATE_TEST_REDIS_URL)");
    vec![
        ("memory", Arc::new(MemoryApprovals::new())),
        ("redis", Arc::new(RedisApprovals::new(&redis))),
    ]
}

#[tokio::test]
async fn records_are_listed_until_decided_and_a_decision_applies_once() {
    for (name, store) in stores().await {
        let now = now_ms();
        store
            .create("t:1", "a1", b"first", now + 60_000)
            .await
            .unwrap();
        store
            .create("t:1", "a2", b"second", now + 120_000)
            .await
            .unwrap();
        store.create("t:1", "old", b"gone", now - 1).await.unwrap();
        store
            .create("t:2", "b1", b"other", now + 60_000)
            .await
            .unwrap();

        let listed = store.list("t:1", now_ms()).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2"], "{name}: expired records are not listed");
        assert_eq!(listed[0].payload, b"first", "{name}");
        assert_eq!(listed[0].expires_at_ms, now + 60_000, "{name}");
        // Tenants are apart, also for ids that look like key parts.
        assert_eq!(store.list("t", now).await.unwrap().len(), 0, "{name}");
        assert_eq!(store.get("t:2", "a1").await.unwrap(), None, "{name}");
        assert_eq!(
            store.decide("t:2", "a1", b"deny").await.unwrap(),
            Decide::Unknown,
            "{name}: another tenant cannot decide"
        );

        assert_eq!(
            store.decide("t:1", "a1", b"allow").await.unwrap(),
            Decide::Applied
        );
        assert_eq!(
            store.decide("t:1", "a1", b"deny").await.unwrap(),
            Decide::Already(b"allow".to_vec()),
            "{name}: the first decision stands"
        );
        let got = store.get("t:1", "a1").await.unwrap().unwrap();
        assert_eq!(got.decision.as_deref(), Some(&b"allow"[..]), "{name}");
        let ids: Vec<String> = store
            .list("t:1", now_ms())
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["a2"], "{name}: a decided record is not pending");
        // An expired record is still readable (how it ended) for a while.
        assert!(store.get("t:1", "old").await.unwrap().is_some(), "{name}");
        assert_eq!(
            store.decide("t:1", "nope", b"deny").await.unwrap(),
            Decide::Unknown,
            "{name}"
        );
    }
}

#[tokio::test]
async fn of_concurrent_decisions_exactly_one_applies() {
    for (name, store) in stores().await {
        store
            .create("t", "race", b"cmd", now_ms() + 60_000)
            .await
            .unwrap();
        let decisions: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let decision = format!("d{i}");
                    (
                        decision.clone(),
                        store
                            .decide("t", "race", decision.as_bytes())
                            .await
                            .unwrap(),
                    )
                })
            })
            .collect();
        let mut applied = Vec::new();
        let mut already = Vec::new();
        for task in decisions {
            match task.await.unwrap() {
                (decision, Decide::Applied) => applied.push(decision),
                (_, Decide::Already(winner)) => already.push(winner),
                (_, Decide::Unknown) => panic!("{name}: the record exists"),
            }
        }
        assert_eq!(applied.len(), 1, "{name}");
        assert_eq!(already.len(), 15, "{name}");
        assert!(
            already.iter().all(|winner| winner == applied[0].as_bytes()),
            "{name}"
        );
    }
}
