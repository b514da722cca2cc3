//! Several runners sharing one Redis and one session service: one active run per
//! session across runners, idempotency keys and aborts that work on any runner,
//! a killed runner's run ended by another runner's reaper, replay of a run's
//! events, and shutdown. Needs Redis (`CLAWGATE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`); each test uses its own key prefix.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, run_event};
use clawgate_proto::run_events::decode_event;
use clawgate_proto::runner::{
    AbortRunRequest, GetRunRequest, ReadRunEventsRequest, RunState, RunnerApi, StartRunResponse,
    StartStatus,
};
use clawgate_proto::session::{ListMessagesRequest, MessageStatus, SessionApi, SessionClient};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runner::{ClusterOptions, ProviderConfig, RUNNER_LOST, RunnerConfig, RunnerService};
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::bus::{Delivery, EventBus, SubscriptionControl, Topic};
use clawgate_runtime::redis::Redis;
use clawgate_session::SessionService;
use common::{MockModel, Script, TENANT, is_terminal, principal, reassemble, start};
use tokio::sync::mpsc;

const LEASE: Duration = Duration::from_millis(600);
const REAP_EVERY: Duration = Duration::from_millis(100);

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Shared pieces: a session service, a mock model, a Redis prefix and a
/// subscriber on alice's topic.
struct Deployment {
    session: SessionClient,
    model: MockModel,
    prefix: String,
    events: mpsc::Receiver<Delivery>,
    _control: Arc<dyn SubscriptionControl>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start(script: Script) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("session.db").display()
        );
        let sessions = SessionService::connect(&url).await.unwrap();
        sessions.migrate().await.unwrap();
        let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
        let redis = Redis::connect(&redis_url(), &prefix)
            .await
            .expect("cluster tests need Redis (CLAWGATE_TEST_REDIS_URL)");
        let bus = RedisBus::new(&redis);
        let subscriber = bus.subscriber(4096).await.unwrap();
        subscriber
            .control
            .subscribe(&Topic::user(TENANT, "alice"))
            .await
            .unwrap();
        Self {
            session: SessionClient::local(Arc::new(sessions)),
            model: MockModel::start(script).await.unwrap(),
            prefix,
            events: subscriber.deliveries,
            _control: subscriber.control,
            _dir: dir,
        }
    }

    fn config(&self) -> RunnerConfig {
        RunnerConfig {
            provider: Some(ProviderConfig::new(self.model.base_url(), "mock")),
            abort_wait: Duration::from_secs(3),
            shutdown_abort_margin: Duration::from_millis(500),
            ..RunnerConfig::default()
        }
    }

    /// A runner of this deployment, built (and hosting its loops) on the
    /// current runtime.
    async fn runner(&self, id: &str) -> RunnerService {
        runner(
            self.config(),
            self.session.clone(),
            self.prefix.clone(),
            id.to_owned(),
        )
        .await
    }

    async fn next_event(&mut self) -> RunEvent {
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an event in time")
                .expect("bus open");
            if let Some(event) = decode_event(&delivery.payload) {
                return event;
            }
        }
    }

    async fn run_events(&mut self, run_id: &str) -> Vec<RunEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.run_id != run_id {
                continue;
            }
            let terminal = is_terminal(&event);
            events.push(event);
            if terminal {
                return events;
            }
        }
    }

    async fn first_delta(&mut self, run_id: &str) -> RunEvent {
        loop {
            let event = self.next_event().await;
            if event.run_id == run_id && matches!(event.kind, Some(run_event::Kind::Assistant(_))) {
                return event;
            }
        }
    }

    async fn history(&self, session_key: &str) -> Vec<clawgate_proto::session::TranscriptMessage> {
        self.session
            .list_messages(
                &principal("alice"),
                ListMessagesRequest {
                    session_key: session_key.into(),
                    limit: 100,
                },
            )
            .await
            .unwrap()
            .messages
    }
}

