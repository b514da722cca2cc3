//! OpenClaw `agent` (two answers on one request id: the acceptance, then the
//! run's end), `agent.wait`, and their refusals, against the embedded gateway
//! with a mock model.

mod edge_support;

use std::time::Duration;

use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::{gateway, openclaw};
use serde_json::{Value, json};

const RW: &[&str] = &["operator.read", "operator.write"];

/// What `openclaw agent --agent main --message M --json` sends.
fn cli_agent(message: &str, key: &str) -> Value {
    json!({
        "message": message, "agentId": "main", "deliver": false, "timeout": 600,
        "idempotencyKey": key,
    })
}

/// Every frame up to the second `res` of request `id` (ticks left out).
async fn until_final(client: &mut WsClient, id: &str) -> anyhow::Result<Vec<Value>> {
    let mut frames = Vec::new();
    let mut answers = 0;
    while answers < 2 {
        let frame = client.recv().await?;
        if frame["event"] == "tick" {
            continue;
        }
        if frame["type"] == "res" && frame["id"] == id {
            answers += 1;
        }
        frames.push(frame);
    }
    Ok(frames)
}

fn answers<'a>(frames: &'a [Value], id: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "res" && f["id"] == id)
        .collect()
}

fn position(frames: &[Value], pick: impl Fn(&Value) -> bool) -> Option<usize> {
    frames.iter().position(pick)
}

