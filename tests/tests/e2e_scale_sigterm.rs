//! Graceful stops with the process cluster: SIGTERM on an edge (a `shutdown`
//! event with `restartExpectedMs`, close 1012, the process exits) and on a
//! runner mid-run (the run ends with a terminal event within the grace period,
//! the process exits).

use std::time::{Duration, Instant};

use clawgate_tests::cluster::{Cluster, Scale};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_edge_says_shutdown_closes_1012_and_exits() -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("hi")).await?;
    let scale = Scale {
        edge_args: [
            "--restart-expected-ms",
            "1234",
            "--drain-timeout-ms",
            "3000",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..Scale::default()
    };
    let (mut cluster, _database) = Cluster::start_fresh(&model.base_url(), 2, scale).await?;
    let token = cluster.gateway_token.clone();
    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&token).await?;
    let mut bystander = WsClient::connect(&cluster.edge_urls[1]).await?;
    bystander.openclaw_handshake(&token).await?;

    cluster.terminate("edge0").await?;
    let bye = client.event("shutdown").await?;
    assert_eq!(bye["payload"]["restartExpectedMs"], 1234, "{bye}");
    assert_eq!(bye["payload"]["reason"], "service restart");
    let closed = client.expect_close().await?;
    assert_eq!(closed.code, Some(1012), "{closed:?}");
    let status = cluster.wait_exit("edge0", Duration::from_secs(10)).await?;
    assert!(status.success(), "edge exited with {status}");
    // The other edge is untouched.
    let res = bystander.request("health", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_runner_ends_its_run_within_the_grace_and_exits() -> anyhow::Result<()> {
    let model = MockModel::start(Script::tokens(["never ", "ending "]).then_hang()).await?;
    let grace = Duration::from_millis(1_500);
    let scale = Scale {
        runner_args: vec![
            "--runner-shutdown-grace-ms".to_owned(),
            grace.as_millis().to_string(),
        ],
        ..Scale::default()
    };
    let (mut cluster, _database) = Cluster::start_fresh(&model.base_url(), 1, scale).await?;
    let token = cluster.gateway_token.clone();
    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "stay", "idempotencyKey": "graceful"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    client
        .event_where(|e| e["event"] == "agent" && e["payload"]["stream"] == "assistant")
        .await?;

    let asked = Instant::now();
    cluster.terminate("runner").await?;
    let terminal = client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == "graceful"
                && e["payload"]["state"] != "delta"
        })
        .await?;
    assert!(
        asked.elapsed() < grace + Duration::from_secs(2),
        "terminal event after {:?}",
        asked.elapsed()
    );
    let state = terminal["payload"]["state"].as_str().unwrap_or_default();
    assert!(["aborted", "final", "error"].contains(&state), "{terminal}");
    let status = cluster.wait_exit("runner", Duration::from_secs(10)).await?;
    assert!(status.success(), "runner exited with {status}");
    assert!(asked.elapsed() < grace + Duration::from_secs(5));

    // The partial reply is in the transcript.
    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 2, "{history}");
    Ok(())
}
