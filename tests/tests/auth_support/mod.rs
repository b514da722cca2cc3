//! Shared helpers of the `e2e_auth_*` tests: gateways with auth settings, the
//! local backend admin, device pairing through an admin connection, and
//! assertions on connect errors as the OpenClaw reference specifies them.

#![allow(dead_code)]

use std::time::Duration;

use clawgate_tests::gateway::{AuthOptions, GatewayOptions, TestGateway};
use clawgate_tests::openclaw_device::{
    ClientInfo, ConnectSpec, DeviceIdentity, challenge_nonce, connect_device,
};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

/// How long a socket that must not see an event is watched.
pub const QUIET: Duration = Duration::from_millis(500);

/// The embedded gateway with the binary's defaults. Tests on it do not depend on
/// loopback auto-approval: they pair devices with [`paired`], which works either way.
pub async fn gateway() -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions::default()).await
}

/// The embedded gateway with loopback auto-approval explicitly on.
pub async fn gateway_with_auto_approval() -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions {
        auth: AuthOptions {
            auto_approve_local: Some(true),
            ..AuthOptions::default()
        },
        ..GatewayOptions::default()
    })
    .await
}

/// The embedded gateway with loopback auto-approval off, so every new device
/// needs an admin's approval.
pub async fn gateway_without_auto_approval() -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions {
        auth: AuthOptions {
            auto_approve_local: Some(false),
            ..AuthOptions::default()
        },
        ..GatewayOptions::default()
    })
    .await
}

/// The local backend client (`gateway-client` / `backend`, direct loopback, shared
/// token, no device): the one device-less operator that keeps its requested scopes
/// in late v3 (reference §2.3 step 7). Returns it with `hello-ok`.
pub async fn backend_admin(url: &str, token: &str) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    challenge_nonce(&mut ws).await?;
    let spec = ConnectSpec::operator(&["operator.admin"])
        .with_client(ClientInfo::backend())
        .with_token(token);
    let res = ws.request("connect", spec.params_without_device()).await?;
    anyhow::ensure!(res["ok"] == true, "backend admin connect failed: {res}");
    Ok((ws, res["payload"].clone()))
}

/// Opens a socket and connects `identity` with `spec`; returns the socket and the
/// response frame.
pub async fn connect(
    url: &str,
    identity: &DeviceIdentity,
    spec: &ConnectSpec,
) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = connect_device(&mut ws, identity, spec).await?;
    Ok((ws, res))
}

/// Connects and requires `hello-ok`; returns the socket and the payload.
pub async fn connect_ok(
    url: &str,
    identity: &DeviceIdentity,
    spec: &ConnectSpec,
) -> anyhow::Result<(WsClient, Value)> {
    let (ws, res) = connect(url, identity, spec).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    anyhow::ensure!(res["payload"]["type"] == "hello-ok", "not hello-ok: {res}");
    Ok((ws, res["payload"].clone()))
}

/// Asserts a failed connect: `error.code`, `error.details.code`, then the close code.
pub async fn assert_rejected(
    ws: &mut WsClient,
    res: &Value,
    code: &str,
    details_code: Option<&str>,
    close: u16,
) -> anyhow::Result<()> {
    assert_eq!(res["type"], "res", "{res}");
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], code, "{res}");
    if let Some(details_code) = details_code {
        assert_eq!(res["error"]["details"]["code"], details_code, "{res}");
    }
    let closed = ws.expect_close().await?;
    assert_eq!(closed.code, Some(close), "closed {closed:?} after {res}");
    Ok(())
}

