//! The tool loop against the mock model: a model's tool calls are run, their
//! results go back to the model, and the run ends when it answers; calls of
//! one step run together; the agent's step limit and an abort end the loop
//! with every call answered in the transcript.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{RunEvent, run_event};
use clawgate_proto::runner::{AbortRunRequest, RunnerApi as _};
use clawgate_proto::session::{AgentSettings, SessionApi as _, UpdateAgentRequest};
use clawgate_runner::RunnerConfig;
use clawgate_runner::provider::ToolSpec;
use clawgate_runner::tools::{Tool, ToolContext, ToolOutput, ToolSet};
use common::{Harness, Options, Script, TENANT, principal, start};
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// A tool that returns once `parties` calls of it are running at once.
struct Meet {
    barrier: Arc<Barrier>,
}

#[async_trait]
impl Tool for Meet {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "meet".into(),
            description: "Waits for the other calls of its step.".into(),
            parameters: json!({"type": "object"}),
        }
    }

    async fn call(&self, _context: &ToolContext, arguments: Value) -> ToolOutput {
        match tokio::time::timeout(Duration::from_secs(5), self.barrier.wait()).await {
            Ok(_) => ToolOutput::ok(format!("met {}", arguments["who"])),
            Err(_) => ToolOutput::error("the other calls never came"),
        }
    }
}

/// A tool that never finishes.
struct Forever;

#[async_trait]
impl Tool for Forever {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "forever".into(),
            description: "Never returns.".into(),
            parameters: json!({"type": "object"}),
        }
    }

    async fn call(&self, _context: &ToolContext, _arguments: Value) -> ToolOutput {
        std::future::pending().await
    }
}

async fn harness(first: Script, then: Script) -> Harness {
    let config = RunnerConfig {
        tools: ToolSet::builtin()
            .with(Arc::new(Meet {
                barrier: Arc::new(Barrier::new(2)),
            }))
            .with(Arc::new(Forever)),
        ..RunnerConfig::default()
    };
    let harness = Harness::start(Options {
        script: Some(then),
        config,
        bus: None,
    })
    .await;
    harness.model().queue_script(first);
    harness
}

