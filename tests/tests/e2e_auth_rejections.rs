//! Every way an OpenClaw connect or call is refused, one test each, with the
//! error code, `details.code` and close code of the reference (§1.4, §1.5, §2.3,
//! §3.3, §3.5, §4, §8.4). Devices are approved by loopback auto-approval (the
//! production default) unless a test says otherwise.

mod auth_support;

use std::time::Duration;

use auth_support::{
    assert_device_rejected, assert_rejected, backend_admin, connect, connect_ok, device_token,
    gateway, operator, paired,
};
use clawgate::cli::EdgeArgs;
use clawgate_tests::gateway::{AuthOptions, GatewayOptions, LockoutOptions, TestGateway};
use clawgate_tests::openclaw_device::{
    ConnectSpec, DeviceIdentity, PayloadVersion, challenge_nonce, now_ms,
};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

/// A paired device with `scopes`; returns it and its device token.
async fn approved_device(
    gw: &TestGateway,
    scopes: &[&str],
) -> anyhow::Result<(DeviceIdentity, String)> {
    let identity = DeviceIdentity::generate();
    let spec = operator(scopes, &gw.gateway_token);
    let (ws, hello) = paired(&gw.ws_url, &gw.gateway_token, &identity, &spec).await?;
    ws.close().await;
    Ok((identity, device_token(&hello)))
}

/// Opens a socket, reads the challenge and sends `params(nonce)` as `connect`.
async fn send_connect(
    url: &str,
    params: impl FnOnce(&str) -> Value,
) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let res = ws.request("connect", params(&nonce)).await?;
    Ok((ws, res))
}

#[tokio::test]
async fn reject_wrong_shared_token() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let spec = operator(&["operator.read"], "not-the-token");
    let (mut ws, res) = connect(&gw.ws_url, &DeviceIdentity::generate(), &spec).await?;
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("unauthorized"), "{res}");
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_TOKEN_MISMATCH"),
        1008,
    )
    .await
}

#[tokio::test]
async fn reject_wrong_device_token() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (identity, token) = approved_device(&gw, &["operator.read"]).await?;
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let spec = ConnectSpec::operator(&["operator.read"]).with_device_token(&wrong);
    let (mut ws, res) = connect(&gw.ws_url, &identity, &spec).await?;
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_DEVICE_TOKEN_MISMATCH"),
        1008,
    )
    .await
}

/// `device.token.rotate` closes that device's live sockets with 4001; the old
/// token is refused afterwards, and the device gets a new one on its next connect.
#[tokio::test]
async fn reject_rotated_device_token_and_disconnect_live_sockets() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (url, shared) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let scopes = ["operator.read"];
    let (identity, old) = approved_device(&gw, &scopes).await?;
    let by_token = ConnectSpec::operator(&scopes).with_device_token(&old);
    let (mut live_token, _) = connect_ok(url, &identity, &by_token).await?;
    let (mut live_shared, _) = connect_ok(url, &identity, &operator(&scopes, shared)).await?;
    let (mut bystander, _) = paired(
        url,
        shared,
        &DeviceIdentity::generate(),
        &operator(&scopes, shared),
    )
    .await?;

    let (mut admin, _) = backend_admin(url, shared).await?;
    let res = admin
        .request(
            "device.token.rotate",
            json!({"deviceId": identity.device_id(), "role": "operator"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["deviceId"],
        identity.device_id().as_str(),
        "{res}"
    );
    assert_eq!(res["payload"]["role"], "operator", "{res}");
    assert!(res["payload"]["rotatedAtMs"].is_u64(), "{res}");
    assert!(
        res["payload"].get("token").is_none(),
        "the token is echoed only to the device itself: {res}"
    );
    for ws in [&mut live_token, &mut live_shared] {
        assert_eq!(ws.expect_close().await?.code, Some(4001));
    }
    assert_eq!(bystander.request("health", json!({})).await?["ok"], true);

    let (mut ws, res) = connect(url, &identity, &by_token).await?;
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_DEVICE_TOKEN_MISMATCH"),
        1008,
    )
    .await?;
    let (_ws, hello) = connect_ok(url, &identity, &operator(&scopes, shared)).await?;
    let new = device_token(&hello);
    assert_ne!(new, old, "rotation mints a new token");
    connect_ok(
        url,
        &identity,
        &ConnectSpec::operator(&scopes).with_device_token(&new),
    )
    .await?;
    Ok(())
}

