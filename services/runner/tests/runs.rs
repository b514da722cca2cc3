//! Behaviour of runs against the real session service, the in-process bus and a
//! mock model server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clawgate_proto::ErrorCode;
use clawgate_proto::pb::common::v1::{RunOutcome, run_event};
use clawgate_proto::runner::{AbortRunRequest, GetRunRequest, RunState, RunnerApi, StartStatus};
use clawgate_proto::session::MessageStatus;
use clawgate_runner::{NO_PROVIDER_MESSAGE, RunnerConfig};
use clawgate_runtime::bus::{BusError, EventBus, Subscriber, Topic};
use common::{API_KEY, Harness, MODEL, Options, Script, principal, reassemble, start};

fn end_of(
    event: &clawgate_proto::pb::common::v1::RunEvent,
) -> &clawgate_proto::pb::common::v1::LifecycleEnd {
    match &event.kind {
        Some(run_event::Kind::End(end)) => end,
        other => panic!("expected an end event, got {other:?}"),
    }
}

fn error_of(
    event: &clawgate_proto::pb::common::v1::RunEvent,
) -> &clawgate_proto::pb::common::v1::LifecycleError {
    match &event.kind {
        Some(run_event::Kind::Error(error)) => error,
        other => panic!("expected an error event, got {other:?}"),
    }
}

fn abort(session_key: &str, run_id: &str) -> AbortRunRequest {
    AbortRunRequest {
        session_key: session_key.into(),
        run_id: run_id.into(),
        stop_reason: String::new(),
    }
}

#[tokio::test]
async fn a_run_streams_start_deltas_and_end_in_seq_order() {
    let mut h =
        Harness::with_script(Script::tokens(["Hello", ", ", "world", "!"]).with_usage(7, 4)).await;
    let response = h
        .start_run(start("main", "hi there", "run-1"))
        .await
        .expect("started");
    assert_eq!(response.status, StartStatus::Started as i32);
    assert_eq!(response.run_id, "run-1");

    let events = h.run_events("run-1").await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(matches!(events[0].kind, Some(run_event::Kind::Start(_))));
    for event in &events {
        assert_eq!(event.tenant_id, common::TENANT);
        assert_eq!(event.user_id, "alice");
        assert_eq!(event.session_key, "main");
    }
    let (text, deltas) = reassemble(&events);
    assert_eq!(text, "Hello, world!");
    assert!(deltas >= 1);
    let end = end_of(events.last().expect("terminal"));
    assert_eq!(end.outcome, RunOutcome::Completed as i32);
    assert_eq!(end.text, "Hello, world!");
    assert_eq!(end.stop_reason, "stop");
    let usage = end.usage.expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (7, 4, 11)
    );

    let info = h
        .runner
        .get_run(
            &principal("alice"),
            GetRunRequest {
                run_id: "run-1".into(),
            },
        )
        .await
        .expect("run info");
    assert_eq!(info.state, RunState::Completed as i32);
    assert_eq!(info.text, "Hello, world!");

    let requests = h.model().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].model(), Some(MODEL));
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].body["stream_options"]["include_usage"], true);
    assert_eq!(requests[0].last_user_message().as_deref(), Some("hi there"));
}

#[tokio::test]
async fn many_fast_tokens_are_coalesced_into_few_deltas() {
    let tokens: Vec<String> = (0..300).map(|i| format!("t{i} ")).collect();
    let expected: String = tokens.concat();
    let mut h =
        Harness::with_script(Script::tokens(tokens.clone()).with_delay(Duration::from_micros(500)))
            .await;
    h.start_run(start("main", "count", "run-c"))
        .await
        .expect("started");
    let events = h.run_events("run-c").await;
    let (text, deltas) = reassemble(&events);
    assert_eq!(text, expected);
    assert_eq!(end_of(events.last().expect("end")).text, expected);
    assert!(
        deltas * 10 < tokens.len(),
        "{deltas} deltas for {} tokens",
        tokens.len()
    );
}

#[tokio::test]
async fn the_transcript_gets_both_turns_and_feeds_the_next_run() {
    let mut h = Harness::with_script(Script::echo()).await;
    h.start_run(start("main", "first question", "r1"))
        .await
        .expect("started");
    h.run_events("r1").await;
    let history = h.history("main").await;
    let rows: Vec<(&str, &str, i32)> = history
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str(), m.status))
        .collect();
    assert_eq!(
        rows,
        [
            ("user", "first question", MessageStatus::Complete as i32),
            (
                "assistant",
                "first question",
                MessageStatus::Complete as i32
            ),
        ]
    );
    assert!(history.iter().all(|m| m.run_id == "r1"));

    h.start_run(start("main", "second question", "r2"))
        .await
        .expect("started");
    let events = h.run_events("r2").await;
    assert_eq!(end_of(events.last().expect("end")).text, "second question");
    let sent = h.model().requests()[1].messages();
    let sent: Vec<(&str, &str)> = sent.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
    assert_eq!(
        sent,
        [
            ("user", "first question"),
            ("assistant", "first question"),
            ("user", "second question"),
        ]
    );
}

