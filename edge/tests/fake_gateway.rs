//! The edge end to end over real WebSockets, with scripted services behind it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, TOKEN, TestEdge, config, openclaw_params};
use tokio::time::Instant;

const RW: &[&str] = &["operator.read", "operator.write"];

fn run_frames<'a>(frames: &'a [Value], event: &str, run_id: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["event"] == event && f["payload"]["runId"] == run_id)
        .collect()
}

/// Reads frames until the terminal `chat` event of `run_id`.
async fn until_chat_terminal(client: &mut Client, run_id: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_no_tick().await;
        let done = frame["event"] == "chat"
            && frame["payload"]["runId"] == run_id
            && frame["payload"]["state"] != "delta";
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

#[tokio::test]
async fn openclaw_connect_and_chat_round_trip() {
    let edge = TestEdge::start(config()).await;
    let mut client = Client::open(&edge.url).await;
    let challenge = client.recv().await;
    assert_eq!(challenge["event"], "connect.challenge");
    assert!(challenge.get("seq").is_none());
    let nonce = challenge["payload"]["nonce"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(nonce).unwrap().get_version_num(), 4);
    assert!(challenge["payload"]["ts"].is_i64());

    let scopes = ["operator.write"];
    let (res, _) = client
        .call("connect", openclaw_params(TOKEN, &scopes))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let hello = &res["payload"];
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 3);
    assert_eq!(hello["server"]["version"], "test");
    assert!(hello["server"]["connId"].is_string());
    assert_eq!(
        hello["features"]["methods"],
        json!([
            "health",
            "status",
            "chat.send",
            "chat.history",
            "chat.abort",
            "sessions.list"
        ])
    );
    assert_eq!(hello["auth"]["role"], "operator");
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert_eq!(hello["policy"]["maxPayload"], 1024 * 1024);
    assert_eq!(hello["policy"]["tickIntervalMs"], 30_000);
    assert_eq!(
        hello["snapshot"]["sessionDefaults"]["mainSessionKey"],
        "agent:main:main"
    );

    let (ack, before) = client
        .call(
            "chat.send",
            json!({"sessionKey": "Main", "message": "tokens:5:10", "idempotencyKey": "run-a"}),
        )
        .await;
    assert!(
        before.is_empty(),
        "events of the run came before its ack: {before:?}"
    );
    assert_eq!(
        ack["payload"],
        json!({"runId": "run-a", "status": "started"})
    );

    let frames = until_chat_terminal(&mut client, "run-a").await;
    let agent = run_frames(&frames, "agent", "run-a");
    assert_eq!(agent[0]["payload"]["stream"], "lifecycle");
    assert_eq!(agent[0]["payload"]["data"]["phase"], "start");
    assert_eq!(agent[0]["payload"]["sessionKey"], "agent:main:main");
    let assistant: Vec<&Value> = agent
        .iter()
        .copied()
        .filter(|f| f["payload"]["stream"] == "assistant")
        .collect();
    assert_eq!(assistant.len(), 5);
    assert_eq!(assistant[4]["payload"]["data"]["text"], "t0 t1 t2 t3 t4 ");
    assert_eq!(assistant[4]["payload"]["data"]["delta"], "t4 ");
    let chat = run_frames(&frames, "chat", "run-a");
    let terminal: Vec<&&Value> = chat
        .iter()
        .filter(|f| f["payload"]["state"] != "delta")
        .collect();
    assert_eq!(terminal.len(), 1);
    let fin = &terminal[0]["payload"];
    assert_eq!(fin["state"], "final");
    assert_eq!(fin["message"]["content"][0]["text"], "t0 t1 t2 t3 t4 ");
    assert_eq!(fin["message"]["role"], "assistant");
    for delta in chat.iter().filter(|f| f["payload"]["state"] == "delta") {
        let text = delta["payload"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            "t0 t1 t2 t3 t4 ".starts_with(text),
            "delta is not a prefix: {text}"
        );
    }
    // Frame seq: contiguous from 1 over broadcast events.
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // A repeated key after the end answers "ok"; chat.history works.
    let (again, _) = client
        .call(
            "chat.send",
            json!({"sessionKey": "main", "message": "x", "idempotencyKey": "run-a"}),
        )
        .await;
    assert_eq!(again["payload"], json!({"runId": "run-a", "status": "ok"}));
    let (history, _) = client
        .call("chat.history", json!({"sessionKey": "main"}))
        .await;
    assert_eq!(history["payload"]["sessionKey"], "agent:main:main");
    assert_eq!(
        history["payload"]["messages"][1]["content"][0]["text"],
        "hello"
    );
    let (sessions, _) = client.call("sessions.list", json!({})).await;
    assert_eq!(sessions["payload"]["sessions"][0]["key"], "agent:main:main");
    let (status, _) = client.call("status", json!({})).await;
    assert_eq!(status["ok"], true, "{status}");
    edge.stop().await;
}

