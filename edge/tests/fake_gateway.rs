//! The edge end to end over real WebSockets, with scripted services behind it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use clawgate_edge::EdgeConfig;
use clawgate_proto::pb::common::v1::{AssistantDelta, RunEvent, run_event};
use serde_json::{Value, json};
use support::{Client, TOKEN, TestEdge, config, openclaw_params, publish};
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
async fn goclaw_connect_and_chat_round_trip() {
    let edge = TestEdge::start(config()).await;
    let (mut client, hello) = Client::goclaw(&edge.url, "alice").await;
    assert_eq!(hello["protocol"], 3);
    assert_eq!(hello["user_id"], "alice");
    assert_eq!(hello["role"], "admin");
    assert_eq!(hello["server"]["name"], "clawgate");

    let id = client
        .req("chat.send", json!({"message": "tokens:3:10"}))
        .await;
    let mut events = Vec::new();
    let res = loop {
        let frame = client.recv().await;
        if frame["type"] == "res" {
            break frame;
        }
        assert!(frame.get("seq").is_none(), "goclaw events carry no seq");
        events.push(frame);
    };
    assert_eq!(res["id"], id);
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["content"], "t0 t1 t2 ");
    assert_eq!(res["payload"]["usage"]["total_tokens"], 7);
    let names: Vec<&str> = events
        .iter()
        .map(|f| f["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["run.started", "chunk", "chunk", "chunk", "run.completed"]
    );
    let run_id = res["payload"]["runId"].as_str().unwrap();
    assert!(events.iter().all(|f| f["payload"]["runId"] == run_id));
    let key = events[0]["payload"]["sessionKey"].as_str().unwrap();
    assert!(key.starts_with("agent:main:ws:direct:"), "{key}");
    assert_eq!(events[1]["payload"]["content"], "t0 ");
    assert_eq!(events[4]["payload"]["content"], "t0 t1 t2 ");

    // Abort: the waiting chat.send answers cancelled with the partial text.
    let send = client
        .req("chat.send", json!({"message": "hang", "sessionKey": "s1"}))
        .await;
    let started = loop {
        let frame = client.recv().await;
        if frame["event"] == "run.started" {
            break frame;
        }
    };
    assert_eq!(started["payload"]["sessionKey"], "agent:main:s1");
    let (abort, _) = client.call("chat.abort", json!({"sessionKey": "s1"})).await;
    assert_eq!(abort["payload"]["ok"], true);
    assert_eq!(abort["payload"]["aborted"], true);
    let res = loop {
        let frame = client.recv().await;
        if frame["type"] == "res" && frame["id"] == send {
            break frame;
        }
    };
    assert_eq!(res["payload"]["cancelled"], true, "{res}");

    let (health, _) = client.call("health", json!({})).await;
    assert_eq!(health["payload"]["status"], "ok");
    assert_eq!(health["payload"]["clients"].as_array().unwrap().len(), 1);
    let (list, _) = client.call("sessions.list", json!({"limit": 5})).await;
    assert_eq!(list["payload"]["limit"], 5);
    assert_eq!(list["payload"]["total"], 1);
    let (history, _) = client
        .call("chat.history", json!({"sessionKey": "main"}))
        .await;
    assert_eq!(
        history["payload"]["messages"][0]["created_at"],
        "1970-01-01T00:00:01.000Z"
    );
    let (unknown, _) = client.call("teams.list", json!({})).await;
    assert_eq!(unknown["error"]["code"], "INVALID_REQUEST");
    assert_eq!(unknown["error"]["message"], "unknown method: teams.list");
    client.send_raw("not json".into()).await;
    let bad = client.recv().await;
    assert_eq!(
        (bad["id"].as_str(), bad["ok"].as_bool()),
        (Some(""), Some(false))
    );
    client
        .send(json!({"type": "event", "id": "e1", "event": "x"}))
        .await;
    let bad = client.recv().await;
    assert_eq!(bad["error"]["message"], "unexpected frame type");
    edge.stop().await;
}

