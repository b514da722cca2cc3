//! Failover between an agent's models: runs against the mock model server,
//! whose answer depends on the model a request names.

mod common;

use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::run_event;
use clawgate_proto::session::{AgentSettings, CreateAgentRequest, SessionApi as _, StringList};
use common::{Harness, Script, TENANT, start};

const SESSION: &str = "agent:coder:main";

/// A start of a run of agent `coder` (the edge names the agent of the key).
fn start_coder(message: &str, key: &str) -> clawgate_proto::runner::StartRunRequest {
    clawgate_proto::runner::StartRunRequest {
        agent_id: "coder".into(),
        ..start(SESSION, message, key)
    }
}

/// A harness whose agent `coder` calls `primary`, then `backup`.
async fn harness(default: Script) -> Harness {
    let harness = Harness::with_script(default).await;
    let admin = Principal {
        tenant_id: TENANT.into(),
        user_id: "boss".into(),
        role: "admin".into(),
        ..Default::default()
    };
    let settings = AgentSettings {
        name: Some("Coder".into()),
        model: Some("primary".into()),
        fallbacks: Some(StringList {
            items: vec!["backup".into()],
        }),
        ..Default::default()
    };
    harness
        .session
        .create_agent(
            &admin,
            CreateAgentRequest {
                agent_id: "coder".into(),
                settings: Some(settings),
            },
        )
        .await
        .expect("agent");
    harness
}

/// The terminal event of `run_id`: `Ok(text)` for an end, `Err(message)` for an error.
async fn outcome(harness: &mut Harness, run_id: &str) -> Result<String, (String, String)> {
    let events = harness.run_events(run_id).await;
    match events.last().and_then(|event| event.kind.clone()) {
        Some(run_event::Kind::End(end)) => Ok(end.text),
        Some(run_event::Kind::Error(error)) => Err((error.kind, error.message)),
        other => panic!("no terminal event: {other:?}"),
    }
}

fn models_called(harness: &Harness) -> Vec<String> {
    harness
        .model()
        .requests()
        .iter()
        .map(|request| request.model().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_rate_limited_model_fails_over_and_cools_down() {
    let mut harness = harness(Script::text("from backup")).await;
    let model = harness.model();
    model.set_model_script("primary", Script::http_error(429).with_retry_after("30"));
    let run = harness
        .start_run(start_coder("hi", "k1"))
        .await
        .expect("started");
    assert_eq!(
        outcome(&mut harness, &run.run_id).await,
        Ok("from backup".into())
    );
    assert_eq!(models_called(&harness), ["primary", "backup"]);
    // The next run skips the model that asked for 30 s.
    let run = harness
        .start_run(start_coder("again", "k2"))
        .await
        .expect("started");
    assert_eq!(
        outcome(&mut harness, &run.run_id).await,
        Ok("from backup".into())
    );
    assert_eq!(models_called(&harness), ["primary", "backup", "backup"]);
}

#[tokio::test]
async fn when_every_model_fails_the_error_names_each() {
    let mut harness = harness(Script::text("never")).await;
    let model = harness.model();
    model.set_model_script("primary", Script::http_error(503).with_retry_after("30"));
    model.set_model_script("backup", Script::http_error(500).with_retry_after("30"));
    let run = harness
        .start_run(start_coder("hi", "k1"))
        .await
        .expect("started");
    let (kind, message) = outcome(&mut harness, &run.run_id)
        .await
        .expect_err("failed");
    assert_eq!(kind, "unknown");
    assert_eq!(
        message,
        "every model failed (primary: the model provider failed (HTTP 503); \
         backup: the model provider failed (HTTP 500))"
    );
    assert_eq!(models_called(&harness), ["primary", "backup"]);
    // Both cooling for 30 s: the next run fails at once, saying when to retry.
    let run = harness
        .start_run(start_coder("again", "k2"))
        .await
        .expect("started");
    let (kind, message) = outcome(&mut harness, &run.run_id)
        .await
        .expect_err("failed");
    assert_eq!(kind, "rate_limit");
    assert!(
        message.starts_with("every model of this agent failed moments ago"),
        "{message}"
    );
    assert_eq!(models_called(&harness).len(), 2);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_for_then_retried() {
    let mut harness = Harness::with_script(Script::http_error(429).with_retry_after("1")).await;
    let run = harness
        .start_run(start("main", "hi", "k1"))
        .await
        .expect("started");
    assert!(
        harness
            .model()
            .wait_for_requests(1, Duration::from_secs(5))
            .await
    );
    harness.model().set_script(Script::text("after the wait"));
    assert_eq!(
        outcome(&mut harness, &run.run_id).await,
        Ok("after the wait".into())
    );
    let requests = harness.model().requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].received_at - requests[0].received_at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_failure_that_is_not_transient_does_not_fail_over() {
    let mut harness = harness(Script::text("from backup")).await;
    harness
        .model()
        .set_model_script("primary", Script::http_error(401));
    let run = harness
        .start_run(start_coder("hi", "k1"))
        .await
        .expect("started");
    let (_, message) = outcome(&mut harness, &run.run_id)
        .await
        .expect_err("failed");
    assert_eq!(
        message,
        "the model provider rejected the API key (HTTP 401)"
    );
    assert_eq!(models_called(&harness), ["primary"]);
}

#[tokio::test]
async fn a_stream_that_fails_before_any_text_fails_over_but_not_after() {
    let mut harness = harness(Script::text("from backup")).await;
    let model = harness.model();
    model.set_model_script(
        "primary",
        Script::tokens(Vec::<String>::new()).then_fail("server_error"),
    );
    let run = harness
        .start_run(start_coder("hi", "k1"))
        .await
        .expect("started");
    assert_eq!(
        outcome(&mut harness, &run.run_id).await,
        Ok("from backup".into())
    );
    // Once text went out, the run ends with the failure (nothing is taken back).
    harness
        .model()
        .set_model_script("backup", Script::tokens(["half"]).then_fail("server_error"));
    let run = harness
        .start_run(start_coder("again", "k2"))
        .await
        .expect("started");
    let (_, message) = outcome(&mut harness, &run.run_id)
        .await
        .expect_err("failed");
    assert_eq!(message, "the model provider reported an error");
    // primary is still cooling (5 s): only backup was called for the second run.
    assert_eq!(models_called(&harness), ["primary", "backup", "backup"]);
}