/// `device.token.revoke` closes the live socket with 4001 and the token is refused.
#[tokio::test]
async fn reject_revoked_device_token_and_disconnect_live_socket() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (url, shared) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let scopes = ["operator.read"];
    let (identity, token) = approved_device(&gw, &scopes).await?;
    let by_token = ConnectSpec::operator(&scopes).with_device_token(&token);
    let (mut live, _) = connect_ok(url, &identity, &by_token).await?;

    let (mut admin, _) = backend_admin(url, shared).await?;
    let res = admin
        .request(
            "device.token.revoke",
            json!({"deviceId": identity.device_id(), "role": "operator"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["deviceId"],
        identity.device_id().as_str(),
        "{res}"
    );
    assert_eq!(res["payload"]["role"], "operator", "{res}");
    assert!(res["payload"]["revokedAtMs"].is_u64(), "{res}");
    assert_eq!(live.expect_close().await?.code, Some(4001));

    let (mut ws, res) = connect(url, &identity, &by_token).await?;
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_DEVICE_TOKEN_MISMATCH"),
        1008,
    )
    .await
}

#[tokio::test]
async fn reject_bad_signature() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let (mut ws, res) = send_connect(&gw.ws_url, |nonce| {
        let mut params = spec.params(&identity, nonce);
        // A valid signature, but over another nonce.
        let other = spec.params(&identity, "00000000-0000-4000-8000-000000000000");
        params["device"]["signature"] = other["device"]["signature"].clone();
        params
    })
    .await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "device-signature",
        "device signature invalid",
    )
    .await
}

#[tokio::test]
async fn reject_wrong_key_for_device_id() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let other = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let (mut ws, res) = send_connect(&gw.ws_url, |nonce| {
        let mut params = spec.params(&identity, nonce);
        params["device"]["id"] = json!(other.device_id());
        params
    })
    .await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        "device-id-mismatch",
        "device identity mismatch",
    )
    .await
}

async fn stale_signed_at(offset_ms: i64) -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let signed_at = now_ms().saturating_add_signed(offset_ms);
    let (mut ws, res) = send_connect(&gw.ws_url, |nonce| {
        spec.params_signed_at(&identity, nonce, signed_at)
    })
    .await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_SIGNATURE_EXPIRED",
        "device-signature-stale",
        "device signature expired",
    )
    .await
}

#[tokio::test]
async fn reject_signed_at_too_old() -> anyhow::Result<()> {
    stale_signed_at(-125_000).await
}

#[tokio::test]
async fn reject_signed_at_in_the_future() -> anyhow::Result<()> {
    stale_signed_at(125_000).await
}

/// Control for the two above: ±100 s is within the 120 s skew.
#[tokio::test]
async fn accept_signed_at_within_skew() -> anyhow::Result<()> {
    let gw = gateway().await?;
    for offset in [-100_000_i64, 100_000] {
        let identity = DeviceIdentity::generate();
        let spec = operator(&["operator.read"], &gw.gateway_token);
        paired(&gw.ws_url, &gw.gateway_token, &identity, &spec)
            .await?
            .0
            .close()
            .await;
        let signed_at = now_ms().saturating_add_signed(offset);
        let (_ws, res) = send_connect(&gw.ws_url, |nonce| {
            spec.params_signed_at(&identity, nonce, signed_at)
        })
        .await?;
        assert_eq!(res["ok"], true, "offset {offset}: {res}");
    }
    Ok(())
}

/// A blank nonce passes the schema (non-empty string) but is refused as missing
/// (the reference server trims it).
#[tokio::test]
async fn reject_missing_nonce() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let (mut ws, res) = send_connect(&gw.ws_url, |_| spec.params(&identity, "   ")).await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_NONCE_REQUIRED",
        "device-nonce-missing",
        "device nonce required",
    )
    .await
}

/// `device.nonce` is a required non-empty string of the connect schema (late
/// v3): without it, or empty, the params are invalid.
#[tokio::test]
async fn reject_device_without_nonce_field() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    for empty in [false, true] {
        let (mut ws, res) = send_connect(&gw.ws_url, |nonce| {
            if empty {
                return spec.params(&identity, "");
            }
            let mut params = spec.params(&identity, nonce);
            if let Some(device) = params["device"].as_object_mut() {
                device.remove("nonce");
            }
            params
        })
        .await?;
        let message = res["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid connect params"), "{res}");
        assert_rejected(&mut ws, &res, "INVALID_REQUEST", None, 1008).await?;
    }
    Ok(())
}

