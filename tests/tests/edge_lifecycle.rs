//! The edge's process-level behaviour on the full embedded gateway: HTTP health
//! endpoints, `tick` events, and the goodbye on graceful shutdown.

mod edge_support;

use std::time::Duration;

use clawgate::cli::EdgeArgs;
use clawgate_tests::mock_model::Script;
use edge_support::{gateway_with, open, openclaw};
use serde_json::json;

const RW: &[&str] = &["operator.read", "operator.write"];

async fn http_get(ws_url: &str, path: &str) -> anyhow::Result<reqwest::StatusCode> {
    let base = ws_url.replacen("ws://", "http://", 1);
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    Ok(reqwest::get(url).await?.status())
}

#[tokio::test]
async fn edge_serves_liveness_and_readiness() -> anyhow::Result<()> {
    let (gw, _model) = gateway_with(Script::text("hi"), EdgeArgs::default()).await?;
    assert_eq!(http_get(&gw.ws_url, "/healthz").await?, 200);
    assert_eq!(http_get(&gw.ws_url, "/readyz").await?, 200);
    Ok(())
}

#[tokio::test]
async fn ticks_come_with_per_connection_seq_even_without_read_scope() -> anyhow::Result<()> {
    let edge = EdgeArgs {
        tick_interval_ms: 200,
        ..EdgeArgs::default()
    };
    let (gw, _model) = gateway_with(Script::text("a reply"), edge).await?;
    let (mut writer, hello) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    let (mut blind, _) = openclaw(&gw.ws_url, &gw.gateway_token, &[]).await?;
    let res = writer
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "t1"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    writer
        .event_where(|e| e["event"] == "chat" && e["payload"]["state"] == "final")
        .await?;
    // The connection without operator.read gets ticks, numbered from 1 on its own
    // counter, and none of the run's events.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = blind.recv().await?;
        assert_ne!(frame["event"], "agent", "{frame}");
        assert_ne!(frame["event"], "chat", "{frame}");
        if frame["event"] == "tick" {
            assert!(frame["payload"]["ts"].is_i64());
            seen.push(frame["seq"].as_u64().unwrap_or(0));
        }
    }
    assert_eq!(seen, vec![1, 2]);
    Ok(())
}

#[tokio::test]
async fn shutdown_sends_goodbye_and_closes_with_1012() -> anyhow::Result<()> {
    let (gw, _model) = gateway_with(Script::text("hi"), EdgeArgs::default()).await?;
    let (mut openclaw_client, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let mut goclaw_client = clawgate_tests::ws::WsClient::connect(&gw.ws_url).await?;
    goclaw_client
        .goclaw_handshake(&gw.gateway_token, "alice")
        .await?;
    let mut pending = open(&gw.ws_url).await?;

    let stop = tokio::spawn(gw.stop());
    let bye = openclaw_client.event("shutdown").await?;
    assert_eq!(bye["payload"]["reason"], "service restart");
    assert!(bye["seq"].is_u64());
    assert!(bye["payload"].get("restartExpectedMs").is_some());
    let closed = openclaw_client.expect_close().await?;
    assert_eq!(closed.code, Some(1012));
    assert_eq!(goclaw_client.event("shutdown").await?["event"], "shutdown");
    assert_eq!(goclaw_client.expect_close().await?.code, Some(1012));
    assert_eq!(pending.expect_close().await?.code, Some(1012));
    tokio::time::timeout(Duration::from_secs(15), stop).await???;
    Ok(())
}
