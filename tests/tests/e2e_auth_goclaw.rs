//! goclaw dialect auth end to end (goclaw notes §2.3, §2.4): the gateway-token
//! path with owner ids, API keys (created with `api_keys.create`, scopes → role,
//! owner binding, revocation, expiry), the full browser pairing flow, and
//! `device.pair.revoke` disconnecting the live socket. Pairing events reach only
//! admins of the tenant: never a viewer, another tenant or a pending socket.

mod auth_support;

use std::time::Duration;

use auth_support::{QUIET, assert_no_pairing_events, create_tenant, goclaw};
use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const OWNER: &str = "root";

async fn gateway() -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions {
        owner_ids: vec![OWNER.into()],
        ..GatewayOptions::default()
    })
    .await
}

/// A connected goclaw socket; fails unless the connect succeeded.
async fn connected(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let (ws, res) = goclaw(url, params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((ws, res["payload"].clone()))
}

async fn owner(gw: &TestGateway) -> anyhow::Result<WsClient> {
    let (ws, _) = connected(
        &gw.ws_url,
        json!({"token": gw.gateway_token, "user_id": OWNER}),
    )
    .await?;
    Ok(ws)
}

/// Creates an API key from `admin`; returns `(id, raw key)`.
async fn create_key(admin: &mut WsClient, params: Value) -> anyhow::Result<(String, String)> {
    let res = admin.request("api_keys.create", params).await?;
    anyhow::ensure!(res["ok"] == true, "api_keys.create failed: {res}");
    let key = res["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = res["payload"]["id"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(key.starts_with("clawgate_"), "key format: {res}");
    anyhow::ensure!(!id.is_empty(), "no id: {res}");
    Ok((id, key))
}

fn assert_unauthorized(res: &Value) {
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "UNAUTHORIZED", "{res}");
}

/// Starts browser pairing (connect without a token); returns the pending socket,
/// the pairing code and the sender id.
async fn start_browser_pairing(url: &str) -> anyhow::Result<(WsClient, String, String)> {
    let (ws, payload) = connected(url, json!({"user_id": "browser-user", "locale": "en"})).await?;
    assert_eq!(payload["protocol"], 3, "{payload}");
    assert_eq!(payload["status"], "pending_pairing", "{payload}");
    assert!(
        payload.get("role").is_none(),
        "a pending socket has no role: {payload}"
    );
    let code = payload["pairing_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 8, "{payload}");
    assert!(
        code.chars()
            .all(|c| (c.is_ascii_uppercase() || c.is_ascii_digit()) && !"0O1I".contains(c)),
        "a code without ambiguous characters: {code}"
    );
    let sender = payload["sender_id"].as_str().unwrap_or_default().to_owned();
    assert!(!sender.is_empty(), "{payload}");
    Ok((ws, code, sender))
}

async fn approve(admin: &mut WsClient, code: &str) -> anyhow::Result<Value> {
    let res = admin
        .request(
            "device.pair.approve",
            json!({"code": code, "approvedBy": OWNER}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "approve failed: {res}");
    Ok(res["payload"].clone())
}

#[tokio::test]
async fn goclaw_gateway_token_gives_owner_or_admin() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (_ws, hello) = connected(
        &gw.ws_url,
        json!({"token": gw.gateway_token, "user_id": OWNER}),
    )
    .await?;
    assert_eq!(hello["role"], "owner", "{hello}");
    assert_eq!(hello["is_owner"], true, "{hello}");
    assert_eq!(hello["user_id"], OWNER, "{hello}");
    let (_ws, hello) = connected(
        &gw.ws_url,
        json!({"token": gw.gateway_token, "user_id": "bob"}),
    )
    .await?;
    assert_eq!(hello["role"], "admin", "{hello}");
    assert_eq!(hello["is_owner"], false, "{hello}");
    let (_ws, res) = goclaw(&gw.ws_url, json!({"token": "wrong", "user_id": OWNER})).await?;
    assert_unauthorized(&res);
    Ok(())
}

#[tokio::test]
async fn goclaw_api_keys_map_scopes_to_roles() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let url = gw.ws_url.as_str();
    let mut admin = owner(&gw).await?;
    let (_, admin_key) = create_key(
        &mut admin,
        json!({"name": "ops", "scopes": ["operator.admin"]}),
    )
    .await?;
    let (_, operator_key) = create_key(
        &mut admin,
        json!({"name": "ci", "scopes": ["operator.read", "operator.write"]}),
    )
    .await?;
    let (_, viewer_key) = create_key(
        &mut admin,
        json!({"name": "dash", "scopes": ["operator.read"]}),
    )
    .await?;
    let (_, bound_key) = create_key(
        &mut admin,
        json!({"name": "carol", "scopes": ["operator.write"], "owner_id": "carol"}),
    )
    .await?;

    let (_ws, hello) = connected(url, json!({"token": admin_key, "user_id": "ann"})).await?;
    assert_eq!(hello["role"], "admin", "{hello}");
    let (mut op, hello) = connected(url, json!({"token": operator_key, "user_id": "ci"})).await?;
    assert_eq!(hello["role"], "operator", "{hello}");
    let res = op
        .request(
            "api_keys.create",
            json!({"name": "x", "scopes": ["operator.read"]}),
        )
        .await?;
    assert_unauthorized(&res);
    let (mut viewer, hello) = connected(url, json!({"token": viewer_key, "user_id": "v"})).await?;
    assert_eq!(hello["role"], "viewer", "{hello}");
    let res = viewer
        .request("chat.send", json!({"message": "hi"}))
        .await?;
    assert_unauthorized(&res);
    let res = viewer.request("sessions.list", json!({})).await?;
    assert_eq!(res["ok"], true, "viewers may read: {res}");
    // A key bound to a user forces that user.
    let (_ws, hello) = connected(url, json!({"token": bound_key, "user_id": "mallory"})).await?;
    assert_eq!(hello["user_id"], "carol", "{hello}");
    assert_eq!(hello["role"], "operator", "{hello}");

    // Keys are stored hashed: listing never shows a raw key.
    let res = admin.request("api_keys.list", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");
    let text = res.to_string();
    for key in [&admin_key, &operator_key, &viewer_key, &bound_key] {
        assert!(
            !text.contains(key.as_str()),
            "api_keys.list shows a raw key"
        );
    }
    Ok(())
}

#[tokio::test]
async fn goclaw_revoked_api_key_is_refused() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut admin = owner(&gw).await?;
    let (id, key) = create_key(
        &mut admin,
        json!({"name": "tmp", "scopes": ["operator.read"]}),
    )
    .await?;
    connected(&gw.ws_url, json!({"token": key, "user_id": "u"})).await?;
    let res = admin.request("api_keys.revoke", json!({"id": id})).await?;
    assert_eq!(res["ok"], true, "{res}");
    let (_ws, res) = goclaw(&gw.ws_url, json!({"token": key, "user_id": "u"})).await?;
    assert_unauthorized(&res);
    Ok(())
}

/// The "expired token" case: an API key past its `expires_in`.
#[tokio::test]
async fn goclaw_expired_api_key_is_refused() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut admin = owner(&gw).await?;
    let (_, key) = create_key(
        &mut admin,
        json!({"name": "short", "scopes": ["operator.read"], "expires_in": 1}),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_ws, res) = goclaw(&gw.ws_url, json!({"token": key, "user_id": "u"})).await?;
    assert_unauthorized(&res);
    Ok(())
}