/// A nonce of an earlier socket (whose connect succeeded) is never accepted again.
#[tokio::test]
async fn reject_replayed_nonce() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    paired(&gw.ws_url, &gw.gateway_token, &identity, &spec)
        .await?
        .0
        .close()
        .await;
    let mut first = WsClient::connect(&gw.ws_url).await?;
    let old_nonce = challenge_nonce(&mut first).await?;
    let res = first
        .request("connect", spec.params(&identity, &old_nonce))
        .await?;
    assert_eq!(res["ok"], true, "{res}");

    let (mut ws, res) = send_connect(&gw.ws_url, |nonce| {
        assert_ne!(nonce, old_nonce, "every socket gets a fresh nonce");
        spec.params(&identity, &old_nonce)
    })
    .await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_NONCE_MISMATCH",
        "device-nonce-mismatch",
        "device nonce mismatch",
    )
    .await
}

/// Late v3 refuses the nonce-less v1 payload.
#[tokio::test]
async fn reject_v1_payload() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec =
        operator(&["operator.read"], &gw.gateway_token).with_payload_version(PayloadVersion::V1);
    let (mut ws, res) = send_connect(&gw.ws_url, |nonce| spec.params(&identity, nonce)).await?;
    assert_device_rejected(
        &mut ws,
        &res,
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "device-signature",
        "device signature invalid",
    )
    .await
}

/// A range that meets neither 3 nor 4 ⇒ `protocol mismatch` in the shape of
/// the version asked for (v4: `details.code: "PROTOCOL_MISMATCH"` and the
/// client's range; older: `expectedProtocol: 3` only), close 1002; a range
/// that includes 3 or 4 connects at the highest of them.
#[tokio::test]
async fn reject_protocol_mismatch() -> anyhow::Result<()> {
    let gw = gateway().await?;
    for (min, max) in [(5, 6), (1, 2)] {
        let identity = DeviceIdentity::generate();
        let spec = operator(&["operator.read"], &gw.gateway_token).with_protocol(min, max);
        let (mut ws, res) = send_connect(&gw.ws_url, |nonce| spec.params(&identity, nonce)).await?;
        assert_eq!(res["ok"], false, "{min}..{max}: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        assert_eq!(res["error"]["message"], "protocol mismatch", "{res}");
        let details = &res["error"]["details"];
        if max >= 4 {
            assert_eq!(
                details,
                &serde_json::json!({
                    "code": "PROTOCOL_MISMATCH",
                    "clientMinProtocol": min,
                    "clientMaxProtocol": max,
                    "expectedProtocol": 4,
                    "minimumProbeProtocol": 3,
                }),
                "{res}"
            );
        } else {
            assert_eq!(
                details,
                &serde_json::json!({ "expectedProtocol": 3 }),
                "{res}"
            );
        }
        let closed = ws.expect_close().await?;
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (Some(1002), "protocol mismatch")
        );
    }
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    paired(&gw.ws_url, &gw.gateway_token, &identity, &spec)
        .await?
        .0
        .close()
        .await;
    for ((min, max), expected) in [((3, 4), 4), ((4, 4), 4), ((3, 3), 3)] {
        let (_ws, hello) =
            connect_ok(&gw.ws_url, &identity, &spec.clone().with_protocol(min, max)).await?;
        assert_eq!(hello["protocol"], expected, "{min}..{max}");
    }
    Ok(())
}

/// No connect within the handshake timeout: close 1000 and no response.
#[tokio::test]
async fn reject_handshake_timeout() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions {
        edge: EdgeArgs {
            handshake_timeout_ms: 300,
            ..EdgeArgs::default()
        },
        ..GatewayOptions::default()
    })
    .await?;
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    challenge_nonce(&mut ws).await?;
    let frames = ws.drain(Duration::from_millis(100)).await;
    assert!(frames.iter().all(|f| f["type"] != "res"), "{frames:?}");
    assert_eq!(ws.expect_close().await?.code, Some(1000));
    Ok(())
}

/// A pre-handshake frame over 64 KiB: close 1009 `preauth payload too large`.
#[tokio::test]
async fn reject_oversized_preauth_frame() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let mut params = spec.params(&identity, &nonce);
    params["userAgent"] = json!("x".repeat(70 * 1024));
    ws.send_json(&json!({"type": "req", "id": "big", "method": "connect", "params": params}))
        .await?;
    let closed = ws.expect_close().await?;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1009), "preauth payload too large")
    );
    Ok(())
}

