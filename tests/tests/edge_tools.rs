//! The tool loop through the WebSocket: an OpenClaw client that asked for
//! `caps: ["tool-events"]` sees each call start and finish on the `agent`
//! `tool` stream, one that did not sees neither, the reply carries the text of
//! both model steps, and `chat.history` shows the step and its result.

mod edge_support;

use clawgate_tests::mock_model::Script;
use edge_support::{gateway, ok, open, openclaw_params, until_chat_terminal};
use serde_json::{Value, json};

const RW: &[&str] = &["operator.read", "operator.write"];

async fn connect(
    url: &str,
    token: &str,
    caps: &[&str],
) -> anyhow::Result<clawgate_tests::ws::WsClient> {
    let mut client = open(url).await?;
    let mut params = openclaw_params(token, RW);
    params["caps"] = json!(caps);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

fn tool_frames(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["event"] == "agent" && f["payload"]["stream"] == "tool")
        .map(|f| f["payload"]["data"].clone())
        .collect()
}

#[tokio::test]
async fn tool_calls_stream_to_tool_event_clients_and_land_in_history() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("You have one session.")).await?;
    model.queue_script(Script::tokens(["Let me look."]).with_tool_call(
        "call_1",
        "sessions_list",
        r#"{"limit":5}"#,
    ));
    let mut watcher = connect(&gw.ws_url, &gw.gateway_token, &["tool-events"]).await?;
    let sent = watcher
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "what sessions?", "idempotencyKey": "t1"}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    let frames = until_chat_terminal(&mut watcher, &run_id).await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["payload"]["state"], "final", "{last}");
    assert_eq!(
        last["payload"]["message"]["content"][0]["text"],
        "Let me look.\n\nYou have one session."
    );
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
            &json!("call_1"),
            &json!({"limit": 5})
        )
    );
    assert_eq!(tools[1]["phase"], "result");
    assert_eq!(tools[1]["isError"], false);
    assert_eq!(
        tools[1]["result"]["sessions"][0]["sessionKey"],
        "agent:main:main"
    );

    let history = watcher
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = ok(&history)?["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "toolResult", "assistant"],
        "{messages:#?}"
    );
    assert_eq!(messages[1]["content"][1]["type"], "toolCall");
    assert_eq!(messages[1]["content"][1]["name"], "sessions_list");
    assert_eq!(messages[2]["toolCallId"], "call_1");

    // Without the cap, the same kind of run shows no tool frames.
    model.queue_script(Script::tokens(Vec::<String>::new()).with_tool_call(
        "call_2",
        "sessions_list",
        "{}",
    ));
    let mut plain = connect(&gw.ws_url, &gw.gateway_token, &[]).await?;
    let sent = plain
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "again", "idempotencyKey": "t2"}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    let frames = until_chat_terminal(&mut plain, &run_id).await?;
    assert_eq!(
        frames.last().map(|f| f["payload"]["state"].clone()),
        Some(json!("final"))
    );
    assert!(tool_frames(&frames).is_empty(), "{frames:#?}");
    Ok(())
}

fn tool_ids(groups: &Value) -> Vec<String> {
    groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["tools"].as_array().cloned().unwrap_or_default())
        .filter_map(|tool| tool["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_tool_catalog_and_an_agents_effective_tools() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("ok")).await?;
    let mut reader = connect(&gw.ws_url, &gw.gateway_token, &[]).await?;
    let mut admin = open(&gw.ws_url).await?;
    let res = admin
        .request(
            "connect",
            openclaw_params(&gw.gateway_token, &["operator.admin"]),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "{res}");

    let catalog = reader.request("tools.catalog", json!({})).await?;
    let catalog = ok(&catalog)?;
    assert_eq!(catalog["agentId"], "main", "{catalog}");
    assert_eq!(
        tool_ids(&catalog["groups"]),
        [
            "sessions_history",
            "sessions_list",
            "sessions_send",
            "web_fetch"
        ],
        "{catalog}"
    );
    let fetch = &catalog["groups"][0]["tools"][3];
    assert_eq!(fetch["enabled"], true, "{fetch}");
    assert_eq!(fetch["parameters"]["required"], json!(["url"]), "{fetch}");
    assert_eq!(fetch["requiresApproval"], false, "{fetch}");

    // An agent with an allowlist has only those tools.
    let created = admin
        .request(
            "agents.create",
            json!({"name": "Reader", "workspace": "", "tools": ["sessions_list"]}),
        )
        .await?;
    let agent_id = ok(&created)?["agentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let effective = reader
        .request(
            "tools.effective",
            json!({"sessionKey": format!("agent:{agent_id}:main")}),
        )
        .await?;
    let effective = ok(&effective)?;
    assert_eq!(effective["agentId"], agent_id.as_str(), "{effective}");
    assert_eq!(
        tool_ids(&effective["groups"]),
        ["sessions_list"],
        "{effective}"
    );
    let catalog = reader
        .request("tools.catalog", json!({"agentId": agent_id}))
        .await?;
    let enabled: Vec<bool> = ok(&catalog)?["groups"][0]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tool| tool["enabled"] == true)
        .collect();
    assert_eq!(enabled, [false, true, false, false]);

    let unknown = reader
        .request("tools.catalog", json!({"agentId": "nobody"}))
        .await?;
    assert_eq!(unknown["ok"], false, "{unknown}");
    let missing = reader.request("tools.effective", json!({})).await?;
    assert_eq!(missing["error"]["code"], "INVALID_REQUEST", "{missing}");
    Ok(())
}