#[tokio::test]
async fn preauth_bad_input() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_millis(300);
    let edge = TestEdge::start(cfg).await;
    let url = edge.url.clone();
    let fresh = || async {
        let mut client = Client::open(&url).await;
        client.recv().await;
        client
    };

    let mut c = fresh().await;
    c.send_raw("{oops".into()).await;
    assert_eq!(c.closed().await, Some((1000, String::new())));

    let mut c = fresh().await;
    c.send(json!({"type": "req", "id": 1, "method": "connect"}))
        .await;
    assert_eq!(
        c.closed().await,
        Some((1008, "invalid request frame".into()))
    );

    let mut c = fresh().await;
    c.send(json!({"type": "event", "event": "x"})).await;
    assert_eq!(
        c.closed().await,
        Some((1008, "invalid request frame".into()))
    );

    let mut c = fresh().await;
    let (res, _) = c.call("health", json!({})).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        res["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(c.closed().await.map(|c| c.0), Some(1008));

    let mut c = fresh().await;
    c.send_raw(format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024)))
        .await;
    assert_eq!(
        c.closed().await,
        Some((1009, "preauth payload too large".into()))
    );

    let mut c = fresh().await;
    let mut params = openclaw_params(TOKEN, RW);
    params["client"]["id"] = json!("nope");
    let (res, _) = c.call("connect", params).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    let message = res["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("invalid connect params: "), "{message}");
    assert_eq!(c.closed().await.map(|c| c.0), Some(1008));

    let mut c = fresh().await;
    let mut params = openclaw_params(TOKEN, RW);
    params["minProtocol"] = json!(4);
    params["maxProtocol"] = json!(4);
    let (res, _) = c.call("connect", params).await;
    assert_eq!(res["error"]["message"], "protocol mismatch");
    assert_eq!(res["error"]["details"]["expectedProtocol"], 3);
    assert_eq!(c.closed().await, Some((1002, "protocol mismatch".into())));

    let mut c = fresh().await;
    let (res, _) = c.call("connect", openclaw_params("wrong", RW)).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized: ")
    );
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(c.closed().await.map(|c| c.0), Some(1008));

    let mut c = fresh().await;
    let mut params = openclaw_params(TOKEN, RW);
    params["role"] = json!("king");
    let (res, _) = c.call("connect", params).await;
    assert_eq!(res["error"]["message"], "invalid role");

    let started = Instant::now();
    let mut c = fresh().await;
    assert_eq!(c.closed().await, Some((1000, String::new())));
    assert!(started.elapsed() < Duration::from_secs(3));
    edge.stop().await;
}

#[tokio::test]
async fn postauth_bad_input() {
    let mut cfg = config();
    cfg.max_payload_bytes = 128 * 1024;
    let edge = TestEdge::start(cfg).await;
    let (mut c, _) = Client::openclaw(&edge.url, &["operator.read"]).await;
    c.send_raw("not json".into()).await;
    let (res, before) = c.call("health", json!({})).await;
    assert!(before.is_empty());
    assert_eq!(res["payload"]["ok"], true);

    c.send(json!({"type": "req", "id": "x1", "method": "health", "extra": true}))
        .await;
    let res = c.recv().await;
    assert_eq!(res["id"], "x1");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request frame: ")
    );
    c.send(json!({"type": "res", "ok": true})).await;
    assert_eq!(c.recv().await["id"], "invalid");

    let (res, _) = c
        .call(
            "chat.send",
            json!({"sessionKey": "main", "message": "x", "idempotencyKey": "k"}),
        )
        .await;
    assert_eq!(res["error"]["message"], "missing scope: operator.write");
    let (res, _) = c.call("no.such", json!({})).await;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    let (res, _) = c.call("connect", openclaw_params(TOKEN, RW)).await;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    let (res, _) = c.call("chat.history", json!({"sessionKey": 5})).await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid chat.history params: ")
    );
    let (res, _) = c.call("chat.history", json!({})).await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sessionKey")
    );

    let (mut admin, _) = Client::openclaw(&edge.url, &["operator.admin"]).await;
    let (res, _) = admin.call("no.such", json!({})).await;
    assert_eq!(res["error"]["message"], "unknown method: no.such");
    let (res, _) = admin.call("connect", openclaw_params(TOKEN, RW)).await;
    assert_eq!(
        res["error"]["message"],
        "connect is only valid as the first request"
    );
    let (res, _) = admin
        .call("chat.send", json!({"sessionKey": "main", "message": "hi"}))
        .await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid chat.send params: ")
    );

    // 100 KiB is fine after the handshake, 200 KiB is over max_payload.
    let big = json!({"type": "req", "id": "big", "method": "health", "params": {"pad": "x".repeat(100 * 1024)}});
    c.send(big).await;
    assert_eq!(c.recv().await["id"], "big");
    c.send_raw(format!("{{\"pad\":\"{}\"}}", "x".repeat(200 * 1024)))
        .await;
    assert_eq!(c.closed().await.map(|c| c.0), Some(1009));
    edge.stop().await;
}

