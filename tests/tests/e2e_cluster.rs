//! End to end with the binary started as separate OS processes: two edges, auth,
//! session and runner, against real PostgreSQL (services as the application
//! role, under row-level security) and Redis.
//!
//! Event routing across edges: a run reaches every socket of its user on any
//! edge, and every socket of an admin of its tenant (goclaw: a gateway-token
//! user who is not an owner is an admin of the default tenant), labelled with
//! the run's user; an operator of another user receives nothing of it.

use std::time::Duration;

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const REPLY: &str = "Distributed hello from the model.";

async fn terminal_chat(client: &mut WsClient, run_id: &str) -> anyhow::Result<Value> {
    client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == run_id
                && e["payload"]["state"] != "delta"
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_to_sockets_of_its_user_on_every_edge() -> anyhow::Result<()> {
    let model = MockModel::start(
        Script::tokens(["Distributed ", "hello ", "from ", "the ", "model."])
            .with_delay(Duration::from_millis(30)),
    )
    .await?;
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start(ClusterOptions {
        edges: 2,
        database_url: database.url().to_owned(),
        redis_url: test_redis_url(),
        model_base_url: model.base_url(),
        env: Vec::new(),
    })
    .await?;
    let token = cluster.gateway_token.clone();

    // Two OpenClaw sockets of the same user on different edges, and a goclaw
    // socket of that user on the second edge.
    let mut sender = WsClient::connect(&cluster.edge_urls[0]).await?;
    sender.openclaw_handshake(&token).await?;
    let mut watcher = WsClient::connect(&cluster.edge_urls[1]).await?;
    watcher.openclaw_handshake(&token).await?;
    let mut go_watcher = WsClient::connect(&cluster.edge_urls[1]).await?;
    go_watcher.goclaw_handshake(&token, "owner").await?;
    // An admin of the tenant who is another user sees the run (goclaw §2.7) ...
    let mut other_admin = WsClient::connect(&cluster.edge_urls[0]).await?;
    let hello = other_admin.goclaw_handshake(&token, "someone-else").await?;
    assert_eq!(hello["role"], "admin", "{hello}");
    // ... an operator of another user, on either edge, does not.
    let mut strangers = Vec::new();
    for url in &cluster.edge_urls {
        strangers.push(other_admin.operator_socket(url, "carol").await?);
    }

    let res = sender
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hello?", "idempotencyKey": "dist-1"}),
        )
        .await?;
    assert_eq!(
        res["payload"],
        json!({"runId": "dist-1", "status": "started"}),
        "{res}"
    );

    for client in [&mut sender, &mut watcher] {
        let terminal = terminal_chat(client, "dist-1").await?;
        assert_eq!(terminal["payload"]["state"], "final");
        assert_eq!(terminal["payload"]["message"]["content"][0]["text"], REPLY);
    }
    // The watcher saw the whole agent stream in per-run order.
    let completed = go_watcher.event("run.completed").await?;
    assert_eq!(completed["payload"]["runId"], "dist-1");
    assert_eq!(completed["payload"]["content"], REPLY);
    // So did the other admin, once, told whose run it is.
    let mut text = String::new();
    let completed = loop {
        let event = other_admin
            .event_where(|e| e["payload"]["runId"] == "dist-1")
            .await?;
        assert_eq!(event["payload"]["userId"], "owner", "{event}");
        match event["event"].as_str() {
            Some("chunk") => text.push_str(event["payload"]["content"].as_str().unwrap_or("")),
            Some("run.completed") => break event,
            _ => {}
        }
    };
    assert_eq!(completed["payload"]["content"], REPLY);
    assert_eq!(text, REPLY, "every chunk exactly once");

    // History read through the other edge has both turns.
    let history = watcher
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = history["payload"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["content"][0]["text"], "hello?");
    assert_eq!(messages[1]["content"][0]["text"], REPLY);

    // The operators received nothing of it: their next frame is their own
    // response, and no run event follows.
    for stranger in &mut strangers {
        let own = stranger
            .request("chat.history", json!({"sessionKey": "main"}))
            .await?;
        assert_eq!(own["payload"]["messages"], json!([]), "{own}");
        let leaked = tokio::time::timeout(
            Duration::from_millis(300),
            stranger.event_where(|e| {
                e["event"] == "run.completed"
                    || e["event"] == "chunk"
                    || e["event"] == "run.started"
            }),
        )
        .await;
        assert!(
            leaked.is_err(),
            "a run event reached another user's operator socket: {leaked:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goclaw_round_trip_and_abort_across_processes() -> anyhow::Result<()> {
    let model = MockModel::start(Script::tokens(["half ", "way"]).then_hang()).await?;
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start(ClusterOptions {
        edges: 2,
        database_url: database.url().to_owned(),
        redis_url: test_redis_url(),
        model_base_url: model.base_url(),
        env: Vec::new(),
    })
    .await?;
    let token = cluster.gateway_token.clone();

    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.goclaw_handshake(&token, "alice").await?;
    let mut other_edge = WsClient::connect(&cluster.edge_urls[1]).await?;
    other_edge.goclaw_handshake(&token, "alice").await?;

    let send_id = client
        .send_request(
            "chat.send",
            json!({"message": "start", "sessionKey": "agent:main:ws:direct:x"}),
        )
        .await?;
    let started = client.event("run.started").await?;
    let run_id = started["payload"]["runId"]
        .as_str()
        .expect("runId")
        .to_owned();
    // Wait for the partial text to reach the other edge, then abort from there.
    let mut text = String::new();
    while text != "half way" {
        let chunk = other_edge.event("chunk").await?;
        text.push_str(chunk["payload"]["content"].as_str().unwrap_or_default());
    }
    let abort = other_edge
        .request(
            "chat.abort",
            json!({"sessionKey": "agent:main:ws:direct:x"}),
        )
        .await?;
    assert_eq!(abort["payload"]["aborted"], true, "{abort}");
    assert_eq!(abort["payload"]["runIds"], json!([run_id]));

    let res = client.response(&send_id).await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["cancelled"], true);
    assert_eq!(res["payload"]["content"], "half way");

    let history = other_edge
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:ws:direct:x"}),
        )
        .await?;
    let messages = history["payload"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[1]["content"], "half way");
    Ok(())
}

