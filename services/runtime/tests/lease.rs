//! Run leases on a real Redis (a random key prefix per test;
//! `CLAWGATE_TEST_REDIS_URL` points elsewhere): admission, renewal, expiry, the
//! end claim and the lost-run claim.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_runtime::lease::{
    HeldLease, LeaseAdmission, LeaseError, LeaseOptions, LostRun, RedisRunLeases,
};
use clawgate_runtime::redis::Redis;
use clawgate_runtime::replay::RunRef;

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Leases whose records carry a `RunInfo` (any protobuf message would do).
type Leases = RedisRunLeases<RunInfo>;

async fn leases(lease: Duration) -> Leases {
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&redis_url(), &prefix)
        .await
        .expect("lease tests need Redis (CLAWGATE_TEST_REDIS_URL)");
    RedisRunLeases::new(
        &redis,
        LeaseOptions {
            lease,
            record_ttl: Duration::from_secs(60),
        },
    )
}

fn info(session: &str, run: &str) -> RunInfo {
    RunInfo {
        tenant_id: "t:1".into(),
        user_id: "u{x}".into(),
        session_key: session.into(),
        run_id: run.into(),
        state: RunState::Running as i32,
        started_at_ms: 1,
        ..Default::default()
    }
}

fn run(id: &str) -> RunRef {
    RunRef::new("t:1", "u{x}", id)
}

/// Admits the run of `info` in its session, recording `info`.
async fn admit(
    leases: &Leases,
    info: &RunInfo,
    owner: &str,
) -> Result<LeaseAdmission<RunInfo>, LeaseError> {
    leases
        .admit(&run(&info.run_id), &info.session_key, info, owner)
        .await
}

/// Records the end of the run of `info` (its final state) with `token`.
async fn finish(leases: &Leases, info: &RunInfo, token: &str) -> Result<(), LeaseError> {
    let lease = HeldLease {
        run: run(&info.run_id),
        session_key: info.session_key.clone(),
        token: token.to_owned(),
    };
    leases.finish(&lease, info).await
}

async fn granted(leases: &Leases, info: &RunInfo, owner: &str) -> String {
    match admit(leases, info, owner).await.unwrap() {
        LeaseAdmission::Granted { token } => token,
        other => panic!("expected granted, got {other:?}"),
    }
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn admission_is_exclusive_per_session_and_idempotent_per_run() {
    let leases = leases(Duration::from_secs(10)).await;
    let token = granted(&leases, &info("s", "r1"), "runner-a").await;
    match admit(&leases, &info("s", "r1"), "runner-b").await.unwrap() {
        LeaseAdmission::Existing(record) => {
            assert!(record.running);
            assert_eq!(record.owner, "runner-a");
            assert_eq!(record.info, info("s", "r1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        admit(&leases, &info("s", "r2"), "runner-b").await.unwrap(),
        LeaseAdmission::Busy {
            active_run_id: "r1".into()
        }
    );
    assert_eq!(
        leases
            .active("t:1", "u{x}", "s")
            .await
            .unwrap()
            .unwrap()
            .info
            .run_id,
        "r1"
    );

    // The end is claimed once; finishing frees the session and keeps the result.
    assert!(leases.claim_end(&run("r1"), "runner-a").await.unwrap());
    assert!(!leases.claim_end(&run("r1"), "runner-b").await.unwrap());
    let mut done = info("s", "r1");
    done.state = RunState::Completed as i32;
    done.text = "hi".into();
    finish(&leases, &done, &token).await.unwrap();
    assert!(leases.active("t:1", "u{x}", "s").await.unwrap().is_none());
    let record = leases.get(&run("r1")).await.unwrap().unwrap();
    assert!(!record.running);
    assert_eq!(record.info.text, "hi");
    granted(&leases, &info("s", "r2"), "runner-b").await;
}

#[tokio::test]
async fn renewal_keeps_a_lease_and_only_its_holder_can_renew() {
    let leases = leases(Duration::from_millis(300)).await;
    let token = granted(&leases, &info("s", "r1"), "a").await;
    let held = HeldLease {
        run: run("r1"),
        session_key: "s".into(),
        token: token.clone(),
    };
    let stranger = HeldLease {
        token: "someone-else".into(),
        ..held.clone()
    };
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            leases
                .renew(&[held.clone(), stranger.clone()])
                .await
                .unwrap(),
            [true, false]
        );
    }
    assert!(leases.expired(10).await.unwrap().is_empty());
    // Without renewal the lease expires and the session is free.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(leases.renew(&[held]).await.unwrap(), [false]);
    granted(&leases, &info("s", "r2"), "b").await;
}

#[tokio::test]
async fn a_run_whose_lease_expired_is_claimed_once() {
    let leases = leases(Duration::from_millis(200)).await;
    let token = granted(&leases, &info("s", "r1"), "dead-runner").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(leases.expired(10).await.unwrap(), vec![run("r1")]);
    let claimed = leases.claim_lost(&run("r1"), "reaper-1").await.unwrap();
    match &claimed {
        LostRun::Claimed { record, token: got } => {
            assert_eq!(record.owner, "dead-runner");
            assert_eq!(record.info.run_id, "r1");
            assert_eq!(got, &token);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        leases.claim_lost(&run("r1"), "reaper-2").await.unwrap(),
        LostRun::Taken
    );
    // The owner, were it alive after all, cannot end it too.
    assert!(!leases.claim_end(&run("r1"), "dead-runner").await.unwrap());
    let mut failed = info("s", "r1");
    failed.state = RunState::Failed as i32;
    finish(&leases, &failed, &token).await.unwrap();
    assert_eq!(
        leases.claim_lost(&run("r1"), "reaper-2").await.unwrap(),
        LostRun::Gone
    );
    assert!(leases.expired(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_index_entry_of_a_live_run_is_left_alone() {
    let leases = leases(Duration::from_secs(10)).await;
    granted(&leases, &info("s", "r1"), "a").await;
    // Age the index entry as a skewed clock would.
    let key = leases
        .record_key(&run("r1"))
        .split(":run:")
        .next()
        .map(|prefix| format!("{prefix}:runs:active"))
        .unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    let _: i64 = redis::cmd("ZADD")
        .arg(&key)
        .arg(0)
        .arg(&members[0])
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert_eq!(leases.expired(10).await.unwrap(), vec![run("r1")]);
    assert_eq!(
        leases.claim_lost(&run("r1"), "reaper").await.unwrap(),
        LostRun::Alive
    );
}

#[tokio::test]
async fn a_released_run_is_forgotten() {
    let leases = leases(Duration::from_secs(10)).await;
    let token = granted(&leases, &info("s", "r1"), "a").await;
    leases
        .release(&HeldLease {
            run: run("r1"),
            session_key: "s".into(),
            token,
        })
        .await
        .unwrap();
    assert!(leases.get(&run("r1")).await.unwrap().is_none());
    assert!(leases.expired(10).await.unwrap().is_empty());
    granted(&leases, &info("s", "r1"), "b").await;
}
