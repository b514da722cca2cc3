use super::*;
use crate::methods::decl::parse_with;
use clawgate_proto::principal::SCOPE_WRITE;

fn writer() -> Principal {
    Principal {
        tenant_id: "t".into(),
        user_id: "u".into(),
        role: "operator".into(),
        scopes: vec![SCOPE_WRITE.to_owned()],
        ..Default::default()
    }
}

fn agent(params: Value) -> Result<AgentRun, ServiceError> {
    parse_with("agent", &params, Style::Camel, &writer(), parse_agent)
}

fn refusal(params: Value) -> String {
    match agent(params) {
        Err(err) => err.message,
        Ok(run) => panic!("accepted: {run:?}"),
    }
}

#[test]
fn the_cli_call_targets_the_agents_main_session() {
    // What `openclaw agent --agent main --message M --json` sends.
    let run = agent(json!({
        "message": "hi\u{7}", "agentId": "main", "deliver": false, "timeout": 600,
        "idempotencyKey": "k1",
    }))
    .expect("accepted");
    assert_eq!(run.start.session_key, "agent:main:main");
    assert_eq!(run.start.agent_id, "main");
    assert_eq!(run.start.message, "hi");
    assert_eq!(run.start.idempotency_key, "k1");
    assert_eq!(run.start.timeout_ms, 600_000);
    assert_eq!(run.wait, Some(Duration::from_secs(600) + WAIT_GRACE));
}

#[test]
fn session_selection() {
    let run =
        agent(json!({"message": "m", "idempotencyKey": "k", "agentId": "Ops"})).expect("accepted");
    assert_eq!(
        (run.start.session_key.as_str(), run.start.agent_id.as_str()),
        ("agent:ops:main", "ops")
    );
    assert_eq!(run.start.timeout_ms, 0);
    assert_eq!(run.wait, None);
    // A bare key belongs to the named agent; a qualified one names its own.
    let run =
        agent(json!({"message": "m", "idempotencyKey": "k", "agentId": "ops", "sessionKey": "s"}))
            .expect("accepted");
    assert_eq!(run.start.session_key, "agent:ops:s");
    let run = agent(json!({"message": "m", "idempotencyKey": "k", "sessionKey": "agent:ops:x"}))
        .expect("accepted");
    assert_eq!(
        (run.start.session_key.as_str(), run.start.agent_id.as_str()),
        ("agent:ops:x", "ops")
    );
    // The session id is the key.
    let run = agent(json!({"message": "m", "idempotencyKey": "k", "sessionId": "agent:main:y"}))
        .expect("accepted");
    assert_eq!(run.start.session_key, "agent:main:y");
}

#[test]
fn bad_params_are_refused() {
    let cases = [
        (
            json!({"idempotencyKey": "k"}),
            "required property 'message'",
        ),
        (
            json!({"message": "m"}),
            "required property 'idempotencyKey'",
        ),
        (
            json!({"message": " \u{7} ", "idempotencyKey": "k"}),
            "message is required",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "nope": 1}),
            "unexpected property 'nope'",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "deliver": true}),
            "deliver is not supported",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "model": "x/y"}),
            "model is not supported",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "thinking": "high"}),
            "thinking is not supported",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "attachments": [{}]}),
            "attachments is not supported",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "timeout": -1}),
            "must be >= 0",
        ),
        (
            json!({"message": "/reset now", "idempotencyKey": "k"}),
            "/new and /reset",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "sessionKey": "agent:x"}),
            "malformed session key",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "agentId": "main", "sessionKey": "agent:ops:s"}),
            "does not match the session's agent",
        ),
        (
            json!({"message": "m", "idempotencyKey": "k", "sessionKey": "a", "sessionId": "b"}),
            "sessionId does not match sessionKey",
        ),
    ];
    for (params, expected) in cases {
        let message = refusal(params.clone());
        assert!(
            message.starts_with("invalid agent params: "),
            "{params}: {message}"
        );
        assert!(message.contains(expected), "{params}: {message}");
    }
    // Neutral values of unsupported fields say nothing and pass.
    agent(json!({
        "message": "m", "idempotencyKey": "k", "bestEffortDeliver": false, "channel": "",
        "attachments": [], "lane": null,
    }))
    .expect("neutral fields pass");
}

#[test]
fn wait_params() {
    let wait =
        |params: Value| parse_with("agent.wait", &params, Style::Camel, &writer(), parse_wait);
    assert_eq!(
        wait(json!({"runId": "r"})).expect("ok"),
        Wait {
            run_id: "r".into(),
            timeout: Duration::from_millis(30_000)
        }
    );
    assert_eq!(
        wait(json!({"runId": "r", "timeoutMs": 5}))
            .expect("ok")
            .timeout,
        Duration::from_millis(5)
    );
    for params in [
        json!({}),
        json!({"runId": ""}),
        json!({"runId": "r", "x": 1}),
        json!({"runId": "r", "timeoutMs": -1}),
    ] {
        let err = wait(params.clone()).expect_err("refused");
        assert!(
            err.message.starts_with("invalid agent.wait params: "),
            "{params}: {err:?}"
        );
    }
}

#[test]
fn wait_results() {
    let mut run = RunInfo {
        run_id: "r".into(),
        state: RunState::Running as i32,
        started_at_ms: 1,
        ..Default::default()
    };
    assert_eq!(wait_result(&run), None);
    run.state = RunState::Completed as i32;
    run.ended_at_ms = 5;
    run.stop_reason = "stop".into();
    assert_eq!(
        wait_result(&run),
        Some(
            json!({"runId": "r", "status": "ok", "startedAt": 1, "endedAt": 5, "stopReason": "stop"})
        )
    );
    run.state = RunState::Failed as i32;
    run.stop_reason = String::new();
    run.error = "boom".into();
    assert_eq!(
        wait_result(&run).map(|v| (v["status"].clone(), v["error"].clone())),
        Some((json!("error"), json!("boom")))
    );
    run.stop_reason = "timeout".into();
    assert_eq!(
        wait_result(&run).map(|v| v["status"].clone()),
        Some(json!("timeout"))
    );
}