#[tokio::test]
async fn goclaw_browser_pairing_full_flow() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let url = gw.ws_url.as_str();
    let mut admin = owner(&gw).await?;
    let (_, viewer_key) = create_key(
        &mut admin,
        json!({"name": "dash", "scopes": ["operator.read"]}),
    )
    .await?;
    let (mut viewer, _) = connected(url, json!({"token": viewer_key, "user_id": "v"})).await?;
    // An owner narrowed to another tenant (needs `tenant_id` narrowing).
    create_tenant(url, &gw.gateway_token, OWNER, "tenant-b").await?;
    let (mut other_tenant, hello) = connected(
        url,
        json!({"token": gw.gateway_token, "user_id": OWNER, "tenant_id": "tenant-b"}),
    )
    .await?;
    assert_eq!(hello["tenant_id"], "tenant-b", "{hello}");
    let (mut other_pending, _, _) = start_browser_pairing(url).await?;
    for ws in [
        &mut admin,
        &mut viewer,
        &mut other_tenant,
        &mut other_pending,
    ] {
        ws.drain(QUIET).await;
    }

    // 1. Connect without a token: pending, with a code and a sender id.
    let (mut pending, code, sender) = start_browser_pairing(url).await?;
    // 2. Until approved, only browser.pairing.status may be called.
    let res = pending
        .request("chat.send", json!({"message": "hi"}))
        .await?;
    assert_unauthorized(&res);
    let res = pending.request("sessions.list", json!({})).await?;
    assert_unauthorized(&res);
    let res = pending
        .request("browser.pairing.status", json!({"sender_id": sender}))
        .await?;
    assert_eq!(res["payload"]["status"], "pending", "{res}");

    // 3. The admin sees the request and approves it by code.
    let requested = admin
        .event_where(|f| {
            f["event"] == "device.pair.requested" && f["payload"]["code"] == code.as_str()
        })
        .await?;
    assert_eq!(
        requested["payload"]["sender_id"],
        sender.as_str(),
        "{requested}"
    );
    let list = admin.request("device.pair.list", json!({})).await?;
    let listed = list["payload"]["pending"]
        .as_array()
        .is_some_and(|p| p.iter().any(|r| r["code"] == code.as_str()));
    assert!(listed, "{list}");
    let approved = approve(&mut admin, &code).await?;
    assert_eq!(
        approved["paired"]["sender_id"],
        sender.as_str(),
        "{approved}"
    );
    assert_eq!(approved["paired"]["channel"], "browser", "{approved}");
    let resolved = admin.event("device.pair.resolved").await?;
    assert_eq!(resolved["payload"]["action"], "approved", "{resolved}");
    let res = pending
        .request("browser.pairing.status", json!({"sender_id": sender}))
        .await?;
    assert_eq!(res["payload"]["status"], "approved", "{res}");

    // 4. Reconnect with the sender id: an operator.
    let (_ws, hello) =
        connected(url, json!({"sender_id": sender, "user_id": "browser-user"})).await?;
    assert_eq!(hello["role"], "operator", "{hello}");

    // Pairing events reached none of the others.
    assert_no_pairing_events(&mut viewer, "a viewer").await;
    assert_no_pairing_events(&mut other_tenant, "an owner of another tenant").await;
    assert_no_pairing_events(&mut other_pending, "a pending browser socket").await;
    Ok(())
}

#[tokio::test]
async fn goclaw_revoke_disconnects_the_live_socket() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let url = gw.ws_url.as_str();
    let mut admin = owner(&gw).await?;
    let (_pending, code, sender) = start_browser_pairing(url).await?;
    approve(&mut admin, &code).await?;
    let params = json!({"sender_id": sender, "user_id": "browser-user"});
    let (mut live, hello) = connected(url, params.clone()).await?;
    assert_eq!(hello["role"], "operator", "{hello}");

    let res = admin
        .request(
            "device.pair.revoke",
            json!({"senderId": sender, "channel": "browser"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["revoked"], true, "{res}");
    // goclaw force-disconnects the socket; it names no close code.
    live.expect_close().await?;
    let resolved = admin
        .event_where(|f| {
            f["event"] == "device.pair.resolved" && f["payload"]["action"] == "revoked"
        })
        .await?;
    assert_eq!(resolved["payload"]["action"], "revoked");

    // The sender id no longer authenticates: a tokenless connect starts pairing anew.
    let (_ws, payload) = connected(url, params).await?;
    assert_eq!(payload["status"], "pending_pairing", "{payload}");
    assert!(payload.get("role").is_none(), "{payload}");
    Ok(())
}