/// Asserts a device-proof failure (reference §3.3): `INVALID_REQUEST`, the
/// `DEVICE_AUTH_*` detail code, its reason and message, close 1008.
pub async fn assert_device_rejected(
    ws: &mut WsClient,
    res: &Value,
    details_code: &str,
    reason: &str,
    message: &str,
) -> anyhow::Result<()> {
    assert_eq!(res["error"]["details"]["reason"], reason, "{res}");
    let text = res["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "message {text:?} lacks {message:?}");
    assert_rejected(ws, res, "INVALID_REQUEST", Some(details_code), 1008).await
}

/// Asserts `NOT_PAIRED` / `PAIRING_REQUIRED` with close 1008; returns the requestId.
pub async fn assert_pairing_required(
    ws: &mut WsClient,
    res: &Value,
    identity: &DeviceIdentity,
) -> anyhow::Result<String> {
    let details = &res["error"]["details"];
    let request_id = details["requestId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    assert!(request_id.is_some(), "no requestId: {res}");
    assert_eq!(details["deviceId"], identity.device_id().as_str(), "{res}");
    assert_rejected(ws, res, "NOT_PAIRED", Some("PAIRING_REQUIRED"), 1008).await?;
    Ok(request_id.unwrap_or_default())
}

/// Approves `request_id` from `admin`; returns the response payload.
pub async fn approve(admin: &mut WsClient, request_id: &str) -> anyhow::Result<Value> {
    let res = admin
        .request("device.pair.approve", json!({"requestId": request_id}))
        .await?;
    anyhow::ensure!(res["ok"] == true, "approve failed: {res}");
    Ok(res["payload"].clone())
}

/// Pairs a new device through `admin` (connect → pairing required → approve →
/// reconnect) and returns its connected socket and `hello-ok`.
pub async fn pair(
    url: &str,
    admin: &mut WsClient,
    identity: &DeviceIdentity,
    spec: &ConnectSpec,
) -> anyhow::Result<(WsClient, Value)> {
    let (mut ws, res) = connect(url, identity, spec).await?;
    let request_id = assert_pairing_required(&mut ws, &res, identity).await?;
    approve(admin, &request_id).await?;
    connect_ok(url, identity, spec).await
}

/// Connects `identity` with `spec` and requires `hello-ok`; when the device is not
/// paired yet (auto-approval off), a local backend admin approves it first.
pub async fn paired(
    url: &str,
    shared_token: &str,
    identity: &DeviceIdentity,
    spec: &ConnectSpec,
) -> anyhow::Result<(WsClient, Value)> {
    let (mut ws, res) = connect(url, identity, spec).await?;
    if res["ok"] == true {
        return Ok((ws, res["payload"].clone()));
    }
    anyhow::ensure!(
        res["error"]["details"]["code"] == "PAIRING_REQUIRED",
        "connect failed: {res}"
    );
    let request_id = assert_pairing_required(&mut ws, &res, identity).await?;
    let (mut admin, _) = backend_admin(url, shared_token).await?;
    approve(&mut admin, &request_id).await?;
    admin.close().await;
    connect_ok(url, identity, spec).await
}

/// An operator spec with the shared token.
pub fn operator(scopes: &[&str], token: &str) -> ConnectSpec {
    ConnectSpec::operator(scopes).with_token(token)
}

/// The device token of a `hello-ok`.
pub fn device_token(hello: &Value) -> String {
    let token = hello["auth"]["deviceToken"].as_str().unwrap_or_default();
    assert!(
        !token.is_empty(),
        "hello-ok without a device token: {hello}"
    );
    token.to_owned()
}

/// Names of the `device.pair.*` / pairing events among `frames`.
pub fn pairing_events(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| {
            f["type"] == "event"
                && f["event"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("device.pair."))
        })
        .cloned()
        .collect()
}

/// Asserts that `ws` receives no pairing event within [`QUIET`].
pub async fn assert_no_pairing_events(ws: &mut WsClient, who: &str) {
    let frames = ws.drain(QUIET).await;
    let seen = pairing_events(&frames);
    assert!(seen.is_empty(), "{who} received pairing events: {seen:?}");
}

/// The goclaw `connect` of a user with the shared token (and optional extra params).
pub async fn goclaw(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    Ok((ws, res))
}

/// Creates tenant `id` through a goclaw owner connection (`owner` must be one of
/// the gateway's owner ids).
pub async fn create_tenant(url: &str, token: &str, owner: &str, id: &str) -> anyhow::Result<()> {
    let (mut ws, res) = goclaw(url, json!({"token": token, "user_id": owner})).await?;
    anyhow::ensure!(res["ok"] == true, "owner connect failed: {res}");
    let res = ws
        .request("tenants.create", json!({"id": id, "slug": id, "name": id}))
        .await?;
    anyhow::ensure!(res["ok"] == true, "tenants.create failed: {res}");
    ws.close().await;
    Ok(())
}
