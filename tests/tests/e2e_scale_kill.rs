//! Failure semantics with the process cluster, SIGKILL: an edge killed
//! mid-stream (the run continues, the client reconnects to another edge and
//! gets the full text back, the final and the history), and a runner killed
//! mid-run (within the lease bound an `error` reaches watchers, the transcript
//! has an error row, the session takes the next message).

use std::time::{Duration, Instant};

use clawgate_proto::runner::RunInfo;
use clawgate_runtime::lease::{LeaseOptions, RedisRunLeases};
use clawgate_runtime::redis::Redis;
use clawgate_runtime::replay::RunRef;
use clawgate_tests::cluster::{Cluster, Scale, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

fn text_of(event: &Value) -> String {
    event["payload"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_killed_mid_stream_client_resumes_on_another_edge() -> anyhow::Result<()> {
    let tokens: Vec<String> = (0..60).map(|i| format!("w{i} ")).collect();
    let reply: String = tokens.concat();
    let model =
        MockModel::start(Script::tokens(tokens.clone()).with_delay(Duration::from_millis(50)))
            .await?;
    let (mut cluster, _database) =
        Cluster::start_fresh(&model.base_url(), 2, Scale::default()).await?;
    let token = cluster.gateway_token.clone();

    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "long one", "idempotencyKey": "survive"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    let first = client
        .event_where(|e| e["event"] == "chat" && e["payload"]["state"] == "delta")
        .await?;
    let seen = text_of(&first);
    assert!(!seen.is_empty());

    cluster.kill("edge0").await?;
    drop(client);

    // The client reconnects to the other edge; the run went on meanwhile.
    let mut client = WsClient::connect(&cluster.edge_urls[1]).await?;
    client.openclaw_handshake(&token).await?;
    let delta = client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == "survive"
                && e["payload"]["state"] == "delta"
        })
        .await?;
    let restored = text_of(&delta);
    assert!(
        restored.starts_with(&seen) && restored.len() > seen.len() && reply.starts_with(&restored),
        "the first delta after reconnecting carries the full text so far: {restored:?} (had {seen:?})"
    );
    let terminal = client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == "survive"
                && e["payload"]["state"] != "delta"
        })
        .await?;
    assert_eq!(terminal["payload"]["state"], "final", "{terminal}");
    assert_eq!(text_of(&terminal), reply);

    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[1]["content"][0]["text"], reply.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_killed_mid_run_ends_the_run_with_an_error() -> anyhow::Result<()> {
    let model = MockModel::start(Script::tokens(["partial ", "text "]).then_hang()).await?;
    let lease_ms = 1_000;
    let scale = Scale {
        runners: 2,
        runner_args: ["--run-lease-ms", "1000", "--reap-interval-ms", "200"]
            .map(str::to_owned)
            .to_vec(),
        ..Scale::default()
    };
    let (mut cluster, _database) = Cluster::start_fresh(&model.base_url(), 1, scale).await?;
    let token = cluster.gateway_token.clone();
    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "doomed", "idempotencyKey": "lost-1"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    client
        .event_where(|e| e["event"] == "agent" && e["payload"]["stream"] == "assistant")
        .await?;

    // Kill the runner that owns the run (its record names it).
    let redis = Redis::connect(&test_redis_url(), &cluster.redis_prefix).await?;
    let leases: RedisRunLeases<RunInfo> = RedisRunLeases::new(&redis, LeaseOptions::default());
    let record = leases
        .get(&RunRef::new("default", "owner", "lost-1"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no record of the run"))?;
    let killed_at = Instant::now();
    cluster.kill(&record.owner).await?;

    let terminal = client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == "lost-1"
                && e["payload"]["state"] != "delta"
        })
        .await?;
    let took = killed_at.elapsed();
    assert_eq!(terminal["payload"]["state"], "error", "{terminal}");
    assert_eq!(
        terminal["payload"]["errorKind"], "runner_lost",
        "{terminal}"
    );
    assert!(
        took < Duration::from_millis(lease_ms * 4),
        "the run ended {took:?} after its runner died"
    );

    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = history["payload"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[1]["stopReason"], "error", "{history}");

    // The session takes the next message (on the surviving runner).
    model.set_script(Script::text("back again"));
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "retry", "idempotencyKey": "lost-2"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    let terminal = client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == "lost-2"
                && e["payload"]["state"] != "delta"
        })
        .await?;
    assert_eq!(terminal["payload"]["state"], "final", "{terminal}");
    assert_eq!(text_of(&terminal), "back again");
    Ok(())
}
