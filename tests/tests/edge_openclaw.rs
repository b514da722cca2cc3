//! OpenClaw dialect of the edge against the full embedded gateway: hello-ok,
//! chat round trip, event projection, per-connection seq, delta throttling,
//! exactly one terminal event, scope filtering of events.

mod edge_support;

use std::time::Duration;

use clawgate_tests::mock_model::Script;
use edge_support::{chat_text, gateway, openclaw, until_chat_terminal};
use serde_json::{Value, json};
use tokio::time::Instant;

const RW: &[&str] = &["operator.read", "operator.write"];

fn of_run<'a>(frames: &'a [Value], event: &str, run_id: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["event"] == event && f["payload"]["runId"] == run_id)
        .collect()
}

#[tokio::test]
async fn edge_openclaw_hello_and_chat_round_trip() -> anyhow::Result<()> {
    let (gw, _model) = gateway(
        Script::tokens(["Hello", ", ", "world", "!"]).with_delay(Duration::from_millis(20)),
    )
    .await?;
    let (mut c, hello) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.write"]).await?;
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 3);
    assert!(hello["server"]["connId"].is_string());
    assert_eq!(
        hello["features"]["methods"],
        json!([
            "health",
            "status",
            "config.get",
            "system-presence",
            "logs.tail",
            "agents.list",
            "agent.identity.get",
            "models.list",
            "agents.create",
            "agents.update",
            "agents.delete",
            "tools.catalog",
            "tools.effective",
            "chat.send",
            "chat.history",
            "chat.abort",
            "agent",
            "agent.wait",
            "chat.inject",
            "sessions.list",
            "sessions.describe",
            "sessions.get",
            "sessions.preview",
            "sessions.create",
            "sessions.patch",
            "sessions.reset",
            "sessions.delete",
            "sessions.subscribe",
            "sessions.unsubscribe",
            "sessions.messages.subscribe",
            "sessions.messages.unsubscribe",
            "chat.replay",
            "device.pair.list",
            "device.pair.approve",
            "device.pair.reject",
            "device.pair.remove",
            "device.token.rotate",
            "device.token.revoke",
            "api_keys.create",
            "api_keys.list",
            "api_keys.revoke",
            "tenants.list",
            "tenants.get",
            "tenants.create",
            "tenants.update",
            "tenants.users.list",
            "tenants.users.add",
            "tenants.users.remove",
            "secrets.set",
            "secrets.list",
            "secrets.delete",
            "providers.list",
            "providers.set",
            "providers.delete",
            "exec.approval.list",
            "exec.approval.get",
            "exec.approval.resolve",
            "exec.approval.waitDecision",
            "exec.approvals.get",
            "exec.approvals.set",
            "node.list",
            "node.describe",
            "node.invoke",
            "node.pair.request",
            "node.pair.list",
            "node.pair.approve",
            "node.pair.reject",
            "node.pair.remove",
            "node.pair.verify",
            "node.rename",
            "node.invoke.result",
            "node.event"
        ])
    );
    assert!(
        hello["features"]["events"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("chat")))
    );
    assert_eq!(hello["auth"]["role"], "operator");
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert_eq!(hello["policy"]["maxPayload"], 1024 * 1024);
    assert!(hello["policy"]["maxBufferedBytes"].is_u64());
    assert_eq!(hello["policy"]["tickIntervalMs"], 30_000);
    assert_eq!(hello["snapshot"]["presence"], json!([]));
    assert_eq!(
        hello["snapshot"]["sessionDefaults"]["mainSessionKey"],
        "agent:main:main"
    );

    // The ack comes before any event of the run; keys come back canonical.
    let id = c
        .send_request(
            "chat.send",
            json!({"sessionKey": "Main", "message": "hi", "idempotencyKey": "rt-1"}),
        )
        .await?;
    let first = c.recv().await?;
    assert_eq!(first["type"], "res", "the ack is the first frame: {first}");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(
        first["payload"],
        json!({"runId": "rt-1", "status": "started"})
    );

    let frames = until_chat_terminal(&mut c, "rt-1").await?;
    let agent = of_run(&frames, "agent", "rt-1");
    assert_eq!(agent[0]["payload"]["data"]["phase"], "start");
    assert!(
        agent
            .iter()
            .all(|f| f["payload"]["sessionKey"] == "agent:main:main")
    );
    let chat = of_run(&frames, "chat", "rt-1");
    let terminals: Vec<&&Value> = chat
        .iter()
        .filter(|f| f["payload"]["state"] != "delta")
        .collect();
    assert_eq!(terminals.len(), 1);
    assert_eq!(terminals[0]["payload"]["state"], "final");
    assert_eq!(chat_text(terminals[0]), "Hello, world!");
    // Frame seq counts this connection's broadcast events from 1 without gaps.
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // A repeated key after the end; a stop word with nothing running.
    let res = c
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "rt-1"}),
        )
        .await?;
    assert_eq!(res["payload"], json!({"runId": "rt-1", "status": "ok"}));
    let res = c
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "/stop", "idempotencyKey": "rt-2"}),
        )
        .await?;
    assert_eq!(res["payload"]["ok"], true, "{res}");
    assert_eq!(res["payload"]["aborted"], false);

    let res = c.request("sessions.list", json!({})).await?;
    let keys: Vec<&str> = res["payload"]["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["key"].as_str())
        .collect();
    assert!(keys.contains(&"agent:main:main"), "{res}");
    let res = c
        .request("chat.history", json!({"sessionKey": "MAIN"}))
        .await?;
    assert_eq!(res["payload"]["sessionKey"], "agent:main:main");
    Ok(())
}