/// A method outside the granted scopes: `missing scope: …`; the socket stays open.
#[tokio::test]
async fn reject_method_outside_granted_scopes() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let identity = DeviceIdentity::generate();
    let (mut ws, _) = paired(&gw.ws_url, &gw.gateway_token, &identity, &spec).await?;
    let res = ws
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "scope-1"}),
        )
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(
        res["error"]["message"], "missing scope: operator.write",
        "{res}"
    );
    let res = ws.request("device.pair.list", json!({})).await?;
    assert_eq!(
        res["error"]["message"], "missing scope: operator.pairing",
        "{res}"
    );
    let res = ws.request("sessions.list", json!({})).await?;
    assert_eq!(res["ok"], true, "read is granted: {res}");
    Ok(())
}

/// A node-role connection calling an operator method: `unauthorized role: node`.
#[tokio::test]
async fn reject_node_calling_operator_method() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let spec = ConnectSpec::node().with_token(&gw.gateway_token);
    let identity = DeviceIdentity::generate();
    let (mut ws, hello) = paired(&gw.ws_url, &gw.gateway_token, &identity, &spec).await?;
    assert_eq!(hello["auth"]["role"], "node", "{hello}");
    assert_eq!(hello["auth"]["scopes"], json!([]), "{hello}");
    for method in ["chat.send", "sessions.list"] {
        let res = ws.request(method, json!({})).await?;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        assert_eq!(res["error"]["message"], "unauthorized role: node", "{res}");
    }
    assert_eq!(ws.request("health", json!({})).await?["ok"], true);
    Ok(())
}

/// 10 failures in the window lock the client out (`AUTH_RATE_LIMITED`, even with
/// the right token) until the lockout ends.
///
/// Needs the lockout flags (loopback counted, short lockout).
#[tokio::test]
async fn reject_after_repeated_failures_until_lockout_expires() -> anyhow::Result<()> {
    let lockout = Duration::from_millis(2000);
    let gw = TestGateway::start(GatewayOptions {
        auth: AuthOptions {
            lockout: Some(LockoutOptions {
                max_failures: 10,
                window_ms: 60_000,
                lockout_ms: u64::try_from(lockout.as_millis())?,
                include_loopback: true,
            }),
            ..AuthOptions::default()
        },
        ..GatewayOptions::default()
    })
    .await?;
    let wrong = operator(&["operator.read"], "wrong-token");
    for attempt in 1..=10 {
        let (mut ws, res) = connect(&gw.ws_url, &DeviceIdentity::generate(), &wrong).await?;
        assert_eq!(
            res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
            "attempt {attempt}: {res}"
        );
        ws.expect_close().await?;
    }
    let right = operator(&["operator.read"], &gw.gateway_token);
    let (mut ws, res) = connect(&gw.ws_url, &DeviceIdentity::generate(), &right).await?;
    assert_eq!(
        res["error"]["details"]["recommendedNextStep"], "wait_then_retry",
        "{res}"
    );
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_RATE_LIMITED"),
        1008,
    )
    .await?;

    tokio::time::sleep(lockout + Duration::from_millis(300)).await;
    paired(
        &gw.ws_url,
        &gw.gateway_token,
        &DeviceIdentity::generate(),
        &right,
    )
    .await?;
    Ok(())
}

/// Over the per-IP budget of unauthenticated sockets (32), the upgrade gets 503.
#[tokio::test]
async fn reject_preauth_sockets_over_budget() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut open = Vec::new();
    for _ in 0..32 {
        let mut ws = WsClient::connect(&gw.ws_url).await?;
        challenge_nonce(&mut ws).await?;
        open.push(ws);
    }
    match tokio_tungstenite::connect_async(gw.ws_url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        Err(other) => panic!("expected HTTP 503, got {other}"),
        Ok(_) => panic!("the 33rd unauthenticated socket was accepted"),
    }
    // Authenticating one of them (a device-less shared-token operator) frees its slot.
    let ws = open.first_mut().expect("32 sockets");
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let res = ws.request("connect", spec.params_without_device()).await?;
    assert_eq!(res["ok"], true, "{res}");
    WsClient::connect(&gw.ws_url).await?;
    Ok(())
}