/// Over gRPC: `health` reports each service's standard health check,
/// `models.list` and `status` come from the runner process (`ListModels`,
/// `RunnerStats`), `logs.tail` answers the edge process's own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_methods_answer_from_the_other_processes() -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("hi")).await?;
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start(ClusterOptions {
        edges: 1,
        database_url: database.url().to_owned(),
        redis_url: test_redis_url(),
        model_base_url: model.base_url(),
        env: Vec::new(),
    })
    .await?;
    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&cluster.gateway_token).await?;

    // The services may have come up after the edge: probe until they serve.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let health = loop {
        let res = client.request("health", json!({"probe": true})).await?;
        let health = res["payload"].clone();
        let serving = ["auth", "runner", "session"]
            .iter()
            .all(|s| health["services"][s]["status"] == "serving");
        if serving || tokio::time::Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    };
    for service in ["auth", "runner", "session"] {
        assert_eq!(health["services"][service]["status"], "serving", "{health}");
    }
    assert_eq!(health["ok"], true, "{health}");
    assert!(
        health["agents"][0]["sessions"]["count"].is_u64(),
        "{health}"
    );

    let res = client.request("models.list", json!({})).await?;
    assert_eq!(res["payload"]["models"][0]["id"], "mock-model", "{res}");
    let res = client.request("status", json!({})).await?;
    assert_eq!(res["payload"]["runs"]["active"], 0, "{res}");
    assert!(res["payload"]["runs"]["runnerId"].is_string(), "{res}");

    let res = client.request("logs.tail", json!({"limit": 50})).await?;
    let tail = &res["payload"];
    assert!(
        tail["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("memory:")),
        "{res}"
    );
    let lines = tail["lines"].as_array().cloned().unwrap_or_default();
    assert!(!lines.is_empty(), "the edge process logged at start: {res}");
    for line in &lines {
        let parsed: Value = serde_json::from_str(line.as_str().unwrap_or("null"))?;
        assert!(parsed["level"].is_string(), "{parsed}");
    }
    Ok(())
}