#[tokio::test]
async fn abort_mid_stream_keeps_the_partial_text() {
    let mut h = Harness::with_script(Script::tokens(["partial ", "answer"]).then_hang()).await;
    h.start_run(start("main", "go", "run-a"))
        .await
        .expect("started");
    let mut seen = String::new();
    while seen != "partial answer" {
        if let Some(run_event::Kind::Assistant(delta)) = h.first_delta("run-a").await.kind {
            seen.push_str(&delta.delta);
        }
    }
    let response = h
        .runner
        .abort_run(&principal("alice"), abort("main", "run-a"))
        .await
        .expect("abort");
    assert!(response.aborted);
    assert_eq!(response.run_ids, ["run-a"]);

    // The partial text is in history as soon as the abort returns.
    let history = h.history("main").await;
    let last = history.last().expect("assistant turn");
    assert_eq!(last.role, "assistant");
    assert_eq!(last.content, "partial answer");
    assert_eq!(last.status, MessageStatus::Aborted as i32);

    let events = h.run_events("run-a").await;
    let end = end_of(events.last().expect("end"));
    assert_eq!(end.outcome, RunOutcome::Aborted as i32);
    assert_eq!(end.stop_reason, "rpc");
    assert_eq!(end.text, "partial answer");

    let info = h
        .runner
        .get_run(
            &principal("alice"),
            GetRunRequest {
                run_id: "run-a".into(),
            },
        )
        .await
        .expect("info");
    assert_eq!(info.state, RunState::Aborted as i32);

    // Aborting again: the run is no longer active.
    let again = h
        .runner
        .abort_run(&principal("alice"), abort("main", "run-a"))
        .await
        .expect("abort");
    assert!(!again.aborted);
}

#[tokio::test]
async fn an_idempotent_resend_returns_the_same_run() {
    let mut h = Harness::with_script(
        Script::tokens(["one ", "two ", "three"]).with_delay(Duration::from_millis(50)),
    )
    .await;
    let first = h
        .start_run(start("main", "hello", "same-key"))
        .await
        .expect("started");
    assert_eq!(first.status, StartStatus::Started as i32);
    let resend = h
        .start_run(start("main", "hello", "same-key"))
        .await
        .expect("resend");
    assert_eq!(resend.status, StartStatus::InFlight as i32);
    assert_eq!(resend.run_id, "same-key");

    h.run_events("same-key").await;
    let done = h
        .start_run(start("main", "hello", "same-key"))
        .await
        .expect("resend");
    assert_eq!(done.status, StartStatus::Done as i32);
    let run = done.run.expect("run info");
    assert_eq!(run.state, RunState::Completed as i32);
    assert_eq!(run.text, "one two three");

    assert_eq!(h.model().requests().len(), 1, "one run, one model call");
    let users = h
        .history("main")
        .await
        .iter()
        .filter(|m| m.role == "user")
        .count();
    assert_eq!(users, 1, "the user turn is written once");
}

#[tokio::test]
async fn a_second_message_while_busy_is_rejected() {
    let mut h = Harness::with_script(Script::tokens(["thinking"]).then_hang()).await;
    h.start_run(start("main", "first", "busy-1"))
        .await
        .expect("started");
    let err = h
        .start_run(start("main", "second", "busy-2"))
        .await
        .expect_err("busy");
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
    assert!(err.retryable);
    assert_eq!(
        err.details,
        Some(serde_json::json!({"reason": "session-busy", "runId": "busy-1"}))
    );
    // Another session of the same user is independent.
    h.start_run(start("other", "hi", "busy-3"))
        .await
        .expect("other session");

    // The rejected message was not written.
    let history = h.history("main").await;
    assert_eq!(history.len(), 1);
    h.runner
        .abort_run(&principal("alice"), abort("main", ""))
        .await
        .expect("abort");
    h.run_events("busy-1").await;
}

