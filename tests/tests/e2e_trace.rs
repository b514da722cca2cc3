//! One chat is one trace: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the edge, runner
//! and session processes export spans of one trace to the collector.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::otlp::OtlpReceiver;
use clawgate_tests::ws::WsClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_is_one_trace_across_processes() -> anyhow::Result<()> {
    let collector = OtlpReceiver::start().await?;
    let model = MockModel::start(Script::tokens(["traced ", "reply"])).await?;
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start(ClusterOptions {
        edges: 1,
        database_url: database.url().to_owned(),
        redis_url: std::env::var("CLAWGATE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        model_base_url: model.base_url(),
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
    })
    .await?;

    let mut client = WsClient::connect(&cluster.edge_urls[0]).await?;
    client.openclaw_handshake(&cluster.gateway_token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "trace me", "idempotencyKey": "traced-run"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    client
        .event_where(|e| e["event"] == "chat" && e["payload"]["state"] == "final")
        .await?;

    let wanted: BTreeSet<&str> = ["clawgate-edge", "clawgate-runner", "clawgate-session"].into();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let spans = collector.spans();
        let mut services_by_trace: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for span in &spans {
            services_by_trace
                .entry(span.trace_id.as_str())
                .or_default()
                .insert(span.service.as_str());
        }
        if services_by_trace
            .values()
            .any(|services| wanted.is_subset(services))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let names: Vec<String> = spans
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {} parent={}",
                        s.service, s.name, s.trace_id, s.parent_span_id
                    )
                })
                .collect();
            panic!(
                "no trace spans edge, runner and session; got:\n{}",
                names.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
