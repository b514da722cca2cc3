//! One behaviour suite for both registries (Redis: a real server, a random key
//! prefix per test; `CLAWGATE_TEST_REDIS_URL` points elsewhere), plus tests
//! only one of them can show.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_runtime::lease::{HeldLease, LeaseOptions, RedisRunLeases};
use clawgate_runtime::redis::Redis;

use super::redis::RunLeases;
use super::*;

fn info(user: &str, session: &str, run: &str) -> RunInfo {
    RunInfo {
        tenant_id: "t".into(),
        user_id: user.into(),
        session_key: session.into(),
        run_id: run.into(),
        state: RunState::Running as i32,
        ..Default::default()
    }
}

fn control() -> Arc<RunControl> {
    Arc::new(RunControl::default())
}

fn memory(max_active: usize) -> Arc<dyn RunRegistry> {
    Arc::new(MemoryRegistry::new(Duration::from_secs(60), max_active, 10))
}

async fn redis_leases(prefix: &str) -> RunLeases {
    let url = std::env::var("CLAWGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::connect(&url, prefix)
        .await
        .expect("registry tests need Redis (CLAWGATE_TEST_REDIS_URL)");
    RedisRunLeases::new(&redis, LeaseOptions::default())
}

fn prefix() -> String {
    format!("cgtest-{}", uuid::Uuid::new_v4().simple())
}

async fn redis(max_active: usize) -> Arc<dyn RunRegistry> {
    redis_on(&prefix(), "runner-a", max_active).await
}

async fn redis_on(prefix: &str, runner: &str, max_active: usize) -> Arc<RedisRegistry> {
    Arc::new(RedisRegistry::new(
        redis_leases(prefix).await,
        runner.into(),
        max_active,
    ))
}

async fn admit(registry: &dyn RunRegistry, info: RunInfo) -> Admission {
    registry.admit(info, control()).await.unwrap()
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

async fn one_active_run_per_session_and_idempotent_ids(registry: Arc<dyn RunRegistry>) {
    let registry = &*registry;
    assert!(matches!(
        admit(registry, info("u", "s", "r1")).await,
        Admission::Accepted
    ));
    assert!(matches!(
        admit(registry, info("u", "s", "r1")).await,
        Admission::InFlight(_)
    ));
    assert!(matches!(
        admit(registry, info("u", "s", "r2")).await,
        Admission::Busy { active_run_id } if active_run_id == "r1"
    ));
    // Another user's session with the same key and run id is independent.
    assert!(matches!(
        admit(registry, info("v", "s", "r1")).await,
        Admission::Accepted
    ));
    assert!(registry.get("t", "v", "r1").await.unwrap().is_some());
    let active = registry.active("t", "u", "s").await.unwrap().unwrap();
    assert_eq!(active.info.run_id, "r1");
    assert!(active.running && active.control.is_some());
    assert!(registry.local("t", "u", "r1").await.is_some());
    assert_eq!(registry.all_active().await.len(), 2);

    let mut done = info("u", "s", "r1");
    done.state = RunState::Completed as i32;
    done.text = "hello".into();
    assert!(registry.claim_end(&done).await);
    registry.finish(done).await;
    match admit(registry, info("u", "s", "r1")).await {
        Admission::Done(run) => {
            assert_eq!(run.state, RunState::Completed as i32);
            assert_eq!(run.text, "hello");
        }
        other => panic!("expected done, got {other:?}"),
    }
    assert!(registry.active("t", "u", "s").await.unwrap().is_none());
    assert!(registry.local("t", "u", "r1").await.is_none());
    assert!(!registry.get("t", "u", "r1").await.unwrap().unwrap().running);
    assert!(matches!(
        admit(registry, info("u", "s", "r2")).await,
        Admission::Accepted
    ));
}

async fn full_and_release(registry: Arc<dyn RunRegistry>) {
    let registry = &*registry;
    assert!(matches!(
        admit(registry, info("u", "s1", "r1")).await,
        Admission::Accepted
    ));
    assert!(matches!(
        admit(registry, info("u", "s2", "r2")).await,
        Admission::Full
    ));
    registry.release("t", "u", "r1").await;
    assert!(registry.get("t", "u", "r1").await.unwrap().is_none());
    assert!(registry.active("t", "u", "s1").await.unwrap().is_none());
    assert!(matches!(
        admit(registry, info("u", "s2", "r2")).await,
        Admission::Accepted
    ));
}

async fn unknown_runs_are_none(registry: Arc<dyn RunRegistry>) {
    assert!(registry.get("t", "u", "nope").await.unwrap().is_none());
    assert!(registry.active("t", "u", "nope").await.unwrap().is_none());
    assert!(registry.local("t", "u", "nope").await.is_none());
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory_suite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(memory(if stringify!($name) == "full_and_release" { 1 } else { 10 })).await; } )*
        }
        mod redis_suite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(redis(if stringify!($name) == "full_and_release" { 1 } else { 10 }).await).await; } )*
        }
    };
}

suite!(
    one_active_run_per_session_and_idempotent_ids,
    full_and_release,
    unknown_runs_are_none,
);