#[tokio::test]
async fn goclaw_role_denial() {
    let edge = TestEdge::start(config()).await;
    let (mut client, hello) = Client::goclaw(&edge.url, "viewer-bob").await;
    assert_eq!(hello["role"], "viewer");
    let (res, _) = client.call("chat.send", json!({"message": "hi"})).await;
    assert_eq!(res["error"]["code"], "UNAUTHORIZED");
    assert_eq!(res["error"]["message"], "chat.send requires operator role");
    let (res, _) = client.call("chat.history", json!({})).await;
    assert_eq!(res["payload"]["messages"], json!([]));
    edge.stop().await;
}

#[tokio::test]
async fn goclaw_wrong_token_is_refused() {
    let edge = TestEdge::start(config()).await;
    let mut client = Client::open(&edge.url).await;
    client.recv().await;
    let (res, _) = client
        .call("connect", json!({"token": "wrong", "user_id": "a"}))
        .await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "UNAUTHORIZED");
    assert_eq!(client.closed().await.map(|c| c.0), Some(1008));
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

#[tokio::test]
async fn slow_consumer_is_closed_and_bounded() {
    let mut cfg = config();
    cfg.socket_queue_bytes = 256 * 1024;
    let edge = TestEdge::start(cfg).await;
    let (mut slow, _) = Client::openclaw(&edge.url, RW).await;
    let (mut fast, _) = Client::openclaw(&edge.url, RW).await;
    let reader = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut count = 0usize;
        while count < 1500 {
            match fast.ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    if text.contains("\"stream\":\"assistant\"") {
                        count += 1;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("fast reader lost its socket: {other:?}"),
            }
        }
        count
    });
    // 1500 runs with an 8 KiB delta each (an agent frame and a chat delta per
    // run): far beyond the socket buffers plus the queue bound.
    let delta = "x".repeat(8 * 1024);
    for n in 0..1500u64 {
        let event = RunEvent {
            tenant_id: "default".into(),
            user_id: "owner".into(),
            session_key: "agent:main:main".into(),
            run_id: format!("bulk-{n}"),
            seq: 2,
            kind: Some(run_event::Kind::Assistant(AssistantDelta {
                delta: delta.clone(),
                offset: 0,
            })),
            ..Default::default()
        };
        publish(edge.bus.as_ref(), event).await;
        if n % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(
        reader.await.unwrap(),
        1500,
        "a fast socket is not held back"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slow.closed().await, Some((1008, "slow consumer".into())));
    let deadline = Instant::now() + Duration::from_secs(3);
    // The fast client was dropped with its reader task; both sockets end.
    while edge.edge.live_sockets() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.edge.live_sockets(), 0, "the slow socket is gone");
    edge.stop().await;
}

#[tokio::test]
async fn shutdown_says_goodbye() {
    let edge = TestEdge::start(config()).await;
    let (mut openclaw, _) = Client::openclaw(&edge.url, RW).await;
    let (mut goclaw, _) = Client::goclaw(&edge.url, "alice").await;
    let mut pending = Client::open(&edge.url).await;
    pending.recv().await;
    edge.edge.begin_shutdown();
    let bye = openclaw.recv_no_tick().await;
    assert_eq!(bye["event"], "shutdown");
    assert_eq!(bye["payload"]["reason"], "service restart");
    assert!(bye["seq"].is_u64());
    assert_eq!(
        openclaw.closed().await,
        Some((1012, "service restart".into()))
    );
    assert_eq!(goclaw.recv().await["event"], "shutdown");
    assert_eq!(goclaw.closed().await.map(|c| c.0), Some(1012));
    assert_eq!(pending.closed().await.map(|c| c.0), Some(1012));
    edge.stop().await;
}

#[tokio::test]
async fn http_endpoints() {
    let edge = TestEdge::start(config()).await;
    let base = edge
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    let get = |path: &'static str| {
        let base = base.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(&base).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut body = String::new();
            stream.read_to_string(&mut body).await.unwrap();
            body
        }
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    let _ = EdgeConfig::default();
    edge.stop().await;
}