#[tokio::test]
async fn edge_agent_answers_twice_acceptance_then_the_runs_end() -> anyhow::Result<()> {
    let (gw, _model) =
        gateway(Script::tokens(["Hello", ", ", "world"]).with_delay(Duration::from_millis(20)))
            .await?;
    let (mut c, hello) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let methods = hello["features"]["methods"].to_string();
    assert!(
        methods.contains("\"agent\"") && methods.contains("\"agent.wait\""),
        "{hello}"
    );

    let id = c
        .send_request("agent", cli_agent("hi", "agent-run-1"))
        .await?;
    let frames = until_final(&mut c, &id).await?;
    let res = answers(&frames, &id);
    assert_eq!(res.len(), 2, "{frames:#?}");
    let (ack, end) = (res[0], res[1]);
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = &ack["payload"];
    assert_eq!(ack["status"], "accepted", "{ack}");
    assert_eq!(ack["runId"], "agent-run-1");
    assert_eq!(ack["sessionKey"], "agent:main:main");
    assert_eq!(ack["agentId"], "main");
    assert!(ack["acceptedAt"].as_i64().is_some_and(|t| t > 0), "{ack}");

    // The acceptance comes before any event of the run, the end after its
    // terminal chat event.
    let ack_at = position(&frames, |f| f["type"] == "res").expect("ack");
    let first_event = position(&frames, |f| {
        f["payload"]["runId"] == "agent-run-1" && f["type"] == "event"
    })
    .expect("events of the run");
    assert!(ack_at < first_event, "{frames:#?}");
    let chat_final = position(&frames, |f| {
        f["event"] == "chat" && f["payload"]["state"] == "final"
    })
    .expect("chat final");
    assert!(
        chat_final < frames.len() - 1,
        "the end is the last frame: {frames:#?}"
    );

    assert_eq!(end["ok"], true, "{end}");
    let end = &end["payload"];
    assert_eq!(end["runId"], "agent-run-1");
    assert_eq!(end["status"], "ok", "{end}");
    assert_eq!(end["summary"], "completed", "{end}");
    assert_eq!(
        end["result"]["payloads"],
        json!([{"text": "Hello, world", "mediaUrl": null}]),
        "{end}"
    );
    let meta = &end["result"]["meta"];
    assert!(meta["durationMs"].as_i64().is_some_and(|d| d >= 0), "{end}");
    assert_eq!(meta["agentMeta"]["sessionId"], "agent:main:main", "{end}");

    // The transcript holds the turn.
    let history = c
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let texts: Vec<Value> = history["payload"]["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["content"][0]["text"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(texts, [json!("hi"), json!("Hello, world")], "{history}");

    // A resend of the key gets the end at once, once.
    let id = c
        .send_request("agent", cli_agent("hi", "agent-run-1"))
        .await?;
    let again = c.response(&id).await?;
    assert_eq!(again["payload"]["status"], "ok", "{again}");
    assert_eq!(
        again["payload"]["result"]["payloads"][0]["text"], "Hello, world",
        "{again}"
    );

    // agent.wait on the ended run.
    let res = c
        .request(
            "agent.wait",
            json!({"runId": "agent-run-1", "timeoutMs": 1000}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    let wait = &res["payload"];
    assert_eq!(wait["runId"], "agent-run-1");
    assert_eq!(wait["status"], "ok", "{res}");
    assert!(wait["startedAt"].as_i64().is_some_and(|t| t > 0), "{res}");
    assert!(
        wait["endedAt"].as_i64() >= wait["startedAt"].as_i64(),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_agent_model_error_ends_in_an_error() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::http_error(400)).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let id = c
        .send_request("agent", cli_agent("hi", "agent-err"))
        .await?;
    let frames = until_final(&mut c, &id).await?;
    let res = answers(&frames, &id);
    assert_eq!(res[0]["payload"]["status"], "accepted", "{frames:#?}");
    let end = res[1];
    assert_eq!(end["ok"], false, "{end}");
    assert_eq!(end["error"]["code"], "UNAVAILABLE", "{end}");
    assert_eq!(end["payload"]["runId"], "agent-err", "{end}");
    assert_eq!(end["payload"]["status"], "error", "{end}");
    assert!(
        end["payload"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{end}"
    );
    let res = c
        .request("agent.wait", json!({"runId": "agent-err"}))
        .await?;
    assert_eq!(res["payload"]["status"], "error", "{res}");
    assert!(res["payload"]["error"].is_string(), "{res}");
    Ok(())
}

#[tokio::test]
async fn edge_agent_timeout_ends_in_a_timeout() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["partial"]).then_hang()).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let mut params = cli_agent("hi", "agent-slow");
    params["timeout"] = json!(1);
    let id = c.send_request("agent", params).await?;
    // Meanwhile agent.wait gives up on its own, shorter timeout.
    let res = c
        .request(
            "agent.wait",
            json!({"runId": "agent-slow", "timeoutMs": 100}),
        )
        .await?;
    assert_eq!(
        res["payload"],
        json!({"runId": "agent-slow", "status": "timeout"}),
        "{res}"
    );
    let frames = until_final(&mut c, &id).await?;
    let res = answers(&frames, &id);
    assert_eq!(res[0]["payload"]["status"], "accepted", "{frames:#?}");
    let end = res[1];
    assert_eq!(end["ok"], true, "{end}");
    assert_eq!(end["payload"]["status"], "timeout", "{end}");
    assert_eq!(end["payload"]["summary"], "aborted", "{end}");
    assert_eq!(end["payload"]["stopReason"], "timeout", "{end}");
    let res = c
        .request("agent.wait", json!({"runId": "agent-slow"}))
        .await?;
    assert_eq!(res["payload"]["status"], "timeout", "{res}");
    assert_eq!(res["payload"]["stopReason"], "timeout", "{res}");
    Ok(())
}

#[tokio::test]
async fn edge_agent_wait_sees_only_the_callers_runs() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["ok"])).await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut owner, _) = openclaw(url, token, &["operator.admin"]).await?;
    let id = owner
        .send_request("agent", cli_agent("hi", "owners-run"))
        .await?;
    let frames = until_final(&mut owner, &id).await?;
    assert_eq!(
        answers(&frames, &id)[1]["payload"]["status"],
        "ok",
        "{frames:#?}"
    );

    let res = owner
        .request(
            "api_keys.create",
            json!({"name": "bob", "scopes": RW, "userId": "bob"}),
        )
        .await?;
    let key = res["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!key.is_empty(), "{res}");
    let (mut bob, _) = openclaw(url, &key, RW).await?;
    let res = bob
        .request("agent.wait", json!({"runId": "owners-run"}))
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(
        res["error"]["message"], "run not found: owners-run",
        "{res}"
    );
    // The owner's own wait finds it.
    let res = owner
        .request("agent.wait", json!({"runId": "owners-run"}))
        .await?;
    assert_eq!(res["payload"]["status"], "ok", "{res}");
    Ok(())
}

