//! Redis unavailable, with the process cluster on a private `redis-server`: no
//! process crashes, a request that needs Redis fails with `UNAVAILABLE`, edges
//! report not ready; once Redis is back, subscriptions are restored and traffic
//! resumes without restarting anything.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions, free_addr};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::json;
use tokio::process::{Child, Command};

async fn redis_server(port: u16) -> anyhow::Result<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start redis-server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(child)
}

/// Polls `/readyz` of an edge until it answers `status` (bounded).
async fn wait_readyz(ws_url: &str, status: u16) -> anyhow::Result<()> {
    let url = format!("{}readyz", ws_url.replacen("ws://", "http://", 1));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = client.get(&url).send().await.map(|r| r.status().as_u16());
        if got.as_ref().is_ok_and(|s| *s == status) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} still answers {got:?}, expected {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_requests_then_traffic_resumes() -> anyhow::Result<()> {
    let port = free_addr()?.port();
    let mut redis = redis_server(port).await?;
    let model = MockModel::start(Script::text("before")).await?;
    let database = fresh_postgres_url().await?;
    let mut cluster = Cluster::start(ClusterOptions {
        edges: 1,
        database_url: database.url().to_owned(),
        redis_url: format!("redis://127.0.0.1:{port}"),
        model_base_url: model.base_url(),
        env: Vec::new(),
    })
    .await?;
    let token = cluster.gateway_token.clone();
    let edge = cluster.edge_urls[0].clone();
    let mut client = WsClient::connect(&edge).await?;
    client.openclaw_handshake(&token).await?;
    let send = |key: &str| json!({"sessionKey": "main", "message": "hi", "idempotencyKey": key});
    let final_of = |key: &'static str| {
        move |e: &serde_json::Value| {
            e["event"] == "chat" && e["payload"]["runId"] == key && e["payload"]["state"] == "final"
        }
    };
    let res = client.request("chat.send", send("r1")).await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    client.event_where(final_of("r1")).await?;

    // Redis goes away.
    redis.kill().await?;
    let res = client.request("chat.send", send("r2")).await?;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    wait_readyz(&edge, 503).await?;
    assert_eq!(cluster.exited(), Vec::<String>::new(), "a process died");

    // Redis is back (empty, on the same port): everything resumes by itself.
    let _redis = redis_server(port).await?;
    wait_readyz(&edge, 200).await?;
    model.set_script(Script::text("after"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    let key = loop {
        attempt += 1;
        let key: &'static str = if attempt == 1 { "r3" } else { "r3-retry" };
        let res = client.request("chat.send", send(key)).await?;
        if res["payload"]["status"] == "started" {
            break key;
        }
        // The runner's connections may still be reconnecting.
        assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
        if Instant::now() > deadline {
            bail!("chat.send still failing after Redis came back: {res}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let terminal = client.event_where(final_of(key)).await?;
    assert_eq!(
        terminal["payload"]["message"]["content"][0]["text"], "after",
        "{terminal}"
    );
    assert_eq!(cluster.exited(), Vec::<String>::new(), "a process died");
    Ok(())
}
