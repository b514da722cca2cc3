//! The tool loop in the goclaw dialect, against the embedded gateway and the
//! mock OpenAI server: a `chat.send` whose model calls tools streams a
//! top-level `tool.call` and `tool.result` per call (between the step's chunks
//! and `run.completed`), is answered with the text of both model steps, sends
//! the results back to the model, and leaves the tool rows in `chat.history`.
//! Parallel calls of one step each get their pair of events. An operator of
//! another user sees none of it; the tools read only the run's user's rows.

mod edge_support;

use std::time::Duration;

use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::gateway;
use serde_json::{Value, json};

/// The goclaw run events a test looks at.
const RUN_EVENTS: [&str; 5] = [
    "run.started",
    "chunk",
    "tool.call",
    "tool.result",
    "run.completed",
];

async fn goclaw(url: &str, token: &str, user: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.goclaw_handshake(token, user).await?;
    Ok(client)
}

/// Sends `chat.send` and reads until its answer; returns the answer and the
/// run events that came before it, in order.
async fn chat_send(client: &mut WsClient, params: Value) -> anyhow::Result<(Value, Vec<Value>)> {
    let id = client.send_request("chat.send", params).await?;
    let mut events = Vec::new();
    loop {
        let frame = client.recv().await?;
        if frame["type"] == "res" && frame["id"] == id.as_str() {
            return Ok((frame, events));
        }
        if RUN_EVENTS.contains(&frame["event"].as_str().unwrap_or_default()) {
            events.push(frame);
        }
    }
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|f| f["event"].as_str()).collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|f| f["event"] == name).collect()
}

fn chunks(events: &[Value]) -> String {
    named(events, "chunk")
        .into_iter()
        .filter_map(|f| f["payload"]["content"].as_str())
        .collect()
}

/// A tool output as the model and the client read it: JSON text.
fn parsed(text: &Value) -> Value {
    serde_json::from_str(text.as_str().unwrap_or_default()).unwrap_or(Value::Null)
}

/// Run events (or any tool event) of the other user's run that reached `ws`.
async fn leaked(ws: &mut WsClient, run_id: &str, user: &str) -> Vec<Value> {
    ws.drain(Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|f| {
            let name = f["event"].as_str().unwrap_or_default();
            name.starts_with("tool.")
                || (RUN_EVENTS.contains(&name)
                    && (f["payload"]["runId"] == run_id || f["payload"]["userId"] == user))
        })
        .collect()
}