#[tokio::test]
async fn chat_deltas_are_throttled_and_full_text() {
    let edge = TestEdge::start(config()).await;
    let (mut c, _) = Client::openclaw(&edge.url, RW).await;
    let (ack, _) = c
        .call(
            "chat.send",
            json!({"sessionKey": "main", "message": "tokens:40:10", "idempotencyKey": "th"}),
        )
        .await;
    assert_eq!(ack["payload"]["status"], "started");
    let mut deltas = Vec::new();
    let mut terminals = Vec::new();
    loop {
        let frame = c.recv_no_tick().await;
        if frame["event"] != "chat" {
            continue;
        }
        let text = frame["payload"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if frame["payload"]["state"] == "delta" {
            deltas.push((Instant::now(), text));
        } else {
            terminals.push(frame);
            break;
        }
    }
    let full: String = (0..40).map(|k| format!("t{k} ")).collect();
    assert_eq!(
        terminals[0]["payload"]["message"]["content"][0]["text"],
        full.as_str()
    );
    assert!(
        deltas.len() >= 2 && deltas.len() <= 6,
        "{} deltas for ~400 ms",
        deltas.len()
    );
    for pair in deltas.windows(2) {
        assert!(pair[1].1.len() > pair[0].1.len(), "full text grows");
        assert!(full.starts_with(&pair[1].1));
    }
    // The last delta before final is the flushed full text.
    assert_eq!(deltas.last().unwrap().1, full);
    // Spacing of the throttled deltas (all but the final flush): the edge keeps
    // 150 ms between them; arrival times jitter, so check the average.
    let throttled = &deltas[..deltas.len() - 1];
    if throttled.len() > 1 {
        let span = throttled[throttled.len() - 1].0 - throttled[0].0;
        let average = span / (throttled.len() as u32 - 1);
        assert!(
            average >= Duration::from_millis(100),
            "deltas {average:?} apart on average"
        );
    }
    // Exactly one terminal event: nothing else for the run arrives.
    let (res, extra) = c.call("health", json!({})).await;
    assert_eq!(res["ok"], true);
    assert!(
        extra.iter().all(|f| f["payload"]["runId"] != "th"),
        "{extra:?}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn abort_and_stop_word_and_runs_outlive_sockets() {
    let edge = TestEdge::start(config()).await;
    let (mut watcher, _) = Client::openclaw(&edge.url, &["operator.read"]).await;
    let (mut c, _) = Client::openclaw(&edge.url, RW).await;
    c.call(
        "chat.send",
        json!({"sessionKey": "s", "message": "hang", "idempotencyKey": "h1"}),
    )
    .await;
    let (stop, _) = c
        .call(
            "chat.send",
            json!({"sessionKey": "s", "message": "stop", "idempotencyKey": "stop1"}),
        )
        .await;
    assert_eq!(
        stop["payload"],
        json!({"ok": true, "aborted": true, "runIds": ["h1"]})
    );
    let frames = until_chat_terminal(&mut c, "h1").await;
    let last = &frames.last().unwrap()["payload"];
    assert_eq!(last["state"], "aborted");
    assert_eq!(last["stopReason"], "rpc");
    let end = run_frames(&frames, "agent", "h1")
        .into_iter()
        .last()
        .unwrap();
    assert_eq!(end["payload"]["data"]["status"], "cancelled");

    // A run started on a socket that then closes still finishes for the others.
    c.call(
        "chat.send",
        json!({"sessionKey": "s", "message": "tokens:3:30", "idempotencyKey": "h2"}),
    )
    .await;
    c.ws.close(None).await.unwrap();
    let frames = until_chat_terminal(&mut watcher, "h2").await;
    assert_eq!(frames.last().unwrap()["payload"]["state"], "final");
    let (abort, _) = watcher.call("chat.abort", json!({"sessionKey": "s"})).await;
    assert_eq!(abort["error"]["message"], "missing scope: operator.write");
    edge.stop().await;
}

#[tokio::test]
async fn per_connection_seq_ticks_and_scope_filtering() {
    let mut cfg = config();
    cfg.tick_interval = Duration::from_millis(200);
    let edge = TestEdge::start(cfg).await;
    let (mut first, hello) = Client::openclaw(&edge.url, RW).await;
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    first
        .call(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "p1"}),
        )
        .await;
    until_chat_terminal(&mut first, "p1").await;
    let (mut second, _) = Client::openclaw(&edge.url, &["operator.read"]).await;
    let (mut blind, _) = Client::openclaw(&edge.url, &[]).await;
    first
        .call(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "p2"}),
        )
        .await;
    let frames = until_chat_terminal(&mut second, "p2").await;
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs[0], 1, "each connection counts from 1");
    let tick = loop {
        let frame = blind.recv().await;
        assert_ne!(frame["event"], "agent", "no read scope, no agent events");
        assert_ne!(frame["event"], "chat", "no read scope, no chat events");
        if frame["event"] == "tick" {
            break frame;
        }
    };
    assert_eq!(tick["seq"], 1);
    assert!(tick["payload"]["ts"].is_i64());
    edge.stop().await;
}
