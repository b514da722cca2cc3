//! goclaw dialect of the edge against the full embedded gateway: connect,
//! `chat.send` answered at the end of its run, top-level events, abort, stop word,
//! runs that outlive their socket.

mod edge_support;

use std::time::Duration;

use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::{gateway, openclaw, until_chat_terminal};
use serde_json::{Value, json};

async fn goclaw(url: &str, token: &str, user: &str) -> anyhow::Result<(WsClient, Value)> {
    let mut client = WsClient::connect(url).await?;
    let hello = client.goclaw_handshake(token, user).await?;
    Ok((client, hello))
}

#[tokio::test]
async fn edge_goclaw_connect_and_chat_round_trip() -> anyhow::Result<()> {
    let (gw, _model) = gateway(
        Script::tokens(["one ", "two ", "three"])
            .with_delay(Duration::from_millis(20))
            .with_usage(5, 3),
    )
    .await?;
    let (mut c, hello) = goclaw(&gw.ws_url, &gw.gateway_token, "alice").await?;
    assert_eq!(hello["protocol"], 3);
    assert_eq!(hello["user_id"], "alice");
    assert!(hello["tenant_id"].is_string());
    assert!(
        hello["role"] == "admin" || hello["role"] == "owner",
        "{hello}"
    );
    assert_eq!(hello["server"]["name"], "clawgate");

    let id = c
        .send_request("chat.send", json!({"message": "count"}))
        .await?;
    let mut events = Vec::new();
    let res = loop {
        let frame = c.recv().await?;
        if frame["type"] == "res" {
            break frame;
        }
        if frame["event"] == "connect.challenge" {
            continue;
        }
        assert!(
            frame.get("seq").is_none(),
            "goclaw frames carry no seq: {frame}"
        );
        events.push(frame);
    };
    assert_eq!(res["id"], id.as_str());
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["content"], "one two three");
    assert_eq!(res["payload"]["usage"]["prompt_tokens"], 5);
    let run_id = res["payload"]["runId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let names: Vec<&str> = events.iter().filter_map(|f| f["event"].as_str()).collect();
    assert_eq!(names.first(), Some(&"run.started"));
    assert_eq!(
        names.last(),
        Some(&"run.completed"),
        "the answer follows run.completed"
    );
    assert!(
        events
            .iter()
            .all(|f| f["payload"]["runId"] == run_id.as_str())
    );
    let key = events[0]["payload"]["sessionKey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with("agent:main:ws:direct:"), "{key}");
    let chunks: String = events
        .iter()
        .filter(|f| f["event"] == "chunk")
        .filter_map(|f| f["payload"]["content"].as_str())
        .collect();
    assert_eq!(chunks, "one two three");

    let res = c
        .request("chat.history", json!({"sessionKey": key}))
        .await?;
    let roles: Vec<&str> = res["payload"]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, vec!["user", "assistant"], "{res}");
    let res = c
        .request("sessions.list", json!({"limit": 10, "offset": 0}))
        .await?;
    assert_eq!(res["payload"]["limit"], 10);
    assert!(
        res["payload"]["total"].as_u64().is_some_and(|t| t >= 1),
        "{res}"
    );

    // health lists only this connection, even with another one open.
    let (_other, _) = goclaw(&gw.ws_url, &gw.gateway_token, "bob").await?;
    let res = c.request("health", json!({})).await?;
    assert_eq!(res["payload"]["status"], "ok");
    assert_eq!(
        res["payload"]["clients"].as_array().map(Vec::len),
        Some(1),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_abort_answers_cancelled_with_partial_text() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["half ", "done"]).then_hang()).await?;
    let (mut c, _) = goclaw(&gw.ws_url, &gw.gateway_token, "alice").await?;
    let send = c
        .send_request(
            "chat.send",
            json!({"message": "go", "sessionKey": "agent:main:ws:direct:ab"}),
        )
        .await?;
    let mut text = String::new();
    while text != "half done" {
        let chunk = c.event("chunk").await?;
        text.push_str(chunk["payload"]["content"].as_str().unwrap_or_default());
    }
    let res = c
        .request(
            "chat.abort",
            json!({"sessionKey": "agent:main:ws:direct:ab"}),
        )
        .await?;
    assert_eq!(res["payload"]["ok"], true, "{res}");
    assert_eq!(res["payload"]["aborted"], true);
    let done = c.event("run.completed").await?;
    assert_eq!(done["payload"]["status"], "cancelled");
    let res = c.response(&send).await?;
    assert_eq!(res["payload"]["cancelled"], true, "{res}");
    assert_eq!(res["payload"]["content"], "half done");
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_stop_word_and_runs_outlive_sockets() -> anyhow::Result<()> {
    let (gw, _model) =
        gateway(Script::tokens(["slow ", "reply"]).with_delay(Duration::from_millis(300))).await?;
    let (mut watcher, _) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.read"]).await?;
    let (mut c, _) = goclaw(&gw.ws_url, &gw.gateway_token, "owner").await?;
    let key = "agent:main:ws:direct:stop";
    c.send_request(
        "chat.send",
        json!({"message": "go", "sessionKey": key, "idempotencyKey": "g-1"}),
    )
    .await?;
    c.event("run.started").await?;
    let res = c
        .request("chat.send", json!({"message": "stop", "sessionKey": key}))
        .await?;
    assert_eq!(res["payload"]["cancelled"], true, "{res}");
    assert_eq!(res["payload"]["aborted"], true);
    assert_eq!(res["payload"]["runIds"], json!(["g-1"]));

    // A goclaw socket that closes while its chat.send waits: the run goes on and
    // the owner's other sockets see it end.
    c.send_request(
        "chat.send",
        json!({"message": "go", "sessionKey": key, "idempotencyKey": "g-2"}),
    )
    .await?;
    c.event("run.started").await?;
    c.close().await;
    let frames = until_chat_terminal(&mut watcher, "g-2").await?;
    let terminal = frames.last().cloned().unwrap_or_default();
    assert_eq!(terminal["payload"]["state"], "final", "{terminal}");
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_session_edits_and_models() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("noted")).await?;
    let (mut c, _) = goclaw(&gw.ws_url, &gw.gateway_token, "alice").await?;
    let res = c
        .request("chat.send", json!({"sessionKey": "notes", "message": "hi"}))
        .await?;
    assert_eq!(res["ok"], true, "{res}");

    let res = c
        .request("sessions.label", json!({"key": "notes", "label": "Notes"}))
        .await?;
    assert_eq!(
        res["payload"],
        json!({"ok": true, "key": "agent:main:notes"}),
        "{res}"
    );
    let res = c.request("sessions.list", json!({"limit": 10})).await?;
    assert_eq!(res["payload"]["sessions"][0]["label"], "Notes", "{res}");
    let res = c
        .request("sessions.patch", json!({"key": "notes", "model": "x"}))
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("model is not a session setting")),
        "{res}"
    );
    let res = c.request("sessions.label", json!({"key": "notes"})).await?;
    assert_eq!(res["ok"], false, "{res}");

    let res = c.request("sessions.reset", json!({"key": "notes"})).await?;
    assert_eq!(res["payload"], json!({"ok": true}), "{res}");
    let res = c
        .request("chat.history", json!({"sessionKey": "notes"}))
        .await?;
    assert_eq!(res["payload"]["messages"], json!([]), "{res}");
    let res = c
        .request("sessions.delete", json!({"key": "notes"}))
        .await?;
    assert_eq!(res["payload"], json!({"ok": true}), "{res}");
    let res = c.request("sessions.list", json!({"limit": 10})).await?;
    assert_eq!(res["payload"]["total"], 0, "{res}");

    let res = c.request("models.list", json!({})).await?;
    let models = res["payload"]["models"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(models.len(), 1, "{res}");
    assert!(models[0]["id"].is_string());
    Ok(())
}