fn kinds(events: &[RunEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            Some(run_event::Kind::Start(_)) => Some("start"),
            Some(run_event::Kind::ToolStart(_)) => Some("tool_start"),
            Some(run_event::Kind::ToolResult(_)) => Some("tool_result"),
            Some(run_event::Kind::End(_)) => Some("end"),
            Some(run_event::Kind::Error(_)) => Some("error"),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_tool_result_goes_back_to_the_model_and_the_run_answers() {
    let first = Script::tokens(["Let me look."]).with_tool_call("call_1", "sessions_list", "{}");
    let mut h = harness(first, Script::text("You have one session.")).await;
    h.start_run(start("main", "what sessions do I have?", "r1"))
        .await
        .expect("started");
    let events = h.run_events("r1").await;
    assert_eq!(
        kinds(&events),
        ["start", "tool_start", "tool_result", "end"]
    );
    let Some(result) = events.iter().find_map(|event| match &event.kind {
        Some(run_event::Kind::ToolResult(result)) => Some(result.clone()),
        _ => None,
    }) else {
        panic!("no result: {events:?}")
    };
    assert!(!result.is_error, "{result:?}");
    let listed: Value = serde_json::from_str(&result.result_json).expect("json result");
    assert_eq!(listed["sessions"][0]["sessionKey"], "main");
    let Some(run_event::Kind::End(end)) = &events.last().and_then(|e| e.kind.clone()) else {
        panic!("no end")
    };
    assert_eq!(end.text, "Let me look.\n\nYou have one session.");

    // The second model call saw the step and its result, with the tools offered.
    let requests = h.model().requests();
    assert_eq!(requests.len(), 2);
    let second = &requests[1].body;
    let tools: Vec<&str> = second["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["function"]["name"].as_str())
        .collect();
    assert!(tools.contains(&"sessions_list"), "{tools:?}");
    let messages = second["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "sessions_list"
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    assert_eq!(messages[2]["content"], result.result_json.as_str());

    // The transcript: the step, its result, the answer; sent back on the next turn.
    let rows = h.history("main").await;
    let shape: Vec<(&str, &str, usize)> = rows
        .iter()
        .map(|r| (r.role.as_str(), r.content.as_str(), r.tool_calls.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("user", "what sessions do I have?", 0),
            ("assistant", "Let me look.", 1),
            ("tool", result.result_json.as_str(), 0),
            ("assistant", "You have one session.", 0),
        ]
    );
    assert_eq!(rows[2].tool_call_id, "call_1");
    h.start_run(start("main", "thanks", "r2"))
        .await
        .expect("started");
    h.run_events("r2").await;
    let third = &h.model().requests()[2].body;
    let roles: Vec<&str> = third["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
}

#[tokio::test]
async fn the_calls_of_one_step_run_together() {
    let first = Script::tokens(Vec::<String>::new())
        .with_tool_call("a", "meet", r#"{"who":"a"}"#)
        .with_tool_call("b", "meet", r#"{"who":"b"}"#);
    let mut h = harness(first, Script::text("Both met.")).await;
    h.start_run(start("main", "meet", "r1"))
        .await
        .expect("started");
    let events = h.run_events("r1").await;
    let results: Vec<(String, bool)> = events
        .iter()
        .filter_map(|event| match &event.kind {
            Some(run_event::Kind::ToolResult(result)) => {
                Some((result.result_json.clone(), result.is_error))
            }
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2, "{events:?}");
    assert!(results.iter().all(|(_, is_error)| !is_error), "{results:?}");
    let second = &h.model().requests()[1].body;
    let answers: Vec<(&str, &str)> = second["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or_default(),
                m["content"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(answers, [("a", "met \"a\""), ("b", "met \"b\"")]);
}

#[tokio::test]
async fn the_step_limit_ends_the_run_with_every_call_answered() {
    let call =
        |id: &str| Script::tokens(Vec::<String>::new()).with_tool_call(id, "sessions_list", "{}");
    let h = harness(call("c1"), call("c2")).await;
    let admin = Principal {
        tenant_id: TENANT.into(),
        user_id: "boss".into(),
        role: "admin".into(),
        ..Default::default()
    };
    h.session
        .update_agent(
            &admin,
            UpdateAgentRequest {
                agent_id: "main".into(),
                settings: Some(AgentSettings {
                    max_tool_steps: Some(1),
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("limit set");
    let mut h = h;
    h.start_run(start("main", "loop", "r1"))
        .await
        .expect("started");
    let events = h.run_events("r1").await;
    assert_eq!(
        kinds(&events),
        ["start", "tool_start", "tool_result", "tool_start", "error"]
    );
    let Some(run_event::Kind::Error(error)) = &events[4].kind else {
        panic!("no error")
    };
    assert_eq!(
        error.message,
        "the run stopped after 1 tool steps (the agent's maxToolSteps)"
    );
    let rows = h.history("main").await;
    let tools: Vec<(&str, &str, bool)> = rows
        .iter()
        .filter(|r| r.role == "tool")
        .map(|r| (r.tool_call_id.as_str(), r.content.as_str(), r.tool_error))
        .collect();
    assert_eq!(tools.len(), 2, "{rows:?}");
    assert_eq!(tools[1].0, "c2");
    assert!(tools[1].1.contains("limit of 1 tool steps"), "{tools:?}");
    assert!(tools[1].2);
}

#[tokio::test]
async fn an_abort_during_a_tool_ends_the_run_and_answers_the_call() {
    let first = Script::tokens(Vec::<String>::new()).with_tool_call("slow", "forever", "{}");
    let mut h = harness(first, Script::text("never")).await;
    h.start_run(start("main", "take your time", "r1"))
        .await
        .expect("started");
    loop {
        let event = h.next_event().await;
        if matches!(event.kind, Some(run_event::Kind::ToolStart(_))) {
            break;
        }
    }
    let aborted = h
        .runner
        .abort_run(
            &principal("alice"),
            AbortRunRequest {
                session_key: "main".into(),
                run_id: "r1".into(),
                stop_reason: String::new(),
            },
        )
        .await
        .expect("abort");
    assert!(aborted.aborted);
    let events = h.run_events("r1").await;
    assert!(
        matches!(
            events.last().and_then(|e| e.kind.clone()),
            Some(run_event::Kind::End(_))
        ),
        "{events:?}"
    );
    let rows = h.history("main").await;
    let tool = rows
        .iter()
        .find(|r| r.role == "tool")
        .expect("the call is answered");
    assert_eq!(tool.tool_call_id, "slow");
    assert_eq!(tool.content, "not finished: the run was aborted");
    assert_eq!(
        h.model().requests().len(),
        1,
        "the model is not called again"
    );
}

#[tokio::test]
async fn a_call_of_a_tool_the_agent_lacks_is_an_error_the_model_sees() {
    let first =
        Script::tokens(Vec::<String>::new()).with_tool_call("x", "rm_rf", r#"{"path":"/"}"#);
    let mut h = harness(first, Script::text("Sorry.")).await;
    h.start_run(start("main", "clean up", "r1"))
        .await
        .expect("started");
    let events = h.run_events("r1").await;
    assert_eq!(
        kinds(&events),
        ["start", "tool_start", "tool_result", "end"]
    );
    let second = &h.model().requests()[1].body;
    let tool = second["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "tool").cloned())
        .expect("a result");
    assert_eq!(tool["content"], "unknown tool: rm_rf");
}

#[tokio::test]
async fn sessions_send_runs_another_session_of_the_user_and_returns_its_reply() {
    let first = Script::tokens(["Asking."])
        .with_tool_call(
            "send_1",
            "sessions_send",
            r#"{"sessionKey":"side","message":"ping from main"}"#,
        )
        .with_tool_call(
            "send_2",
            "sessions_send",
            r#"{"sessionKey":"main","message":"to myself"}"#,
        );
    let mut h = harness(first, Script::text("pong")).await;
    h.start_run(start("main", "ask the side session", "r1"))
        .await
        .expect("started");
    let events = h.run_events("r1").await;
    let results: Vec<(String, Value, bool)> = events
        .iter()
        .filter_map(|event| match &event.kind {
            Some(run_event::Kind::ToolResult(result)) => Some((
                result.tool_call_id.clone(),
                serde_json::from_str(&result.result_json)
                    .unwrap_or_else(|_| Value::String(result.result_json.clone())),
                result.is_error,
            )),
            _ => None,
        })
        .collect();
    let sent = results
        .iter()
        .find(|(id, ..)| id == "send_1")
        .expect("send_1");
    assert!(!sent.2, "{sent:?}");
    assert_eq!(sent.1["status"], "ok", "{sent:?}");
    assert_eq!(sent.1["reply"], "pong", "{sent:?}");
    let own = results
        .iter()
        .find(|(id, ..)| id == "send_2")
        .expect("send_2");
    assert!(own.2, "{own:?}");
    assert!(own.1.to_string().contains("own session"), "{own:?}");
    // The side session holds the turn, as the run's own user's.
    let side: Vec<(String, String)> = h
        .history("side")
        .await
        .into_iter()
        .map(|row| (row.role, row.content))
        .collect();
    assert_eq!(
        side,
        [
            ("user".to_owned(), "ping from main".to_owned()),
            ("assistant".to_owned(), "pong".to_owned())
        ]
    );
}
