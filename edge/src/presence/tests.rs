//! The edge's presence table on the paused clock (refresh, activity, removal)
//! and what a watcher is sent.

use std::sync::Arc;

use clawgate_runtime::presence::memory::MemoryPresence;
use serde_json::Value;

use super::*;
use crate::out::Outbound;
use crate::presence_table::{CACHE_FRESH, ENTRY_TTL, REFRESH_EVERY, record};
use clawgate_proto::pb::common::v1::PresenceEntry;
use clawgate_runtime::presence::PresenceRegistry;

fn entry(user: &str, key: &str, conn: &str, ts: i64) -> PresenceEntry {
    PresenceEntry {
        user_id: user.into(),
        key: key.into(),
        conn_id: conn.into(),
        instance_id: key.into(),
        ts_ms: ts,
        reason: entry::CONNECT.into(),
        ..Default::default()
    }
}

async fn listed(registry: &MemoryPresence, tenant: &str) -> Vec<PresenceEntry> {
    entries_of(&registry.list(tenant).await.expect("list"))
}

#[tokio::test(start_paused = true)]
async fn activity_is_written_by_the_next_refresh_and_entries_live_while_refreshed() {
    let registry = Arc::new(MemoryPresence::new());
    let presence = EdgePresence::start(registry.clone());
    presence
        .add("t", entry("u", "k", "c", 1))
        .await
        .expect("add");
    presence.touch("c", 5_000);
    assert_eq!(listed(&registry, "t").await[0].last_activity_at_ms, 0);
    tokio::time::sleep(REFRESH_EVERY + Duration::from_millis(1)).await;
    let now = listed(&registry, "t").await;
    assert_eq!((now[0].last_activity_at_ms, now[0].ts_ms), (5_000, 5_000));
    // Refreshed, it outlives its TTL many times over.
    tokio::time::sleep(ENTRY_TTL * 3).await;
    assert_eq!(listed(&registry, "t").await.len(), 1);
    // Removed, it stays gone (no refresh brings it back) and is reported.
    let (tenant, last, list) = presence.remove("c").await.expect("was listed");
    assert_eq!((tenant.as_str(), last.key.as_str()), ("t", "k"));
    assert!(list.expect("list").payloads.is_empty());
    assert!(presence.remove("c").await.is_none());
    tokio::time::sleep(REFRESH_EVERY * 2).await;
    assert!(listed(&registry, "t").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cached_list_serves_for_a_while_then_is_read_again() {
    let registry = Arc::new(MemoryPresence::new());
    let presence = EdgePresence::start(registry.clone());
    let first = presence.current("t").await.expect("read");
    assert!(first.entries.is_empty());
    // Another edge lists a connection: this edge heard nothing of it.
    let record = record(&entry("u", "k", "c", 1));
    registry
        .register("t", &record, ENTRY_TTL)
        .await
        .expect("register");
    assert!(
        presence
            .current("t")
            .await
            .expect("cached")
            .entries
            .is_empty()
    );
    tokio::time::sleep(CACHE_FRESH).await;
    let read = presence.current("t").await.expect("read again");
    assert_eq!(read.entries.len(), 1);
    assert!(read.version > first.version);
    // An older list never replaces a newer one.
    presence.remember(&first);
    assert_eq!(presence.cached("t").map(|l| l.version), Some(read.version));
}

#[tokio::test(start_paused = true)]
async fn an_entry_of_a_dead_edge_expires() {
    let registry = Arc::new(MemoryPresence::new());
    let presence = EdgePresence::start(registry.clone());
    presence
        .add("t", entry("u", "k", "c", 1))
        .await
        .expect("add");
    // The edge goes away without removing it: nobody refreshes it any more.
    drop(presence);
    tokio::time::sleep(ENTRY_TTL + REFRESH_EVERY).await;
    assert!(listed(&registry, "t").await.is_empty());
}

fn seat(user: &str, sees_tenant: bool) -> Seat {
    Seat {
        conn_id: "mine".into(),
        tenant_id: "t".into(),
        user_id: user.into(),
        sees_tenant,
        watches: true,
        listed: true,
        last_version: 3,
        next_touch: None,
    }
}

fn sent(out: &mut Out) -> Vec<Value> {
    std::iter::from_fn(|| out.pop())
        .filter_map(|item| match item {
            Outbound::Text(text) => serde_json::from_str(&text).ok(),
            Outbound::Close(..) => None,
        })
        .collect()
}

fn event(version: u64, departed: Option<PresenceEntry>) -> PresenceEvent {
    PresenceEvent {
        tenant_id: "t".into(),
        version,
        entries: vec![entry("alice", "a", "ca", 10), entry("bob", "b", "cb", 20)],
        departed,
    }
}

fn instances(frame: &Value) -> Vec<&str> {
    frame["payload"]["presence"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["instanceId"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_watcher_gets_what_it_may_see_and_never_an_older_list() {
    let presence = EdgePresence::start(Arc::new(MemoryPresence::new()));
    let mut out = Out::new(1 << 20);
    let mut admin = seat("carol", true);
    admin.deliver(&Arc::new(event(4, None)), &presence, &mut out);
    let frames = sent(&mut out);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["event"], "presence");
    assert_eq!(instances(&frames[0]), ["b", "a"], "newest first");
    assert_eq!(frames[0]["stateVersion"]["presence"], 4);
    assert_eq!(frames[0]["seq"], 1);
    // An older list arriving late is ignored; the same version is not.
    admin.deliver(&Arc::new(event(3, None)), &presence, &mut out);
    assert!(sent(&mut out).is_empty());
    admin.deliver(&Arc::new(event(4, None)), &presence, &mut out);
    assert_eq!(sent(&mut out).len(), 1);
    // Another tenant's event never reaches it.
    let mut elsewhere = event(9, None);
    elsewhere.tenant_id = "other".into();
    admin.deliver(&Arc::new(elsewhere), &presence, &mut out);
    assert!(sent(&mut out).is_empty());

    // An operator sees its own user's entries, a departure included.
    let mut alice = seat("alice", false);
    let mut gone = entry("alice", "a2", "ca2", 30);
    gone.reason = entry::DISCONNECT.into();
    alice.deliver(&Arc::new(event(5, Some(gone.clone()))), &presence, &mut out);
    let frames = sent(&mut out);
    assert_eq!(instances(&frames[0]), ["a2", "a"]);
    assert_eq!(frames[0]["payload"]["presence"][0]["reason"], "disconnect");
    let mut bob_left = gone;
    bob_left.user_id = "bob".into();
    alice.deliver(&Arc::new(event(6, Some(bob_left))), &presence, &mut out);
    assert_eq!(instances(&sent(&mut out)[0]), ["a"]);

    // The edge keeps the newest list of each tenant it saw.
    assert_eq!(presence.cached("t").map(|l| l.version), Some(6));
    assert_eq!(presence.cached("other").map(|l| l.version), Some(9));

    // A connection that does not watch gets nothing.
    let mut quiet = seat("alice", true);
    quiet.watches = false;
    quiet.deliver(&Arc::new(event(7, None)), &presence, &mut out);
    assert!(sent(&mut out).is_empty());
}
