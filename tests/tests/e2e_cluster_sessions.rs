//! Session subscriptions across edges, with the binary started as separate OS
//! processes (two edges, auth, session and runner) on PostgreSQL and Redis: a
//! client subscribed on one edge receives `sessions.changed` and
//! `session.message` for a chat sent through the other edge, an admin of the
//! tenant does too, and another user of the tenant receives none of it.

use std::time::Duration;

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

fn params(token: &str, instance: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "openclaw-tui", "version": "2026.9.6", "platform": "linux", "mode": "ui",
                   "instanceId": instance},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

async fn subscribed(url: &str, params: Value) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    let res = ws.request("sessions.subscribe", json!({})).await?;
    anyhow::ensure!(res["payload"]["subscribed"] == true, "subscribe: {res}");
    Ok(ws)
}

/// The next session event of `ws` matching `what` (`reason`, `phase` or
/// message role) for `key`.
async fn session_event(ws: &mut WsClient, key: &str, what: &str) -> anyhow::Result<Value> {
    ws.event_where(|f| {
        let p = &f["payload"];
        (f["event"] == "sessions.changed" || f["event"] == "session.message")
            && p["sessionKey"] == key
            && (p["reason"] == what || p["phase"] == what || p["message"]["role"] == what)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_reach_subscribers_on_another_edge() -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("from the runner")).await?;
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
    let (edge_a, edge_b) = (&cluster.edge_urls[0], &cluster.edge_urls[1]);

    let mut keys = WsClient::connect(edge_b).await?;
    keys.goclaw_handshake(&token, "someone").await?;
    let scopes = json!(["operator.read", "operator.write"]);
    let (_, alice_key) = keys
        .create_api_key(json!({"name": "alice", "scopes": scopes, "owner_id": "alice"}))
        .await?;
    let (_, bob_key) = keys
        .create_api_key(json!({"name": "bob", "scopes": ["operator.read"], "owner_id": "bob"}))
        .await?;

    // On edge A: alice's TUI, an admin of the tenant, and bob.
    let mut alice = subscribed(edge_a, params(&alice_key, "alice-a", &["operator.read"])).await?;
    // (A device-less TUI on the shared token would get no scopes: the admin
    // connects as the local backend client.)
    let mut admin_params = params(&token, "admin-a", &["operator.admin"]);
    admin_params["client"]["id"] = json!("gateway-client");
    admin_params["client"]["mode"] = json!("backend");
    let mut admin = subscribed(edge_a, admin_params).await?;
    let mut bob = subscribed(edge_a, params(&bob_key, "bob-a", &["operator.read"])).await?;

    // Alice chats through edge B.
    let mut writer = WsClient::connect(edge_b).await?;
    let res = writer
        .request(
            "connect",
            params(&alice_key, "alice-b", &["operator.read", "operator.write"]),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    let run_id = uuid::Uuid::new_v4().to_string();
    let res = writer
        .request(
            "chat.send",
            json!({"sessionKey": "cross", "message": "across edges", "idempotencyKey": run_id}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "chat.send failed: {res}");

    let key = "agent:main:cross";
    for watcher in [&mut alice, &mut admin] {
        let created = session_event(watcher, key, "create").await?;
        assert!(
            created["payload"]["session"]["sessionId"].is_string(),
            "{created}"
        );
        let user = session_event(watcher, key, "user").await?;
        assert_eq!(user["payload"]["message"]["content"], "across edges");
        let start = session_event(watcher, key, "start").await?;
        assert_eq!(start["payload"]["runId"], run_id);
        let reply = session_event(watcher, key, "assistant").await?;
        assert_eq!(
            reply["payload"]["message"]["content"][0]["text"],
            "from the runner"
        );
        session_event(watcher, key, "end").await?;
    }

    // A label set through edge B reaches A as a patch.
    let res = keys
        .request("sessions.patch", json!({"key": "cross", "label": "Cross"}))
        .await?;
    anyhow::ensure!(res["ok"] == true, "sessions.patch failed: {res}");
    // (goclaw's patch is the gateway user's, a session of its own: only the
    // admin, who sees the whole tenant, hears of it.)
    let patched = session_event(&mut admin, key, "patch").await?;
    assert_eq!(patched["payload"]["label"], "Cross");

    // Bob saw none of alice's sessions.
    let frames = bob.drain(Duration::from_millis(500)).await;
    let leaked: Vec<&Value> = frames
        .iter()
        .filter(|f| f["event"] == "sessions.changed" || f["event"] == "session.message")
        .collect();
    assert!(leaked.is_empty(), "bob received {leaked:?}");
    Ok(())
}
