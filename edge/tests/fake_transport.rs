//! The edge end to end over real WebSockets, with scripted services behind it:
//! goclaw, backpressure, shutdown and the HTTP endpoints.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use clawgate_edge::EdgeConfig;
use clawgate_proto::pb::common::v1::{AssistantDelta, RunEvent, run_event};
use serde_json::json;
use support::{Client, TestEdge, config, publish};
use tokio::time::Instant;

const RW: &[&str] = &["operator.read", "operator.write"];

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
