//! Presence across edges, with the binary started as separate OS processes
//! (two edges, auth, session and runner) on PostgreSQL and Redis: a client on
//! one edge sees, in `system-presence` and in `presence` events, a client
//! connected on the other edge, and sees it leave when it disconnects.

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

fn params(token: &str, client_id: &str, mode: &str, instance: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 3,
        "maxProtocol": 3,
        "client": {"id": client_id, "version": "1.0.0", "platform": "linux", "mode": mode,
                   "instanceId": instance},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

async fn connect(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((ws, res["payload"].clone()))
}

fn instances(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["instanceId"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn system_presence(ws: &mut WsClient) -> anyhow::Result<Vec<String>> {
    let res = ws.request("system-presence", json!({})).await?;
    anyhow::ensure!(res["ok"] == true, "system-presence failed: {res}");
    Ok(instances(&res["payload"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_edge_sees_the_clients_of_another() -> anyhow::Result<()> {
    let model = MockModel::start(Script::echo()).await?;
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

    // An admin of the default tenant watches on edge A (the local backend
    // client keeps its scopes and is not listed itself).
    let (mut watcher, hello) = connect(
        edge_a,
        params(
            &token,
            "gateway-client",
            "backend",
            "watcher",
            &["operator.admin"],
        ),
    )
    .await?;
    assert_eq!(hello["snapshot"]["presence"], json!([]), "{hello}");

    // A UI client of user alice connects on edge B.
    let mut admin = WsClient::connect(edge_b).await?;
    admin.goclaw_handshake(&token, "someone").await?;
    let (_, key) = admin
        .create_api_key(json!({"name": "alice", "scopes": ["operator.read"], "owner_id": "alice"}))
        .await?;
    let (ui, hello_ui) = connect(
        edge_b,
        params(
            &key,
            "openclaw-control-ui",
            "ui",
            "ui-on-b",
            &["operator.read"],
        ),
    )
    .await?;
    assert_eq!(instances(&hello_ui["snapshot"]["presence"]), ["ui-on-b"]);

    // Edge A's watcher hears of it and lists it.
    let event = watcher
        .event_where(|e| {
            e["event"] == "presence" && instances(&e["payload"]["presence"]) == ["ui-on-b"]
        })
        .await?;
    let version = event["stateVersion"]["presence"].as_u64().expect("version");
    assert_eq!(event["payload"]["presence"][0]["user"]["id"], "alice");
    assert_eq!(system_presence(&mut watcher).await?, ["ui-on-b"]);

    // A second client on edge A is seen from edge B's side too (alice's own).
    let (mut ui_a, hello_ui_a) = connect(
        edge_a,
        params(&key, "webchat-ui", "webchat", "ui-on-a", &["operator.read"]),
    )
    .await?;
    assert_eq!(
        instances(&hello_ui_a["snapshot"]["presence"]),
        ["ui-on-a", "ui-on-b"]
    );

    // B's client leaves: the watcher is told, and the entry is gone.
    ui.close().await;
    let left = watcher
        .event_where(|e| {
            e["event"] == "presence"
                && e["payload"]["presence"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x["reason"] == "disconnect"))
        })
        .await?;
    assert!(
        left["stateVersion"]["presence"].as_u64() > Some(version),
        "{left}"
    );
    let departed: Vec<&Value> = left["payload"]["presence"]
        .as_array()
        .map(|l| l.iter().filter(|x| x["reason"] == "disconnect").collect())
        .unwrap_or_default();
    assert_eq!(departed.len(), 1, "{left}");
    assert_eq!(departed[0]["instanceId"], "ui-on-b");
    assert_eq!(system_presence(&mut watcher).await?, ["ui-on-a"]);
    assert_eq!(system_presence(&mut ui_a).await?, ["ui-on-a"]);
    Ok(())
}
