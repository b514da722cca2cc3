//! Node methods on the embedded gateway, bad input first: every malformed or
//! misdirected call gets a clear error and changes nothing; a node answers
//! only its own calls; roles keep operators and nodes to their own methods;
//! rename, reject, remove and verify do what the reference says.

use std::time::Duration;

use clawgate_testkit::refnode::{InvokeReply, NodeIdentity, NodeOptions, RefNode};
use clawgate_tests::gateway::{AuthOptions, GatewayOptions, TestGateway};
use clawgate_tests::ws::{WsClient, openclaw_connect_params};
use serde_json::json;

async fn gateway() -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions {
        auth: AuthOptions {
            auto_approve_local: Some(true),
            ..AuthOptions::default()
        },
        ..GatewayOptions::default()
    })
    .await
}

async fn operator(url: &str, token: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = json!(["operator.read", "operator.write", "operator.pairing"]);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_node_calls_are_refused_clearly_and_change_nothing() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut op = operator(&gw.ws_url, &gw.gateway_token).await?;
    let identity = NodeIdentity::random();
    let node_id = identity.device_id();
    let node = RefNode::connect(
        &gw.ws_url,
        NodeOptions::new(identity, &gw.gateway_token).with_commands(["camera.snap"]),
    )
    .await
    .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    node.on_invoke(|_| InvokeReply::ok(json!({"ok": 1})));
    let requested = op.event("node.pair.requested").await?;
    let request_id = requested["payload"]["requestId"].clone();

    // Malformed operator calls.
    for (method, params, needle) in [
        (
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap"}),
            "idempotencyKey",
        ),
        (
            "node.invoke",
            json!({"nodeId": 7, "command": "camera.snap", "idempotencyKey": "k"}),
            "nodeId",
        ),
        (
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "k", "timeoutMs": -1}),
            "timeoutMs",
        ),
        (
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "k", "extra": 1}),
            "extra",
        ),
        ("node.describe", json!({}), "nodeId"),
        ("node.pair.approve", json!({}), "requestId"),
        ("node.rename", json!({"nodeId": node_id}), "displayName"),
    ] {
        let res = op.request(method, params).await?;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{method}: {res}");
        let message = res["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("invalid {method} params")),
            "{message}"
        );
        assert!(message.contains(needle), "{message}");
    }
    let res = op
        .request("node.describe", json!({"nodeId": "nope"}))
        .await?;
    assert_eq!(res["error"]["message"], "unknown nodeId", "{res}");
    let res = op
        .request("node.pair.reject", json!({"requestId": "nope"}))
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    // Roles: an operator may not call node methods, a node not operator ones.
    let res = op
        .request(
            "node.event",
            json!({"event": "chat.subscribe", "payload": {"sessionKey": "main"}}),
        )
        .await?;
    assert_eq!(
        res["error"]["message"], "unauthorized role: operator",
        "{res}"
    );
    let refused = node.call("node.list", json!({})).await.unwrap_err();
    assert_eq!(refused.message, "unauthorized role: node");
    assert_eq!(node.invokes_received(), 0);

    let approved = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await?;
    assert_eq!(approved["ok"], true, "{approved}");
    let token = approved["payload"]["node"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!token.is_empty(), "{approved}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A node's answers: its own only; a late or unknown id is ignored.
    let res = node
        .call(
            "node.invoke.result",
            json!({"id": "nope", "nodeId": node_id, "ok": true}),
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    assert_eq!(res, json!({"ok": true, "ignored": true}));
    let refused = node
        .call(
            "node.invoke.result",
            json!({"id": "x", "nodeId": "someone-else", "ok": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.message, "nodeId mismatch");
    let refused = node
        .call("node.invoke.result", json!({"id": "x", "nodeId": node_id}))
        .await
        .unwrap_err();
    assert!(refused.message.contains("ok"), "{refused}");
    let refused = node
        .call(
            "node.event",
            json!({"event": "chat.subscribe", "payload": {}}),
        )
        .await
        .unwrap_err();
    assert!(refused.message.contains("sessionKey"), "{refused}");
    let other = node
        .call(
            "node.event",
            json!({"event": "notifications.changed", "payload": {}}),
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    assert_eq!(other["handled"], false, "{other}");
    // Still answers a real call after all that.
    let res = op
        .request(
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "ok-1"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");

    // Rename, verify, remove.
    let res = op
        .request(
            "node.rename",
            json!({"nodeId": node_id, "displayName": "  "}),
        )
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    let res = op
        .request(
            "node.rename",
            json!({"nodeId": node_id, "displayName": "Den tablet"}),
        )
        .await?;
    assert_eq!(
        res["payload"],
        json!({"nodeId": node_id, "displayName": "Den tablet"})
    );
    let described = op
        .request("node.describe", json!({"nodeId": node_id}))
        .await?;
    assert_eq!(
        described["payload"]["displayName"], "Den tablet",
        "{described}"
    );
    let res = op
        .request(
            "node.pair.verify",
            json!({"nodeId": node_id, "token": token}),
        )
        .await?;
    assert_eq!(res["payload"]["ok"], true, "{res}");
    let res = op
        .request(
            "node.pair.verify",
            json!({"nodeId": node_id, "token": "wrong"}),
        )
        .await?;
    assert_eq!(res["payload"]["ok"], false, "{res}");
    let res = op
        .request("node.pair.remove", json!({"nodeId": node_id}))
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    let resolved = op
        .event_where(|e| {
            e["event"] == "node.pair.resolved" && e["payload"]["decision"] == "removed"
        })
        .await?;
    assert_eq!(resolved["payload"]["nodeId"], node_id.as_str());
    // Removed: the live node may run nothing any more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = op
        .request(
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "after-remove"}),
        )
        .await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(node.invokes_received(), 1);
    Ok(())
}