#[tokio::test]
async fn a_stop_word_aborts_the_active_run() {
    let mut h = Harness::with_script(Script::tokens(["half"]).then_hang()).await;
    let nothing = h
        .start_run(start("main", "stop", "s0"))
        .await
        .expect("stop");
    assert_eq!(nothing.status, StartStatus::StopCommand as i32);
    assert!(!nothing.aborted);

    h.start_run(start("main", "write an essay", "s1"))
        .await
        .expect("started");
    h.first_delta("s1").await;
    let response = h
        .start_run(start("main", "  Stop! ", "s2"))
        .await
        .expect("stop");
    assert_eq!(response.status, StartStatus::StopCommand as i32);
    assert!(response.aborted);
    assert_eq!(response.aborted_run_ids, ["s1"]);

    let events = h.run_events("s1").await;
    let end = end_of(events.last().expect("end"));
    assert_eq!(end.outcome, RunOutcome::Aborted as i32);
    assert_eq!(end.stop_reason, "stop-command");
    assert_eq!(end.text, "half");

    assert_eq!(
        h.model().requests().len(),
        1,
        "the stop word never reached the model"
    );
    let history = h.history("main").await;
    assert!(
        history.iter().all(|m| !m.content.contains("Stop")),
        "{history:?}"
    );
}

#[tokio::test]
async fn without_a_provider_runs_fail_naming_the_setting() {
    let h = Harness::start(Options {
        script: None,
        ..Options::default()
    })
    .await;
    let err = h
        .start_run(start("main", "hi", "k"))
        .await
        .expect_err("no provider");
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
    assert_eq!(err.message, NO_PROVIDER_MESSAGE);
    assert!(err.message.contains("CLAWGATE_MODEL_BASE_URL"));
    assert!(h.history("main").await.is_empty(), "nothing written");
}

#[tokio::test]
async fn provider_http_errors_end_in_an_error_event_and_an_error_row() {
    for (status, kind) in [(500u16, "unknown"), (429, "rate_limit"), (401, "unknown")] {
        let mut h = Harness::with_script(Script::http_error(status)).await;
        h.start_run(start("main", "hi", "e1"))
            .await
            .expect("accepted");
        let events = h.run_events("e1").await;
        assert_eq!(events.len(), 2, "start and error: {events:?}");
        let error = error_of(&events[1]);
        assert_eq!(error.kind, kind, "HTTP {status}");
        assert!(
            error.message.contains(&format!("HTTP {status}")),
            "{}",
            error.message
        );
        assert!(!error.message.contains(API_KEY));

        let history = h.history("main").await;
        let last = history.last().expect("row");
        assert_eq!(last.role, "assistant");
        assert_eq!(last.status, MessageStatus::Error as i32);
        assert_eq!(last.error, error.message);

        let info = h
            .runner
            .get_run(
                &principal("alice"),
                GetRunRequest {
                    run_id: "e1".into(),
                },
            )
            .await
            .expect("info");
        assert_eq!(info.state, RunState::Failed as i32);
    }
}

#[tokio::test]
async fn a_principal_is_required() {
    let h = Harness::with_script(Script::tokens(["x"])).await;
    let anonymous = clawgate_proto::Principal::default();
    let err = h
        .runner
        .start_run(&anonymous, start("main", "hi", "k"))
        .await
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let err = h
        .runner
        .abort_run(&anonymous, abort("main", ""))
        .await
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let err = h
        .runner
        .get_run(&anonymous, GetRunRequest { run_id: "k".into() })
        .await
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(h.model().requests().is_empty());
}

#[tokio::test]
async fn abort_and_get_run_are_scoped_to_the_caller() {
    let mut h = Harness::with_script(Script::tokens(["busy"]).then_hang()).await;
    h.start_run(start("main", "hi", "mine"))
        .await
        .expect("started");

    let unknown = h
        .runner
        .abort_run(&principal("alice"), abort("main", "no-such-run"))
        .await
        .expect("abort");
    assert!(!unknown.aborted);
    assert!(unknown.run_ids.is_empty());

    let err = h
        .runner
        .abort_run(&principal("alice"), abort("elsewhere", "mine"))
        .await
        .expect_err("mismatch");
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.message, "runId does not match sessionKey");

    // Bob cannot see or abort alice's run.
    let bob = principal("bob");
    let hidden = h
        .runner
        .abort_run(&bob, abort("main", "mine"))
        .await
        .expect("abort");
    assert!(!hidden.aborted);
    let err = h
        .runner
        .get_run(
            &bob,
            GetRunRequest {
                run_id: "mine".into(),
            },
        )
        .await
        .expect_err("not found");
    assert_eq!(err.code, ErrorCode::NotFound);

    let response = h
        .runner
        .abort_run(
            &principal("alice"),
            AbortRunRequest {
                session_key: "main".into(),
                run_id: String::new(),
                stop_reason: "user-left".into(),
            },
        )
        .await
        .expect("abort");
    assert!(response.aborted);
    let events = h.run_events("mine").await;
    assert_eq!(end_of(events.last().expect("end")).stop_reason, "user-left");
}