async fn runner(
    config: RunnerConfig,
    session: SessionClient,
    prefix: String,
    id: String,
) -> RunnerService {
    let redis = Redis::connect(&redis_url(), &prefix).await.unwrap();
    let bus = RedisBus::new(&redis);
    let options = ClusterOptions {
        runner_id: id,
        lease: LEASE,
        reap_interval: REAP_EVERY,
        ..ClusterOptions::default()
    };
    RunnerService::builder(config, session, Arc::new(bus.clone()))
        .cluster(redis, options)
        .build()
        .await
        .unwrap()
}

async fn start_on(
    runner: &RunnerService,
    session: &str,
    message: &str,
    key: &str,
) -> Result<StartRunResponse, ServiceError> {
    runner
        .start_run(&principal("alice"), start(session, message, key))
        .await
}

fn abort(session_key: &str, run_id: &str) -> AbortRunRequest {
    AbortRunRequest {
        session_key: session_key.into(),
        run_id: run_id.into(),
        stop_reason: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_session_across_runners_and_keys_dedupe_everywhere() {
    let mut d = Deployment::start(
        Script::tokens(["one ", "two ", "three"]).with_delay(Duration::from_millis(100)),
    )
    .await;
    let a = d.runner("runner-a").await;
    let b = d.runner("runner-b").await;

    for round in 0..5 {
        let (session, key_a, key_b) = (
            format!("s{round}"),
            format!("a{round}"),
            format!("b{round}"),
        );
        let (x, y) = tokio::join!(
            start_on(&a, &session, "hi", &key_a),
            start_on(&b, &session, "hi", &key_b),
        );
        let started: Vec<_> = [&x, &y]
            .into_iter()
            .filter_map(|result| result.as_ref().ok())
            .collect();
        assert_eq!(started.len(), 1, "round {round}: {x:?} / {y:?}");
        assert_eq!(started[0].status, StartStatus::Started as i32);
        let busy = [&x, &y].into_iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(busy.details.as_ref().unwrap()["reason"], "session-busy");
        assert_eq!(busy.details.as_ref().unwrap()["runId"], started[0].run_id);
    }

    // The same key sent to both runners at once is one run.
    let (x, y) = tokio::join!(
        start_on(&a, "dup", "hello", "k1"),
        start_on(&b, "dup", "hello", "k1"),
    );
    let mut statuses = [x.unwrap().status, y.unwrap().status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StartStatus::Started as i32, StartStatus::InFlight as i32]
    );
    let events = d.run_events("k1").await;
    let (text, _) = reassemble(&events);
    assert_eq!(text, "one two three");
    for runner in [&a, &b] {
        let again = start_on(runner, "dup", "hello", "k1").await.unwrap();
        assert_eq!(again.status, StartStatus::Done as i32);
        let run = again.run.unwrap();
        assert_eq!(run.state, RunState::Completed as i32);
        assert_eq!(run.text, "one two three");
    }
    let user_turns = d
        .history("dup")
        .await
        .iter()
        .filter(|m| m.role == "user")
        .count();
    assert_eq!(user_turns, 1, "one user turn for one key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_sent_to_another_runner_stops_the_run() {
    let mut d = Deployment::start(Script::tokens(["partial"]).then_hang()).await;
    let a = d.runner("runner-a").await;
    let b = d.runner("runner-b").await;

    start_on(&a, "main", "hi", "x").await.unwrap();
    d.first_delta("x").await;
    let response = b
        .abort_run(&principal("alice"), abort("main", "x"))
        .await
        .unwrap();
    assert!(response.aborted);
    assert_eq!(response.run_ids, ["x"]);
    // The partial text is in the transcript as soon as the abort returns.
    let last = d.history("main").await.pop().unwrap();
    assert_eq!(
        (last.content.as_str(), last.status),
        ("partial", MessageStatus::Aborted as i32)
    );
    let events = d.run_events("x").await;
    match &events.last().unwrap().kind {
        Some(run_event::Kind::End(end)) => {
            assert_eq!(end.outcome, RunOutcome::Aborted as i32);
            assert_eq!(end.stop_reason, "rpc");
            assert_eq!(end.text, "partial");
        }
        other => panic!("{other:?}"),
    }
    let info = b
        .get_run(&principal("alice"), GetRunRequest { run_id: "x".into() })
        .await
        .unwrap();
    assert_eq!(info.state, RunState::Aborted as i32);

    // A stop word on the other runner, and an abort without run id.
    start_on(&a, "main", "again", "y").await.unwrap();
    d.first_delta("y").await;
    let stop = start_on(&b, "main", "/stop", "z").await.unwrap();
    assert_eq!(stop.status, StartStatus::StopCommand as i32);
    assert!(stop.aborted);
    assert_eq!(stop.aborted_run_ids, ["y"]);
    let nothing = b
        .abort_run(&principal("alice"), abort("main", ""))
        .await
        .unwrap();
    assert!(!nothing.aborted && nothing.run_ids.is_empty());
    // Bob cannot abort alice's run from any runner.
    start_on(&a, "main", "third", "w").await.unwrap();
    d.first_delta("w").await;
    let bob = b
        .abort_run(&principal("bob"), abort("main", "w"))
        .await
        .unwrap();
    assert!(!bob.aborted);
    let response = b
        .abort_run(&principal("alice"), abort("main", ""))
        .await
        .unwrap();
    assert_eq!(response.run_ids, ["w"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_s_run_ends_with_an_error_and_frees_the_session() {
    let mut d = Deployment::start(Script::tokens(["half ", "done"]).then_hang()).await;
    let survivor = d.runner("survivor").await;

    // The doomed runner lives on its own runtime, so it can die without cleanup.
    let doomed_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (config, session, prefix) = (d.config(), d.session.clone(), d.prefix.clone());
    let doomed = doomed_runtime
        .spawn(runner(config, session, prefix, "doomed".into()))
        .await
        .unwrap();
    let started = doomed_runtime
        .spawn({
            let doomed = doomed.clone();
            async move { start_on(&doomed, "main", "hi", "lost").await }
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.status, StartStatus::Started as i32);
    let mut seen = vec![];
    while reassemble(&seen).0 != "half done" {
        let event = d.next_event().await;
        if event.run_id == "lost" {
            seen.push(event);
        }
    }
    // SIGKILL, as far as this process can tell: every task of the runner stops
    // where it is, without ending its run or releasing its lease.
    doomed_runtime.shutdown_background();
    let killed_at = Instant::now();

    let events = d.run_events("lost").await;
    let elapsed = killed_at.elapsed();
    assert!(
        elapsed < LEASE + REAP_EVERY * 2 + Duration::from_secs(2),
        "ended after {elapsed:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last.seq, seen.last().unwrap().seq + 1, "seq continues");
    match &last.kind {
        Some(run_event::Kind::Error(error)) => {
            assert_eq!(error.kind, RUNNER_LOST);
            assert_eq!(error.text, "half done");
        }
        other => panic!("{other:?}"),
    }
    let row = d.history("main").await.pop().unwrap();
    assert_eq!(row.role, "assistant");
    assert_eq!(row.content, "half done");
    assert_eq!(row.status, MessageStatus::Error as i32);
    assert!(!row.error.is_empty());
    let info = survivor
        .get_run(
            &principal("alice"),
            GetRunRequest {
                run_id: "lost".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(info.state, RunState::Failed as i32);
    assert_eq!(info.stop_reason, RUNNER_LOST);

    // The session takes the next message.
    d.model.set_script(Script::tokens(["fine"]));
    let next = start_on(&survivor, "main", "again", "next").await.unwrap();
    assert_eq!(next.status, StartStatus::Started as i32);
    let events = d.run_events("next").await;
    assert_eq!(reassemble(&events).0, "fine");
    // Exactly one error row for the lost run.
    let rows = d.history("main").await;
    let lost_rows = rows
        .iter()
        .filter(|m| m.run_id == "lost" && m.role == "assistant")
        .count();
    assert_eq!(lost_rows, 1);
    drop(doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_s_events_replay_in_order_from_a_seq_on_any_runner() {
    let mut d = Deployment::start(
        Script::tokens(["a", "b", "c", "d"]).with_delay(Duration::from_millis(60)),
    )
    .await;
    let a = d.runner("runner-a").await;
    let b = d.runner("runner-b").await;
    start_on(&a, "main", "hi", "r").await.unwrap();
    let live = d.run_events("r").await;
    assert!(live.len() >= 4, "{live:?}");

    let read = |after_seq: u64, limit: u32| ReadRunEventsRequest {
        run_id: "r".into(),
        after_seq,
        limit,
        user_id: String::new(),
    };
    let replayed = b
        .read_run_events(&principal("alice"), read(0, 0))
        .await
        .unwrap()
        .events;
    assert_eq!(replayed, live);
    let tail = b
        .read_run_events(&principal("alice"), read(2, 0))
        .await
        .unwrap()
        .events;
    assert_eq!(tail, live[2..].to_vec());
    let two = a
        .read_run_events(&principal("alice"), read(1, 2))
        .await
        .unwrap()
        .events;
    assert_eq!(two, live[1..3].to_vec());
    let bob = b
        .read_run_events(&principal("bob"), read(0, 0))
        .await
        .unwrap()
        .events;
    assert!(bob.is_empty(), "another user's run is invisible");
    // Naming alice's run: only a principal that sees the tenant reads it.
    let alices = ReadRunEventsRequest {
        user_id: "alice".into(),
        ..read(0, 0)
    };
    let bob_named = b
        .read_run_events(&principal("bob"), alices.clone())
        .await
        .unwrap()
        .events;
    assert!(bob_named.is_empty(), "an operator cannot name another user");
    let admin = Principal {
        role: "admin".into(),
        ..principal("bob")
    };
    let admin_read = b.read_run_events(&admin, alices).await.unwrap().events;
    assert_eq!(admin_read, live, "an admin reads any run of its tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_runs_aborts_long_ones_and_frees_their_sessions() {
    let mut d = Deployment::start(
        Script::tokens(["quick ", "reply"]).with_delay(Duration::from_millis(100)),
    )
    .await;
    let other = d.runner("other").await;

    // A run that ends within the grace period finishes normally.
    let leaving = d.runner("leaving-1").await;
    start_on(&leaving, "s1", "hi", "short").await.unwrap();
    leaving.shutdown(Duration::from_secs(3)).await;
    let events = d.run_events("short").await;
    match &events.last().unwrap().kind {
        Some(run_event::Kind::End(end)) => assert_eq!(end.outcome, RunOutcome::Completed as i32),
        other => panic!("{other:?}"),
    }
    let refused = start_on(&leaving, "s9", "hi", "refused").await.unwrap_err();
    assert!(refused.retryable);

    // One that would not is aborted with a clear reason, and its lease freed.
    d.model.set_script(Script::tokens(["stuck"]).then_hang());
    let leaving = d.runner("leaving-2").await;
    start_on(&leaving, "s2", "hi", "long").await.unwrap();
    d.first_delta("long").await;
    let begun = Instant::now();
    leaving.shutdown(Duration::from_millis(800)).await;
    assert!(begun.elapsed() < Duration::from_millis(1500));
    let events = d.run_events("long").await;
    match &events.last().unwrap().kind {
        Some(run_event::Kind::End(end)) => {
            assert_eq!(end.outcome, RunOutcome::Aborted as i32);
            assert_eq!(end.stop_reason, "shutdown");
            assert_eq!(end.text, "stuck");
        }
        other => panic!("{other:?}"),
    }
    d.model.set_script(Script::tokens(["next"]));
    let next = start_on(&other, "s2", "again", "after").await.unwrap();
    assert_eq!(next.status, StartStatus::Started as i32);
}
