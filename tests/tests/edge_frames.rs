//! The edge's handling of bad input, before and after the handshake, in both
//! dialects, against the full embedded gateway (OpenClaw reference §1.4, §1.5,
//! §2.3; goclaw notes §2.2).

mod edge_support;

use std::time::Duration;

use clawgate::cli::EdgeArgs;
use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::{Closed, WsClient};
use edge_support::{gateway, gateway_with, open, openclaw, openclaw_params};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const RW: &[&str] = &["operator.read", "operator.write"];

fn closed(code: u16, reason: &str) -> Closed {
    Closed {
        code: Some(code),
        reason: reason.to_owned(),
    }
}

#[tokio::test]
async fn edge_preauth_bad_frames_close_the_socket() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;

    let mut c = open(&gw.ws_url).await?;
    c.send_text("{not json".into()).await?;
    assert_eq!(c.expect_close().await?, closed(1000, ""));

    let mut c = open(&gw.ws_url).await?;
    c.send_json(&json!({"type": "req", "id": 7, "method": "connect", "params": {}}))
        .await?;
    assert_eq!(
        c.expect_close().await?,
        closed(1008, "invalid request frame")
    );

    let mut c = open(&gw.ws_url).await?;
    c.send_json(&json!({"type": "req", "id": "1", "method": "connect", "extra": 1}))
        .await?;
    assert_eq!(
        c.expect_close().await?,
        closed(1008, "invalid request frame")
    );

    let mut c = open(&gw.ws_url).await?;
    c.send_json(&json!({"type": "event", "event": "hello"}))
        .await?;
    assert_eq!(
        c.expect_close().await?,
        closed(1008, "invalid request frame")
    );

    // A request before connect: answered, then closed (OpenClaw rules apply to
    // every client before its dialect is known, goclaw clients included).
    let mut c = open(&gw.ws_url).await?;
    let res = c.request("chat.send", json!({"message": "hi"})).await?;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        res["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(c.expect_close().await?.code, Some(1008));

    // Over 64 KiB before the handshake.
    let mut c = open(&gw.ws_url).await?;
    c.send_text(format!("{{\"pad\":\"{}\"}}", "x".repeat(65 * 1024)))
        .await?;
    assert_eq!(
        c.expect_close().await?,
        closed(1009, "preauth payload too large")
    );
    Ok(())
}

#[tokio::test]
async fn edge_openclaw_connect_refusals() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let token = gw.gateway_token.clone();

    // Missing required field, unknown field, wrong enum, wrong type.
    let mut missing = openclaw_params(&token, RW);
    missing["client"]
        .as_object_mut()
        .map(|c| c.remove("platform"));
    let mut extra = openclaw_params(&token, RW);
    extra["surprise"] = json!(true);
    let mut bad_mode = openclaw_params(&token, RW);
    bad_mode["client"]["mode"] = json!("operator");
    let mut bad_type = openclaw_params(&token, RW);
    bad_type["scopes"] = json!("operator.read");
    for params in [missing, extra, bad_mode, bad_type] {
        let mut c = open(&gw.ws_url).await?;
        let res = c.request("connect", params).await?;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        let message = res["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid connect params: "), "{message}");
        assert_eq!(c.expect_close().await?.code, Some(1008));
    }

    // Protocol mismatch closes 1002 with the expected protocol.
    let mut c = open(&gw.ws_url).await?;
    let mut params = openclaw_params(&token, RW);
    params["minProtocol"] = json!(5);
    params["maxProtocol"] = json!(5);
    let res = c.request("connect", params).await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(res["error"]["message"], "protocol mismatch");
    assert_eq!(res["error"]["details"]["expectedProtocol"], 4);
    assert_eq!(res["error"]["details"]["code"], "PROTOCOL_MISMATCH");
    assert_eq!(c.expect_close().await?, closed(1002, "protocol mismatch"));

    // Wrong and missing token: unauthorized, with the detail code, close 1008.
    let mut c = open(&gw.ws_url).await?;
    let res = c
        .request("connect", openclaw_params("not-the-token", RW))
        .await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("unauthorized"), "{message}");
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(c.expect_close().await?.code, Some(1008));

    let mut c = open(&gw.ws_url).await?;
    let mut params = openclaw_params(&token, RW);
    params.as_object_mut().map(|p| p.remove("auth"));
    let res = c.request("connect", params).await?;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_TOKEN_MISSING",
        "{res}"
    );
    assert_eq!(c.expect_close().await?.code, Some(1008));

    // Unknown role.
    let mut c = open(&gw.ws_url).await?;
    let mut params = openclaw_params(&token, RW);
    params["role"] = json!("superuser");
    let res = c.request("connect", params).await?;
    assert_eq!(res["error"]["message"], "invalid role");
    assert_eq!(c.expect_close().await?.code, Some(1008));
    Ok(())
}