#[tokio::test]
async fn a_run_that_exceeds_its_timeout_ends_with_a_timeout_error() {
    let mut h = Harness::with_script(Script::tokens(["slow"]).then_hang()).await;
    let mut request = start("main", "hi", "t1");
    request.timeout_ms = 300;
    h.start_run(request).await.expect("started");
    let events = h.run_events("t1").await;
    let error = error_of(events.last().expect("error"));
    assert_eq!(error.kind, "timeout");
    assert_eq!(error.text, "slow");
    let history = h.history("main").await;
    let last = history.last().expect("row");
    assert_eq!(
        (last.content.as_str(), last.status),
        ("slow", MessageStatus::Error as i32)
    );
}

#[tokio::test]
async fn a_silent_provider_hits_the_idle_timeout() {
    let mut config = RunnerConfig::default();
    config.provider_timeouts.idle = Duration::from_millis(200);
    let mut h = Harness::start(Options {
        script: Some(Script::tokens(Vec::<String>::new()).then_hang()),
        config,
        bus: None,
    })
    .await;
    h.start_run(start("main", "hi", "idle"))
        .await
        .expect("started");
    let events = h.run_events("idle").await;
    assert_eq!(error_of(events.last().expect("error")).kind, "timeout");
}

#[tokio::test]
async fn tool_call_deltas_become_tool_start_events_after_the_text() {
    let mut h = Harness::with_script(Script::text("Sunny.")).await;
    h.model()
        .queue_script(Script::tokens(["Let me ", "check."]).with_tool_call(
            "call_1",
            "weather",
            r#"{"city":"Oslo"}"#,
        ));
    h.start_run(start("main", "weather?", "tool"))
        .await
        .expect("started");
    let events = h.run_events("tool").await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match &e.kind {
            Some(run_event::Kind::Start(_)) => "start",
            Some(run_event::Kind::Assistant(_)) => "assistant",
            Some(run_event::Kind::ToolStart(_)) => "tool_start",
            Some(run_event::Kind::End(_)) => "end",
            _ => "other",
        })
        .collect();
    let tool_at = kinds
        .iter()
        .position(|k| *k == "tool_start")
        .expect("tool_start");
    assert!(
        kinds[..tool_at].contains(&"assistant"),
        "text is flushed before the tool: {kinds:?}"
    );
    let Some(run_event::Kind::ToolStart(tool)) = &events[tool_at].kind else {
        unreachable!()
    };
    assert_eq!(
        (tool.tool_call_id.as_str(), tool.name.as_str()),
        ("call_1", "weather")
    );
    assert_eq!(tool.arguments_json, r#"{"city":"Oslo"}"#);
    // The runner has no `weather` tool: the model is told so and answers.
    let end = end_of(events.last().expect("end"));
    assert_eq!(end.stop_reason, "stop");
    assert_eq!(end.text, "Let me check.\n\nSunny.");
}

/// A bus whose publishes always fail.
struct BrokenBus;

#[async_trait]
impl EventBus for BrokenBus {
    async fn publish(&self, _topic: &Topic, _payload: Bytes) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker down".into()))
    }

    async fn subscriber(&self, _capacity: usize) -> Result<Subscriber, BusError> {
        Err(BusError::Closed)
    }

    async fn listeners(&self, _topic: &Topic) -> Result<usize, BusError> {
        Err(BusError::Unavailable("broker down".into()))
    }
}

#[tokio::test]
async fn a_failing_bus_does_not_stop_the_run_or_its_transcript() {
    let h = Harness::start(Options {
        script: Some(Script::tokens(["still ", "saved"])),
        config: RunnerConfig::default(),
        bus: Some(Arc::new(BrokenBus)),
    })
    .await;
    h.start_run(start("main", "hi", "b1"))
        .await
        .expect("started");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = h.history("main").await;
        if let Some(last) = history.iter().find(|m| m.role == "assistant") {
            assert_eq!(last.content, "still saved");
            assert_eq!(last.status, MessageStatus::Complete as i32);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "assistant turn never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_aborts_active_runs_and_refuses_new_ones() {
    let mut h = Harness::with_script(Script::tokens(["unfinished"]).then_hang()).await;
    h.start_run(start("main", "hi", "sd"))
        .await
        .expect("started");
    h.first_delta("sd").await;
    h.runner.shutdown(Duration::from_secs(5)).await;
    let events = h.run_events("sd").await;
    let end = end_of(events.last().expect("end"));
    assert_eq!(end.outcome, RunOutcome::Aborted as i32);
    assert_eq!(end.stop_reason, "shutdown");
    assert_eq!(end.text, "unfinished");
    let err = h
        .start_run(start("main", "again", "sd2"))
        .await
        .expect_err("draining");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.retryable);
}
