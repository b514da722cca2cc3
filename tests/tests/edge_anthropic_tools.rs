//! The tool loop with the Anthropic Messages API as the provider (against the
//! mock Anthropic server): a `tool_use` block whose input streams in several
//! `input_json_delta` pieces runs as one call, an OpenClaw client with
//! `caps: ["tool-events"]` sees it start and finish, the reply joins the text
//! of both steps, and the next request sends the step back in the API's shape
//! (an assistant `tool_use` block, a user `tool_result` block). A call of a
//! tool the agent does not have is an error result the model reads, not a
//! failed run.

mod edge_support;

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_anthropic::MockAnthropic;
use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::{chat_text, ok, open, openclaw_params, until_chat_terminal};
use serde_json::{Value, json};

const RW: &[&str] = &["operator.read", "operator.write"];

async fn gateway(script: Script) -> anyhow::Result<(TestGateway, MockAnthropic)> {
    let model = MockAnthropic::start(script).await?;
    let gateway = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        model_provider: Some("anthropic".into()),
        ..Default::default()
    })
    .await?;
    Ok((gateway, model))
}

/// An OpenClaw operator that asked for the tool stream.
async fn tool_watcher(gw: &TestGateway) -> anyhow::Result<WsClient> {
    let mut client = open(&gw.ws_url).await?;
    let mut params = openclaw_params(&gw.gateway_token, RW);
    params["caps"] = json!(["tool-events"]);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

/// Sends `message` to `main`; every frame until the run's terminal `chat` event.
async fn send(client: &mut WsClient, message: &str, key: &str) -> anyhow::Result<Vec<Value>> {
    let sent = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": message, "idempotencyKey": key}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(run_id == key, "{sent}");
    until_chat_terminal(client, &run_id).await
}

fn tool_frames(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["event"] == "agent" && f["payload"]["stream"] == "tool")
        .map(|f| f["payload"]["data"].clone())
        .collect()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_tool_use_block_runs_and_its_result_goes_back_as_a_tool_result() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("You have one session.")).await?;
    // The input is cut inside a key: only the pieces together are JSON.
    let input = r#"{"limit":5,"search":"main"}"#;
    model.queue_script(Script::tokens(["Let me ", "look."]).with_tool_call(
        "toolu_01",
        "sessions_list",
        input,
    ));
    let mut watcher = tool_watcher(&gw).await?;
    let frames = send(&mut watcher, "what sessions?", "a1").await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["payload"]["state"], "final", "{last}");
    assert_eq!(chat_text(&last), "Let me look.\n\nYou have one session.");

    let tools = tool_frames(&frames);
    assert_eq!(tools.len(), 2, "{frames:#?}");
    assert_eq!(
        (
            &tools[0]["phase"],
            &tools[0]["name"],
            &tools[0]["toolCallId"],
            &tools[0]["args"]
        ),
        (
            &json!("start"),
            &json!("sessions_list"),
            &json!("toolu_01"),
            &json!({"limit": 5, "search": "main"})
        ),
        "{tools:#?}"
    );
    assert_eq!(
        (
            &tools[1]["phase"],
            &tools[1]["toolCallId"],
            &tools[1]["isError"]
        ),
        (&json!("result"), &json!("toolu_01"), &json!(false)),
        "{tools:#?}"
    );
    assert_eq!(
        tools[1]["result"]["sessions"][0]["sessionKey"], "agent:main:main",
        "{tools:#?}"
    );

    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        tool_names(&requests[0].body).contains(&"sessions_list".to_owned()),
        "{}",
        requests[0].body
    );
    let messages = requests[1].body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(
        messages[0],
        json!({"role": "user", "content": [{"type": "text", "text": "what sessions?"}]})
    );
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_01", "name": "sessions_list",
                "input": {"limit": 5, "search": "main"}},
        ]})
    );
    assert_eq!(messages[2]["role"], "user", "{messages:#?}");
    let blocks = messages[2]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(blocks.len(), 1, "{messages:#?}");
    let result = &blocks[0];
    assert_eq!(result["type"], "tool_result", "{result}");
    assert_eq!(result["tool_use_id"], "toolu_01", "{result}");
    assert!(result.get("is_error").is_none(), "{result}");
    let content: Value =
        serde_json::from_str(result["content"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        content["sessions"][0]["sessionKey"], "agent:main:main",
        "{result}"
    );

    // The transcript keeps the call under its Anthropic id.
    let history = watcher
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let rows = ok(&history)?["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = rows.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "toolResult", "assistant"],
        "{rows:#?}"
    );
    assert_eq!(rows[1]["content"][1]["id"], "toolu_01", "{rows:#?}");
    assert_eq!(rows[2]["toolCallId"], "toolu_01", "{rows:#?}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_tool_is_an_error_result_and_the_run_still_answers() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("That tool is missing.")).await?;
    model.queue_script(Script::tokens(["Trying."]).with_tool_call(
        "toolu_x",
        "launch_rockets",
        r#"{"count":3}"#,
    ));
    let mut watcher = tool_watcher(&gw).await?;
    let frames = send(&mut watcher, "launch", "u1").await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["payload"]["state"], "final", "{last}");
    assert_eq!(chat_text(&last), "Trying.\n\nThat tool is missing.");

    let tools = tool_frames(&frames);
    assert_eq!(tools.len(), 2, "{frames:#?}");
    assert_eq!(tools[0]["name"], "launch_rockets", "{tools:#?}");
    assert_eq!(tools[0]["args"], json!({"count": 3}), "{tools:#?}");
    assert_eq!(tools[1]["phase"], "result", "{tools:#?}");
    assert_eq!(tools[1]["isError"], true, "{tools:#?}");
    let why = tools[1]["result"].as_str().unwrap_or_default();
    assert!(why.contains("launch_rockets"), "{tools:#?}");

    let requests = model.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        !tool_names(&requests[0].body).contains(&"launch_rockets".to_owned()),
        "{}",
        requests[0].body
    );
    let messages = requests[1].body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_x", "name": "launch_rockets",
            "input": {"count": 3}}),
        "{messages:#?}"
    );
    assert_eq!(messages[2]["role"], "user", "{messages:#?}");
    let result = &messages[2]["content"][0];
    assert_eq!(
        (&result["type"], &result["tool_use_id"], &result["is_error"]),
        (&json!("tool_result"), &json!("toolu_x"), &json!(true)),
        "{result}"
    );
    assert_eq!(result["content"].as_str(), Some(why), "{result}");
    Ok(())
}