#[tokio::test]
async fn edge_openclaw_postauth_bad_input_keeps_the_socket() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.read"]).await?;

    // Not JSON: ignored.
    c.send_text("garbage".into()).await?;
    let res = c.request("health", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");

    // Invalid frames are answered with the parsed id or "invalid".
    c.send_json(&json!({"type": "req", "id": "x1", "method": "health", "bogus": 1}))
        .await?;
    let res = c.response("x1").await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid request frame")
    );
    c.send_json(&json!({"type": "event", "event": "x"})).await?;
    let res = c.response("invalid").await?;
    assert_eq!(res["ok"], false);

    // Missing and mistyped params.
    let res = c.request("chat.history", json!({})).await?;
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("invalid chat.history params: "),
        "{message}"
    );
    let res = c
        .request(
            "chat.history",
            json!({"sessionKey": "main", "limit": "ten"}),
        )
        .await?;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/limit")
    );

    // Scope denial, default-deny for unlisted methods, second connect.
    let res = c
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k"}),
        )
        .await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(res["error"]["message"], "missing scope: operator.write");
    let res = c
        .request("chat.abort", json!({"sessionKey": "main"}))
        .await?;
    assert_eq!(res["error"]["message"], "missing scope: operator.write");
    // The reserved `config.` prefix needs admin, except `config.get` (read).
    let res = c.request("config.set", json!({})).await?;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    let res = c
        .request("connect", openclaw_params(&gw.gateway_token, RW))
        .await?;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");

    // Read methods work.
    let res = c.request("sessions.list", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");
    let res = c.request("status", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");

    // An admin gets "unknown method" and the second-connect message.
    let (mut admin, hello) = openclaw(&gw.ws_url, &gw.gateway_token, &["operator.admin"]).await?;
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.admin", "operator.read", "operator.write"])
    );
    let res = admin.request("no.such.method", json!({})).await?;
    assert_eq!(res["error"]["message"], "unknown method: no.such.method");
    let res = admin
        .request("connect", openclaw_params(&gw.gateway_token, RW))
        .await?;
    assert_eq!(
        res["error"]["message"],
        "connect is only valid as the first request"
    );

    // Over the post-handshake limit (1 MiB): closed 1009.
    c.send_text(format!("{{\"pad\":\"{}\"}}", "x".repeat(1100 * 1024)))
        .await?;
    assert_eq!(c.expect_close().await?.code, Some(1009));
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_errors_use_goclaw_codes() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::http_error(500)).await?;

    let mut c = open(&gw.ws_url).await?;
    let res = c
        .request("connect", json!({"token": "wrong", "user_id": "alice"}))
        .await?;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "UNAUTHORIZED", "{res}");
    assert_eq!(c.expect_close().await?.code, Some(1008));

    let mut c = WsClient::connect(&gw.ws_url).await?;
    let hello = c.goclaw_handshake(&gw.gateway_token, "alice").await?;
    assert_eq!(hello["server"]["name"], "clawgate");
    let res = c.request("teams.list", json!({})).await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(res["error"]["message"], "unknown method: teams.list");
    let res = c.request("chat.send", json!({"message": 5})).await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    c.send_text("nope".into()).await?;
    let res = c.response("").await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    c.send_json(&json!({"type": "event", "id": "e", "event": "x"}))
        .await?;
    let res = c.response("e").await?;
    assert_eq!(res["error"]["message"], "unexpected frame type");

    // A run that fails answers chat.send with an error.
    let res = c.request("chat.send", json!({"message": "hello"})).await?;
    assert_eq!(res["ok"], false, "{res}");
    let code = res["error"]["code"].as_str().unwrap_or_default();
    assert!(
        ["INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED"].contains(&code),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_handshake_timeout_closes_with_1000() -> anyhow::Result<()> {
    let edge = EdgeArgs {
        handshake_timeout_ms: 400,
        ..EdgeArgs::default()
    };
    let (gw, _model) = gateway_with(Script::text("hi"), edge).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url.as_str()).await?;
    let started = tokio::time::Instant::now();
    let mut frames = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Text(_))) => frames += 1,
            Some(Ok(_)) => {}
            other => anyhow::bail!("unexpected end: {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    assert_eq!(frames, 1, "only the challenge");
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1000));
    assert!(
        elapsed >= Duration::from_millis(350),
        "closed after {elapsed:?}"
    );
    Ok(())
}