#[tokio::test]
async fn a_tool_call_streams_as_tool_events_and_the_answer_joins_both_steps() -> anyhow::Result<()>
{
    let (gw, model) = gateway(Script::text("You have one session.")).await?;
    model.queue_script(Script::tokens(["Let me look."]).with_tool_call(
        "call_1",
        "sessions_list",
        r#"{"limit":5}"#,
    ));
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let mut alice = goclaw(url, token, "alice").await?;
    let mut eve = alice.operator_socket(url, "eve").await?;
    // Another socket of alice's: the control that the events do get around.
    let mut alice_too = alice.operator_socket(url, "alice").await?;

    let key = "agent:main:ws:direct:tools";
    let (res, events) = chat_send(
        &mut alice,
        json!({"message": "what sessions?", "sessionKey": key, "idempotencyKey": "gt-1"}),
    )
    .await?;
    assert_eq!(res["ok"], true, "{res}");
    let text = "Let me look.\n\nYou have one session.";
    assert_eq!(res["payload"]["content"], text, "{res}");
    assert_eq!(res["payload"]["runId"], "gt-1", "{res}");

    // run.started, the first step's text, the call and its result, the second
    // step's text, run.completed — in that order.
    let order: Vec<&str> = {
        let mut order = names(&events);
        order.dedup();
        order
    };
    assert_eq!(
        order,
        [
            "run.started",
            "chunk",
            "tool.call",
            "tool.result",
            "chunk",
            "run.completed"
        ],
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|f| f["payload"]["runId"] == "gt-1" && f["payload"]["sessionKey"] == key),
        "{events:#?}"
    );
    assert_eq!(chunks(&events), text);

    let calls = named(&events, "tool.call");
    assert_eq!(calls.len(), 1, "{events:#?}");
    let call = &calls[0]["payload"];
    assert_eq!(call["name"], "sessions_list", "{call}");
    assert_eq!(call["id"], "call_1", "{call}");
    // The arguments arrived in two pieces and are one parsed object.
    assert_eq!(call["arguments"], json!({"limit": 5}), "{call}");
    assert_eq!(call["userId"], "alice", "{call}");

    let results = named(&events, "tool.result");
    assert_eq!(results.len(), 1, "{events:#?}");
    let result = &results[0]["payload"];
    assert_eq!(
        (&result["name"], &result["id"], &result["is_error"]),
        (&json!("sessions_list"), &json!("call_1"), &json!(false)),
        "{result}"
    );
    let sessions = result["result"]["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{result}");
    assert_eq!(sessions[0]["sessionKey"], key, "{result}");

    let done = named(&events, "run.completed");
    assert_eq!(done.len(), 1, "{events:#?}");
    assert_eq!(done[0]["payload"]["status"], "completed");
    assert_eq!(done[0]["payload"]["content"], text);

    // The second model request carried the step and its result.
    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let messages = requests[1].body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles.last(), Some(&"tool"), "{messages:#?}");
    let step = &messages[messages.len() - 2];
    assert_eq!(step["role"], "assistant", "{step}");
    assert_eq!(step["content"], "Let me look.", "{step}");
    assert_eq!(step["tool_calls"][0]["id"], "call_1", "{step}");
    assert_eq!(
        step["tool_calls"][0]["function"]["name"], "sessions_list",
        "{step}"
    );
    assert_eq!(
        parsed(&step["tool_calls"][0]["function"]["arguments"]),
        json!({"limit": 5})
    );
    let tool = &messages[messages.len() - 1];
    assert_eq!(tool["tool_call_id"], "call_1", "{tool}");
    assert_eq!(
        parsed(&tool["content"])["sessions"][0]["sessionKey"],
        key,
        "{tool}"
    );

    // goclaw's history lists the rows as stored: the tool row among them.
    let history = alice
        .request("chat.history", json!({"sessionKey": key}))
        .await?;
    assert_eq!(history["ok"], true, "{history}");
    let rows = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = rows.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant"],
        "{history}"
    );
    assert_eq!(rows[1]["content"], "Let me look.", "{history}");
    assert_eq!(
        parsed(&rows[2]["content"])["sessions"][0]["sessionKey"],
        key,
        "{history}"
    );
    assert_eq!(rows[2]["is_error"], false, "{history}");
    // Which call the step made, and which call the tool row answers.
    assert_eq!(rows[1]["tool_calls"][0]["id"], "call_1", "{history}");
    assert_eq!(
        rows[1]["tool_calls"][0]["name"], "sessions_list",
        "{history}"
    );
    assert_eq!(
        rows[1]["tool_calls"][0]["arguments"],
        json!({"limit": 5}),
        "{history}"
    );
    assert_eq!(rows[2]["tool_call_id"], "call_1", "{history}");
    assert_eq!(rows[2]["tool_name"], "sessions_list", "{history}");
    assert_eq!(rows[3]["content"], "You have one session.", "{history}");
    assert!(rows.iter().all(|row| row["run_id"] == "gt-1"), "{history}");

    // alice's other socket got the tool events, an operator of another user
    // nothing of the run.
    let seen = leaked(&mut alice_too, "gt-1", "alice").await;
    let tool_events: Vec<(&str, &str)> = seen
        .iter()
        .filter(|f| f["event"].as_str().is_some_and(|n| n.starts_with("tool.")))
        .map(|f| {
            (
                f["event"].as_str().unwrap_or_default(),
                f["payload"]["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        tool_events,
        [("tool.call", "call_1"), ("tool.result", "call_1")],
        "{seen:#?}"
    );
    let seen = leaked(&mut eve, "gt-1", "alice").await;
    assert!(seen.is_empty(), "eve saw alice's run: {seen:#?}");
    Ok(())
}

#[tokio::test]
async fn parallel_calls_of_one_step_each_get_a_call_and_a_result() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("Both done.")).await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let mut admin = goclaw(url, token, "ann").await?;
    let mut carol = admin.operator_socket(url, "carol").await?;
    let mut eve = admin.operator_socket(url, "eve").await?;

    // eve has a session of her own, which carol's tools must not see.
    let (res, _) = chat_send(
        &mut eve,
        json!({"message": "hello", "sessionKey": "agent:main:ws:direct:eve", "idempotencyKey": "eve-1"}),
    )
    .await?;
    assert_eq!(res["payload"]["content"], "Both done.", "{res}");
    eve.drain(Duration::from_millis(100)).await;
    admin.drain(Duration::from_millis(100)).await;

    let key = "agent:main:ws:direct:carol";
    model.queue_script(
        Script::tokens(["Checking ", "both."])
            .with_tool_call("call_a", "sessions_list", r#"{"limit":5}"#)
            .with_tool_call(
                "call_b",
                "sessions_history",
                json!({"sessionKey": key, "limit": 10}).to_string(),
            ),
    );
    let (res, events) = chat_send(
        &mut carol,
        json!({"message": "what now?", "sessionKey": key, "idempotencyKey": "gt-2"}),
    )
    .await?;
    assert_eq!(res["ok"], true, "{res}");
    let text = "Checking both.\n\nBoth done.";
    assert_eq!(res["payload"]["content"], text, "{res}");
    assert_eq!(chunks(&events), text);

    // Both calls are announced before either runs, each result follows its call.
    let tool_events: Vec<&Value> = events
        .iter()
        .filter(|f| f["event"] == "tool.call" || f["event"] == "tool.result")
        .collect();
    let kinds: Vec<(&str, &str)> = tool_events
        .iter()
        .map(|f| {
            (
                f["event"].as_str().unwrap_or_default(),
                f["payload"]["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 4, "{events:#?}");
    assert_eq!(
        kinds[..2],
        [("tool.call", "call_a"), ("tool.call", "call_b")],
        "{events:#?}"
    );
    let mut result_ids: Vec<&str> = kinds[2..]
        .iter()
        .filter(|(kind, _)| *kind == "tool.result")
        .map(|(_, id)| *id)
        .collect();
    result_ids.sort_unstable();
    assert_eq!(result_ids, ["call_a", "call_b"], "{events:#?}");
    let last_result = events
        .iter()
        .rposition(|f| f["event"] == "tool.result")
        .unwrap_or(usize::MAX);
    let completed = events
        .iter()
        .position(|f| f["event"] == "run.completed")
        .unwrap_or(0);
    assert!(last_result < completed, "{events:#?}");

    let by_id = |event: &str, id: &str| -> Value {
        tool_events
            .iter()
            .find(|f| f["event"] == event && f["payload"]["id"] == id)
            .map(|f| f["payload"].clone())
            .unwrap_or_default()
    };
    let call_a = by_id("tool.call", "call_a");
    assert_eq!(call_a["name"], "sessions_list", "{call_a}");
    assert_eq!(call_a["arguments"], json!({"limit": 5}), "{call_a}");
    let call_b = by_id("tool.call", "call_b");
    assert_eq!(call_b["name"], "sessions_history", "{call_b}");
    assert_eq!(
        call_b["arguments"],
        json!({"sessionKey": key, "limit": 10}),
        "{call_b}"
    );

    let list = by_id("tool.result", "call_a");
    assert_eq!(list["name"], "sessions_list", "{list}");
    assert_eq!(list["is_error"], false, "{list}");
    // Only carol's own session: eve's is not hers to list.
    let keys: Vec<&str> = list["result"]["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sessionKey"].as_str())
        .collect();
    assert_eq!(keys, [key], "{list}");
    let history = by_id("tool.result", "call_b");
    assert_eq!(history["name"], "sessions_history", "{history}");
    assert_eq!(history["is_error"], false, "{history}");
    assert_eq!(history["result"]["sessionKey"], key, "{history}");
    let shown: Vec<(&str, &str)> = history["result"]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default(),
                m["text"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // The step's row is written before its tools run.
    assert_eq!(
        shown,
        [("user", "what now?"), ("assistant", "Checking both.")],
        "{history}"
    );

    // The second request has one assistant step with both calls, then both
    // results in call order.
    let requests = model.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let messages = requests[2].body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n = messages.len();
    assert!(n >= 4, "{messages:#?}");
    let step = &messages[n - 3];
    assert_eq!(step["role"], "assistant", "{step}");
    let step_ids: Vec<&str> = step["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(step_ids, ["call_a", "call_b"], "{step}");
    let results: Vec<(&str, &str)> = messages[n - 2..]
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default(),
                m["tool_call_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(results, [("tool", "call_a"), ("tool", "call_b")]);
    assert_eq!(
        parsed(&messages[n - 1]["content"])["messages"][0]["text"],
        "what now?"
    );

    // The admin of the tenant saw carol's tool events, named as hers.
    let seen = admin
        .event_where(|f| f["event"] == "tool.result" && f["payload"]["runId"] == "gt-2")
        .await?;
    assert_eq!(seen["payload"]["userId"], "carol", "{seen}");
    // eve saw none of them.
    let seen = leaked(&mut eve, "gt-2", "carol").await;
    assert!(seen.is_empty(), "eve saw carol's run: {seen:#?}");
    Ok(())
}

#[tokio::test]
async fn a_failed_tool_is_an_error_row_in_history() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("That tool does not exist.")).await?;
    model.queue_script(Script::tokens(["Trying."]).with_tool_call("call_x", "nope", "{}"));
    let mut dave = goclaw(&gw.ws_url, &gw.gateway_token, "dave").await?;
    let (answer, events) = chat_send(
        &mut dave,
        json!({"sessionKey": "fails", "message": "use nope", "idempotencyKey": "gt-err"}),
    )
    .await?;
    assert_eq!(answer["ok"], true, "{answer}");
    let result = named(&events, "tool.result");
    assert_eq!(result.len(), 1, "{events:?}");
    assert_eq!(result[0]["payload"]["is_error"], true, "{events:?}");
    let history = dave
        .request("chat.history", json!({"sessionKey": "fails"}))
        .await?;
    let rows = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tool = rows.iter().find(|row| row["role"] == "tool").cloned();
    let tool = tool.unwrap_or_default();
    assert_eq!(tool["is_error"], true, "{history}");
    assert_eq!(tool["tool_call_id"], "call_x", "{history}");
    assert!(
        rows.iter()
            .filter(|row| row["role"] != "tool")
            .all(|row| row["is_error"] == false),
        "{history}"
    );
    Ok(())
}