// ---------------------------------------------------------------------------
// Redis only: what two runners sharing Redis see
// ---------------------------------------------------------------------------

#[tokio::test]
async fn two_runners_share_sessions_and_idempotency_keys() {
    let prefix = prefix();
    let a = redis_on(&prefix, "runner-a", 10).await;
    let b = redis_on(&prefix, "runner-b", 10).await;
    assert!(matches!(
        admit(&*a, info("u", "s", "r1")).await,
        Admission::Accepted
    ));
    assert!(matches!(
        admit(&*b, info("u", "s", "r1")).await,
        Admission::InFlight(_)
    ));
    assert!(matches!(
        admit(&*b, info("u", "s", "r2")).await,
        Admission::Busy { active_run_id } if active_run_id == "r1"
    ));
    let seen = b.active("t", "u", "s").await.unwrap().unwrap();
    assert_eq!(seen.owner.as_deref(), Some("runner-a"));
    assert!(seen.control.is_none() && seen.running);
    assert!(b.local("t", "u", "r1").await.is_none());

    let mut done = info("u", "s", "r1");
    done.state = RunState::Aborted as i32;
    assert!(a.claim_end(&done).await);
    a.finish(done).await;
    assert!(
        matches!(admit(&*b, info("u", "s", "r1")).await, Admission::Done(run) if run.state == RunState::Aborted as i32)
    );
    assert!(matches!(
        admit(&*b, info("u", "s", "r2")).await,
        Admission::Accepted
    ));
}

#[tokio::test]
async fn concurrent_admissions_on_two_runners_admit_one() {
    let prefix = prefix();
    let a = redis_on(&prefix, "runner-a", 10).await;
    let b = redis_on(&prefix, "runner-b", 10).await;
    for round in 0..20 {
        let session = format!("s{round}");
        let (x, y) = tokio::join!(
            admit(&*a, info("u", &session, &format!("a{round}"))),
            admit(&*b, info("u", &session, &format!("b{round}"))),
        );
        let accepted = [&x, &y]
            .iter()
            .filter(|admission| matches!(admission, Admission::Accepted))
            .count();
        assert_eq!(accepted, 1, "round {round}: {x:?} {y:?}");
    }
}

#[tokio::test]
async fn a_lost_lease_aborts_the_local_run_and_its_end_claim_fails() {
    let prefix = prefix();
    let a = redis_on(&prefix, "runner-a", 10).await;
    let run = control();
    assert!(matches!(
        a.admit(info("u", "s", "r1"), run.clone()).await.unwrap(),
        Admission::Accepted
    ));
    // Someone else (a reaper) claims the run's end and frees the session.
    let leases = a.leases().clone();
    let run_ref = clawgate_runtime::replay::RunRef::new("t", "u", "r1");
    assert!(leases.claim_end(&run_ref, "reaper").await.unwrap());
    let record = leases.get(&run_ref).await.unwrap().unwrap();
    let mut ended = record.info.clone();
    ended.state = RunState::Failed as i32;
    let stranger = HeldLease {
        run: run_ref.clone(),
        session_key: ended.session_key.clone(),
        token: "not-the-token".into(),
    };
    leases.finish(&stranger, &ended).await.unwrap();
    // The lease is still held (wrong token), so renewal keeps it ...
    a.renew().await;
    assert!(!run.cancelled().is_cancelled());
    // ... until it is gone.
    redis_delete_lease(&prefix, "t", "u", "s").await;
    a.renew().await;
    assert!(run.cancelled().is_cancelled());
    assert_eq!(run.stop_reason(), "lease_lost");
    assert!(!a.claim_end(&info("u", "s", "r1")).await);
    assert!(a.local("t", "u", "r1").await.is_none());
}

async fn redis_delete_lease(prefix: &str, tenant: &str, user: &str, session: &str) {
    let url = std::env::var("CLAWGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = redis_leases(prefix)
        .await
        .session_key(tenant, user, session);
    let client = ::redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = ::redis::cmd("DEL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// Memory only
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn finished_runs_expire_and_are_bounded() {
    let registry = MemoryRegistry::new(Duration::from_millis(20), 10, 2);
    for run in ["a", "b", "c"] {
        assert!(matches!(
            admit(&registry, info("u", run, run)).await,
            Admission::Accepted
        ));
        registry.finish(info("u", run, run)).await;
    }
    assert!(
        registry.get("t", "u", "a").await.unwrap().is_none(),
        "oldest evicted by size"
    );
    assert!(registry.get("t", "u", "c").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        registry.get("t", "u", "c").await.unwrap().is_none(),
        "expired by ttl"
    );
}

#[tokio::test]
async fn abort_keeps_the_first_reason() {
    let control = RunControl::default();
    assert_eq!(control.stop_reason(), "rpc");
    control.abort("stop-command");
    control.abort("rpc");
    assert!(control.cancelled().is_cancelled());
    assert_eq!(control.stop_reason(), "stop-command");
    assert!(!control.wait_ended(Duration::from_millis(1)).await);
    control.mark_ended();
    assert!(control.wait_ended(Duration::from_millis(1)).await);
}