#[tokio::test]
async fn edge_openclaw_deltas_throttled_full_text_one_terminal() -> anyhow::Result<()> {
    let tokens: Vec<String> = (0..40).map(|k| format!("w{k} ")).collect();
    let full: String = tokens.concat();
    let (gw, _model) =
        gateway(Script::tokens(tokens).with_delay(Duration::from_millis(15))).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let res = c
        .request(
            "chat.send",
            json!({"sessionKey": "t", "message": "go", "idempotencyKey": "thr"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started");
    let mut deltas: Vec<(Instant, String)> = Vec::new();
    let mut agent_texts = Vec::new();
    let terminal = loop {
        let frame = c.recv().await?;
        if frame["payload"]["runId"] != "thr" {
            continue;
        }
        if frame["event"] == "agent" && frame["payload"]["stream"] == "assistant" {
            agent_texts.push(
                frame["payload"]["data"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        if frame["event"] == "chat" {
            if frame["payload"]["state"] == "delta" {
                deltas.push((Instant::now(), chat_text(&frame)));
            } else {
                break frame;
            }
        }
    };
    assert_eq!(terminal["payload"]["state"], "final");
    assert_eq!(chat_text(&terminal), full);
    assert_eq!(agent_texts.last().map(String::as_str), Some(full.as_str()));
    assert!(!deltas.is_empty());
    let mut previous = String::new();
    for (_, text) in &deltas {
        assert!(
            text.len() > previous.len() && full.starts_with(text.as_str()),
            "delta {text:?}"
        );
        previous = text.clone();
    }
    assert_eq!(previous, full, "held-back text is flushed before final");
    // Throttled deltas (all but the final flush) are >= 150 ms apart at the edge;
    // arrival times jitter, so check their average spacing.
    let throttled = &deltas[..deltas.len() - 1];
    if throttled.len() > 1 {
        let span = throttled[throttled.len() - 1].0 - throttled[0].0;
        let average = span / (throttled.len() as u32 - 1);
        assert!(
            average >= Duration::from_millis(100),
            "{} deltas, {average:?} apart",
            deltas.len()
        );
    }
    // Nothing else of the run follows its terminal event.
    let res = c.request("health", json!({})).await?;
    assert_eq!(res["ok"], true);
    let more = c.request("status", json!({})).await?;
    assert_eq!(more["ok"], true);
    while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
        assert_ne!(
            frame["payload"]["runId"], "thr",
            "event after the terminal one: {frame}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn edge_openclaw_abort_and_per_connection_seq_and_scopes() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::tokens(["partial ", "text"]).then_hang()).await?;
    let (mut writer, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let (mut reader, _) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.read"]).await?;
    let (mut blind, hello) = openclaw(&gw.ws_url, &gw.gateway_token, &[]).await?;
    assert_eq!(hello["auth"]["scopes"], json!([]));

    let res = writer
        .request(
            "chat.send",
            json!({"sessionKey": "ab", "message": "go", "idempotencyKey": "ab-1"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started");
    let busy = writer
        .request(
            "chat.send",
            json!({"sessionKey": "ab", "message": "go", "idempotencyKey": "ab-1"}),
        )
        .await?;
    assert_eq!(busy["payload"]["status"], "in_flight");
    let mut frames = Vec::new();
    loop {
        let frame = reader.recv().await?;
        let streamed =
            frame["event"] == "agent" && frame["payload"]["data"]["text"] == "partial text";
        frames.push(frame);
        if streamed {
            break;
        }
    }
    let res = writer
        .request("chat.abort", json!({"sessionKey": "ab"}))
        .await?;
    assert_eq!(
        res["payload"],
        json!({"ok": true, "aborted": true, "runIds": ["ab-1"]})
    );

    // Each connection numbers its own frames from 1.
    frames.extend(until_chat_terminal(&mut reader, "ab-1").await?);
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let terminal = frames
        .last()
        .map(|f| &f["payload"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(terminal["state"], "aborted");
    assert_eq!(terminal["message"]["content"][0]["text"], "partial text");
    let end = of_run(&frames, "agent", "ab-1")
        .into_iter()
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(end["payload"]["data"]["status"], "cancelled");
    assert_eq!(end["payload"]["data"]["aborted"], true);

    // A connection without operator.read sees no agent/chat events.
    let res = blind.request("health", json!({})).await?;
    assert_eq!(res["ok"], true);
    while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(300), blind.recv()).await {
        assert!(
            frame["event"] != "agent" && frame["event"] != "chat",
            "leaked: {frame}"
        );
    }
    Ok(())
}
