//! Edge behaviour around auth that the `e2e_auth_*` suites do not pin: the close
//! after repeated `unauthorized role` refusals, operators calling node methods,
//! the API key extension of the OpenClaw dialect, and goclaw channel pairing
//! (`device.pair.request` / `device.pair.deny` and their events).

mod auth_support;

use auth_support::{QUIET, backend_admin, goclaw, operator, paired};
use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::openclaw_device::{ConnectSpec, DeviceIdentity};
use serde_json::json;

#[tokio::test]
async fn edge_repeated_unauthorized_role_calls_close_the_socket() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions::default()).await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let spec = ConnectSpec::node().with_token(token);
    let (mut node, _) = paired(url, token, &DeviceIdentity::generate(), &spec).await?;
    // `health` and node methods do not count; ten refusals in a row are tolerated.
    for _ in 0..10 {
        let res = node.request("status", json!({})).await?;
        assert_eq!(res["error"]["message"], "unauthorized role: node", "{res}");
    }
    // A node method is authorized (whatever its params say), so it ends the run.
    let res = node.request("node.event", json!({})).await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.starts_with("unauthorized role"), "{res}");
    for _ in 0..10 {
        node.request("status", json!({})).await?;
    }
    let res = node.request("status", json!({})).await?;
    assert_eq!(res["error"]["message"], "unauthorized role: node", "{res}");
    let closed = node.expect_close().await?;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1008), "repeated unauthorized calls")
    );

    let (mut admin, hello) = backend_admin(url, token).await?;
    let events = hello["features"]["events"].to_string();
    assert!(events.contains("device.pair.requested"), "{hello}");
    let res = admin.request("node.pending.pull", json!({})).await?;
    assert_eq!(
        res["error"]["message"], "unauthorized role: operator",
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_openclaw_admins_manage_api_keys() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions::default()).await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut admin, _) = backend_admin(url, token).await?;
    let res = admin
        .request(
            "api_keys.create",
            json!({"name": "ci", "scopes": ["operator.read"], "userId": "ci-bot"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    let key = res["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = res["payload"]["id"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("clawgate_"), "{res}");
    assert_eq!(res["payload"]["ownerId"], "ci-bot", "{res}");
    let res = admin
        .request(
            "api_keys.create",
            json!({"name": "x", "scopes": [], "owner_id": "y"}),
        )
        .await?;
    assert_eq!(
        res["error"]["code"], "INVALID_REQUEST",
        "closed params: {res}"
    );

    // The key works on the goclaw dialect, bound to its user.
    let (_ws, res) = goclaw(url, json!({"token": key, "user_id": "someone"})).await?;
    assert_eq!(res["payload"]["user_id"], "ci-bot", "{res}");
    assert_eq!(res["payload"]["role"], "viewer", "{res}");

    let res = admin.request("api_keys.list", json!({})).await?;
    assert!(!res.to_string().contains(&key), "list shows a raw key");
    let res = admin.request("api_keys.revoke", json!({"id": id})).await?;
    assert_eq!(res["payload"]["revoked"], true, "{res}");
    let (_ws, res) = goclaw(url, json!({"token": key})).await?;
    assert_eq!(res["error"]["code"], "UNAUTHORIZED", "{res}");

    // Not for a non-admin.
    let spec = operator(&["operator.read", "operator.pairing"], token);
    let (mut reader, _) = paired(url, token, &DeviceIdentity::generate(), &spec).await?;
    let res = reader.request("api_keys.list", json!({})).await?;
    assert_eq!(
        res["error"]["message"], "missing scope: operator.admin",
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn edge_goclaw_channel_pairing_request_and_deny() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions {
        owner_ids: vec!["root".into()],
        ..GatewayOptions::default()
    })
    .await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut owner, _) = goclaw(url, json!({"token": token, "user_id": "root"})).await?;
    owner.drain(QUIET).await;
    let params =
        json!({"senderId": "tg-42", "channel": "telegram", "chatId": "c1", "accountId": "bot"});
    let res = owner.request("device.pair.request", params.clone()).await?;
    let code = res["payload"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 8, "{res}");
    let requested = owner.event("device.pair.requested").await?;
    assert_eq!(requested["payload"]["code"], code.as_str(), "{requested}");
    assert_eq!(requested["payload"]["channel"], "telegram", "{requested}");
    assert!(requested.get("seq").is_none(), "goclaw events carry no seq");
    // The same sender gets the same code back, without a second event.
    let res = owner.request("device.pair.request", params).await?;
    assert_eq!(res["payload"]["code"], code.as_str(), "{res}");

    let res = owner
        .request("device.pair.deny", json!({"code": code}))
        .await?;
    assert_eq!(res["payload"]["denied"], true, "{res}");
    let resolved = owner.event("device.pair.resolved").await?;
    assert_eq!(resolved["payload"]["action"], "denied", "{resolved}");
    let res = owner.request("device.pair.list", json!({})).await?;
    assert_eq!(res["payload"]["pending"], json!([]), "{res}");
    Ok(())
}