#[tokio::test]
async fn edge_agent_bad_params_are_refused() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::tokens(["never"])).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let cases = [
        ("agent", json!({"message": "hi"}), "invalid agent params: "),
        (
            "agent",
            json!({"message": "hi", "idempotencyKey": "k", "deliver": true}),
            "deliver is not supported",
        ),
        (
            "agent",
            json!({"message": "hi", "idempotencyKey": "k", "model": "other/model"}),
            "model is not supported",
        ),
        (
            "agent",
            json!({"message": "hi", "idempotencyKey": "k", "agentId": "ops", "sessionKey": "agent:main:x"}),
            "does not match",
        ),
        (
            "agent",
            json!({"message": "hi", "idempotencyKey": "k", "bogus": 1}),
            "unexpected property 'bogus'",
        ),
        ("agent.wait", json!({}), "invalid agent.wait params: "),
        (
            "agent.wait",
            json!({"runId": "r", "timeoutMs": "soon"}),
            "must be integer",
        ),
    ];
    for (method, params, expected) in cases {
        let res = c.request(method, params.clone()).await?;
        assert_eq!(res["ok"], false, "{method} {params}: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        let message = res["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{method} {params}: {res}");
    }
    // A read-only connection may not run an agent.
    let (mut reader, _) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.read"]).await?;
    let res = reader.request("agent", cli_agent("hi", "k")).await?;
    assert_eq!(res["ok"], false, "{res}");
    assert!(model.requests().is_empty(), "no run started");
    Ok(())
}

#[tokio::test]
async fn edge_chat_inject_appends_a_note_and_shows_it() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["ok"])).await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut admin, _) = openclaw(url, token, &["operator.admin"]).await?;
    let (mut watcher, _) = openclaw(url, token, &["operator.read"]).await?;
    let res = admin
        .request(
            "api_keys.create",
            json!({"name": "bob", "scopes": RW, "userId": "bob"}),
        )
        .await?;
    let key = res["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (mut bob, _) = openclaw(url, &key, RW).await?;

    // No session yet: nothing to append to.
    let res = admin
        .request(
            "chat.inject",
            json!({"sessionKey": "main", "message": "note"}),
        )
        .await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(
        res["error"]["message"], "session not found: agent:main:main",
        "{res}"
    );

    let id = admin
        .send_request("agent", cli_agent("hi", "before-note"))
        .await?;
    until_final(&mut admin, &id).await?;
    let res = admin
        .request(
            "chat.inject",
            json!({"sessionKey": "main", "message": "remember this", "label": "cron"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["ok"], true, "{res}");
    let message_id = res["payload"]["messageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message_id.is_empty(), "{res}");

    // Sockets that see the user's runs get a chat final of the note.
    let run_id = format!("inject-{message_id}");
    for client in [&mut admin, &mut watcher] {
        let event = client
            .event_where(|f| f["event"] == "chat" && f["payload"]["runId"] == run_id.as_str())
            .await?;
        let payload = &event["payload"];
        assert_eq!(payload["state"], "final", "{event}");
        assert_eq!(payload["seq"], 0, "{event}");
        assert_eq!(payload["sessionKey"], "agent:main:main", "{event}");
        assert_eq!(
            payload["message"]["content"][0]["text"], "[cron]\n\nremember this",
            "{event}"
        );
    }
    // Another user's socket does not.
    let seen = bob.drain(Duration::from_millis(300)).await;
    assert!(
        !seen.iter().any(|f| f.to_string().contains("remember this")),
        "{seen:?}"
    );
    let history = admin
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let last = history["payload"]["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["role"], "assistant", "{history}");
    assert_eq!(
        last["content"][0]["text"], "[cron]\n\nremember this",
        "{history}"
    );

    // It needs operator.admin in OpenClaw.
    let res = bob
        .request("chat.inject", json!({"sessionKey": "main", "message": "x"}))
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    assert!(
        res["error"]["message"]
            .to_string()
            .contains("operator.admin"),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_chat_inject() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["ok"])).await?;
    let mut c = WsClient::connect(&gw.ws_url).await?;
    c.goclaw_handshake(&gw.gateway_token, "gina").await?;
    let key = "agent:main:ws:direct:note";
    let res = c
        .request("chat.send", json!({"message": "hi", "sessionKey": key}))
        .await?;
    assert_eq!(res["payload"]["content"], "ok", "{res}");
    let res = c
        .request(
            "chat.inject",
            json!({"sessionKey": key, "message": "a note"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert!(res["payload"]["messageId"].is_string(), "{res}");
    let history = c
        .request("chat.history", json!({"sessionKey": key}))
        .await?;
    let messages = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["role"].clone(), last["content"].clone()),
        (json!("assistant"), json!("a note")),
        "{history}"
    );
    let res = c
        .request("chat.inject", json!({"sessionKey": key, "message": ""}))
        .await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    // goclaw's `agent` is another method, not offered here.
    let res = c.request("agent", json!({"agentId": "main"})).await?;
    assert_eq!(res["ok"], false, "{res}");
    Ok(())
}
