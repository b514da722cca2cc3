use super::*;
use clawgate_proto::pb::common::v1::{LifecycleEnd, LifecycleError};
use clawgate_proto::runner::StartRunRequest;

fn run(id: &str, wait: Option<Duration>) -> AgentRun {
    AgentRun {
        start: StartRunRequest {
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            message: "m".into(),
            idempotency_key: id.into(),
            timeout_ms: 0,
        },
        wait,
    }
}

fn accepted(id: &str, run_id: &str, status: StartStatus) -> Accepted {
    Accepted {
        id: id.into(),
        run_id: run_id.into(),
        accepted_at_ms: 7,
        result: Ok(StartRunResponse {
            run_id: run_id.into(),
            status: status as i32,
            ..Default::default()
        }),
    }
}

fn end(run_id: &str, user: &str, text: &str) -> RunEvent {
    RunEvent {
        user_id: user.into(),
        run_id: run_id.into(),
        kind: Some(run_event::Kind::End(LifecycleEnd {
            started_at_ms: 10,
            ended_at_ms: 25,
            outcome: RunOutcome::Completed as i32,
            stop_reason: "stop".into(),
            text: text.into(),
            usage: None,
        })),
        ..Default::default()
    }
}

fn error(run_id: &str, kind: &str) -> RunEvent {
    RunEvent {
        user_id: "u".into(),
        run_id: run_id.into(),
        kind: Some(run_event::Kind::Error(LifecycleError {
            started_at_ms: 1,
            ended_at_ms: 2,
            message: "boom".into(),
            kind: kind.into(),
            text: String::new(),
        })),
        ..Default::default()
    }
}

#[test]
fn acceptance_then_end() {
    let mut waits = Waits::default();
    waits.reserve("1", &run("r", None), 8).expect("reserved");
    let (ack, end_now) = waits.accepted(accepted("1", "r", StartStatus::Started));
    assert!(end_now.is_none());
    let ack = ack.payload.expect("ack");
    assert_eq!(
        ack,
        json!({"runId": "r", "sessionKey": "agent:main:main", "agentId": "main",
               "status": "accepted", "acceptedAt": 7})
    );
    // Another user's run with the same id answers nothing.
    assert!(waits.on_event(&end("r", "other", "x"), "u").is_empty());
    let answers = waits.on_event(&end("r", "u", "hello"), "u");
    assert_eq!(answers.len(), 1);
    let (id, reply) = &answers[0];
    assert_eq!(id, "1");
    assert!(reply.error.is_none());
    let payload = reply.payload.clone().expect("final");
    assert_eq!(payload["status"], "ok");
    assert_eq!(payload["summary"], "completed");
    assert_eq!(
        payload["result"]["payloads"],
        json!([{"text": "hello", "mediaUrl": null}])
    );
    assert_eq!(payload["result"]["meta"]["durationMs"], 15);
    assert_eq!(
        payload["result"]["meta"]["agentMeta"]["sessionId"],
        "agent:main:main"
    );
    assert_eq!(waits.count, 0);
    assert!(waits.runs.is_empty());
}

#[test]
fn an_end_before_the_acceptance_follows_it() {
    let mut waits = Waits::default();
    waits.reserve("1", &run("r", None), 8).expect("reserved");
    assert!(waits.on_event(&end("r", "u", "t"), "u").is_empty());
    let (ack, end_now) = waits.accepted(accepted("1", "r", StartStatus::Started));
    assert_eq!(ack.payload.expect("ack")["status"], "accepted");
    assert_eq!(
        end_now.and_then(|r| r.payload).expect("end")["status"],
        "ok"
    );
    assert_eq!(waits.count, 0);
}

#[test]
fn errors_and_timeouts() {
    let mut waits = Waits::default();
    waits.reserve("1", &run("r", None), 8).expect("reserved");
    waits.accepted(accepted("1", "r", StartStatus::Started));
    let answers = waits.on_event(&error("r", "provider"), "u");
    let reply = &answers[0].1;
    assert_eq!(
        reply.error.as_ref().map(|e| e.code.openclaw_code()),
        Some("UNAVAILABLE")
    );
    assert_eq!(
        reply.payload,
        Some(json!({"runId": "r", "status": "error", "summary": "boom"}))
    );
    waits.reserve("2", &run("t", None), 8).expect("reserved");
    waits.accepted(accepted("2", "t", StartStatus::Started));
    let answers = waits.on_event(&error("t", "timeout"), "u");
    let payload = answers[0].1.payload.clone().expect("final");
    assert_eq!(
        (
            payload["status"].clone(),
            payload["summary"].clone(),
            payload["stopReason"].clone()
        ),
        (json!("timeout"), json!("aborted"), json!("timeout"))
    );
}

#[test]
fn deadlines_checks_and_bounds() {
    let mut waits = Waits::default();
    waits
        .reserve("1", &run("r", Some(Duration::from_secs(5))), 2)
        .expect("reserved");
    waits.reserve("2", &run("s", None), 2).expect("reserved");
    assert!(waits.reserve("3", &run("x", None), 2).is_err());
    let now = Instant::now();
    // Not accepted yet: neither timed out nor checked.
    assert_eq!(
        waits.on_tick(now + Duration::from_secs(60)),
        (Vec::new(), Vec::new())
    );
    waits.accepted(accepted("1", "r", StartStatus::Started));
    waits.accepted(accepted("2", "s", StartStatus::InFlight));
    let (answers, checks) = waits.on_tick(now);
    assert!(answers.is_empty() && checks.is_empty());
    let (answers, mut checks) = waits.on_tick(now);
    assert!(answers.is_empty());
    checks.sort();
    assert_eq!(checks, ["r", "s"]);
    let (answers, checks) = waits.on_tick(now + Duration::from_secs(6));
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, "1");
    assert_eq!(
        answers[0].1.payload.as_ref().expect("p")["status"],
        "timeout"
    );
    assert_eq!(checks, ["s"]);
    // The runner's view ends the other.
    let info = RunInfo {
        run_id: "s".into(),
        state: RunState::Completed as i32,
        text: "done".into(),
        ..Default::default()
    };
    let answers = waits.checked(Ok(info));
    assert_eq!(answers[0].0, "2");
    assert_eq!(waits.count, 0);
}

#[test]
fn a_run_that_already_ended_answers_once() {
    let mut waits = Waits::default();
    waits.reserve("1", &run("r", None), 8).expect("reserved");
    let mut done = accepted("1", "r", StartStatus::Done);
    if let Ok(response) = &mut done.result {
        response.run = Some(RunInfo {
            run_id: "r".into(),
            state: RunState::Completed as i32,
            text: "cached".into(),
            ..Default::default()
        });
    }
    let (reply, end_now) = waits.accepted(done);
    assert!(end_now.is_none());
    let payload = reply.payload.expect("final");
    assert_eq!(payload["status"], "ok");
    assert_eq!(payload["result"]["payloads"][0]["text"], "cached");
    assert_eq!(waits.count, 0);
}
