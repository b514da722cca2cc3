//! Backpressure at the edge against the full embedded gateway: a socket that
//! stops reading is closed as a slow consumer instead of buffering without bound,
//! and does not hold back the other sockets of the same user.

mod edge_support;

use std::time::Duration;

use clawgate::cli::EdgeArgs;
use clawgate_tests::mock_model::Script;
use edge_support::{gateway_with, openclaw};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const RW: &[&str] = &["operator.read", "operator.write"];

#[tokio::test]
async fn edge_slow_consumer_is_closed_not_buffered() -> anyhow::Result<()> {
    // Long replies: every `agent` assistant event carries the full text so far,
    // so three concurrent ~250 KB replies produce tens of MB of frames per socket,
    // far beyond the socket buffers plus the edge's per-socket bound.
    let token = format!("{} ", "x".repeat(99));
    // A small per-socket bound, so the slow socket overflows it quickly.
    let edge = EdgeArgs {
        socket_queue_bytes: 1024 * 1024,
        ..EdgeArgs::default()
    };
    let (gw, _model) = gateway_with(
        Script::tokens(std::iter::repeat_n(token, 2500)).with_delay(Duration::from_millis(1)),
        edge,
    )
    .await?;
    let (fast, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    // The slow socket: raw, never read until the runs are over.
    let (mut slow, _) = tokio_tungstenite::connect_async(gw.ws_url.as_str()).await?;
    {
        use futures_util::SinkExt;
        let _challenge = slow.next().await;
        let connect = json!({"type": "req", "id": "c", "method": "connect",
            "params": edge_support::openclaw_params(&gw.gateway_token, RW)});
        slow.send(Message::Text(connect.to_string().into())).await?;
        match slow.next().await {
            Some(Ok(Message::Text(text))) => assert!(text.contains("hello-ok"), "{text}"),
            other => anyhow::bail!("no hello-ok: {other:?}"),
        }
    }

    let mut fast = fast;
    for n in 0..3 {
        let res = fast
            .request(
                "chat.send",
                json!({"sessionKey": format!("bulk-{n}"), "message": "go", "idempotencyKey": format!("bulk-{n}")}),
            )
            .await?;
        assert_eq!(res["payload"]["status"], "started", "{res}");
    }
    let mut finished = std::collections::BTreeSet::new();
    while finished.len() < 3 {
        let frame = fast.recv().await?;
        if frame["event"] == "chat" && frame["payload"]["state"] != "delta" {
            assert_eq!(
                frame["payload"]["state"], "final",
                "the reading socket is unaffected"
            );
            finished.insert(
                frame["payload"]["runId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }

    // The slow socket must end (closed as a slow consumer) before it delivers the
    // runs' final events: the edge did not keep tens of MB queued for it.
    let mut finals = 0;
    let ending = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await? {
            Some(Ok(Message::Text(text))) => {
                if text.contains("\"state\":\"final\"") {
                    finals += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(
        finals < 3,
        "the slow socket got every final event: nothing was bounded"
    );
    // The close frame reaches the client only if it starts reading before the
    // edge's close timeout; after that the edge drops the connection.
    if let Some((code, reason)) = ending {
        assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    }
    Ok(())
}
