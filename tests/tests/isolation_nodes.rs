//! Nodes never cross a tenant or a user, and reach only operators with the
//! scope, on the embedded gateway (SQLite) and on PostgreSQL under row-level
//! security.
//!
//! Two tenants hold users with the same ids (`alice`, `bob` operators, `admin`
//! an admin), so nothing passes by user id alone. A node (the reference node
//! client) connects with alice's API key in tenant `ta`, so it is alice's.
//! Checked: who is told `node.pair.requested` / `.resolved` (alice with
//! `operator.pairing` and ta's admins; not bob, not alice without the pairing
//! scope, nobody of tb); who lists, describes and invokes the node (alice and
//! ta's admins in both dialects; bob and everyone of tb see no node and read
//! it as not connected, and the node never receives their calls); who may
//! approve its pairing; and that an operator without `operator.write` may not
//! invoke.

mod auth_support;

use std::time::Duration;

use auth_support::QUIET;
use clawgate_testkit::refnode::{InvokeReply, NodeIdentity, NodeOptions, RefNode};
use clawgate_tests::gateway::{AuthOptions, GatewayDatabase, GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ClientInfo, ConnectSpec, challenge_nonce};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const OWNER: &str = "root";
const TENANTS: [&str; 2] = ["ta", "tb"];
const OPERATOR_SCOPES: [&str; 3] = ["operator.read", "operator.write", "operator.pairing"];

async fn goclaw_connect(url: &str, params: Value) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "goclaw connect: {res}");
    Ok(ws)
}

async fn openclaw_with_key(url: &str, key: &str, scopes: &[&str]) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    challenge_nonce(&mut ws).await?;
    let spec = ConnectSpec::operator(scopes)
        .with_client(ClientInfo::cli())
        .with_token(key);
    let res = ws.request("connect", spec.params_without_device()).await?;
    anyhow::ensure!(res["ok"] == true, "openclaw connect: {res}");
    Ok(ws)
}

/// Tenants, users and API keys: `(tenant, user) → key`.
async fn keys(url: &str, token: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut root = goclaw_connect(url, json!({"token": token, "user_id": OWNER})).await?;
    for tenant in TENANTS {
        let res = root
            .request(
                "tenants.create",
                json!({"id": tenant, "slug": tenant, "name": tenant}),
            )
            .await?;
        anyhow::ensure!(res["ok"] == true, "{res}");
    }
    let mut keys = Vec::new();
    for tenant in TENANTS {
        let mut owner = goclaw_connect(
            url,
            json!({"token": token, "user_id": OWNER, "tenant_id": tenant}),
        )
        .await?;
        for (user, role, scopes) in [
            ("alice", "operator", json!(OPERATOR_SCOPES)),
            ("bob", "operator", json!(OPERATOR_SCOPES)),
            ("admin", "admin", json!(["operator.admin"])),
        ] {
            let added = owner
                .request(
                    "tenants.users.add",
                    json!({"user_id": user, "role": role, "display_name": user}),
                )
                .await?;
            anyhow::ensure!(added["ok"] == true, "{added}");
            let created = owner
                .request(
                    "api_keys.create",
                    json!({"name": format!("{tenant}-{user}"), "scopes": scopes, "owner_id": user}),
                )
                .await?;
            let key = created["payload"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            anyhow::ensure!(!key.is_empty(), "{created}");
            keys.push((tenant.to_owned(), user.to_owned(), key));
        }
    }
    Ok(keys)
}

fn key_of<'a>(keys: &'a [(String, String, String)], tenant: &str, user: &str) -> &'a str {
    &keys
        .iter()
        .find(|(t, u, _)| t == tenant && u == user)
        .expect("key")
        .2
}

fn ids(list: &Value) -> Vec<String> {
    list["payload"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["nodeId"].as_str().map(str::to_owned))
        .collect()
}

async fn saw(ws: &mut WsClient, event: &str) -> bool {
    ws.drain(QUIET).await.iter().any(|f| f["event"] == event)
}

async fn nodes_stay_in_their_tenant_and_user(database: GatewayDatabase) -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("unused")).await?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        owner_ids: vec![OWNER.into()],
        auth: AuthOptions {
            auto_approve_local: Some(true),
            ..AuthOptions::default()
        },
        database,
        ..GatewayOptions::default()
    })
    .await?;
    let url = gw.ws_url.clone();
    let keys = keys(&url, &gw.gateway_token).await?;
    let mut alice = openclaw_with_key(&url, key_of(&keys, "ta", "alice"), &OPERATOR_SCOPES).await?;
    let mut alice_reader =
        openclaw_with_key(&url, key_of(&keys, "ta", "alice"), &["operator.read"]).await?;
    let mut bob = openclaw_with_key(&url, key_of(&keys, "ta", "bob"), &OPERATOR_SCOPES).await?;
    let mut admin_ta =
        openclaw_with_key(&url, key_of(&keys, "ta", "admin"), &["operator.admin"]).await?;
    let mut goclaw_admin_ta =
        goclaw_connect(&url, json!({"token": key_of(&keys, "ta", "admin")})).await?;
    let mut alice_tb =
        openclaw_with_key(&url, key_of(&keys, "tb", "alice"), &OPERATOR_SCOPES).await?;
    let mut admin_tb =
        openclaw_with_key(&url, key_of(&keys, "tb", "admin"), &["operator.admin"]).await?;
    let mut goclaw_admin_tb =
        goclaw_connect(&url, json!({"token": key_of(&keys, "tb", "admin")})).await?;

    // Alice's node in ta.
    let identity = NodeIdentity::random();
    let node_id = identity.device_id();
    let node = RefNode::connect(
        &url,
        NodeOptions::new(identity, key_of(&keys, "ta", "alice")).with_commands(["camera.snap"]),
    )
    .await
    .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    node.on_invoke(|_| InvokeReply::ok(json!({"snapped": true})));

    let requested = alice.event("node.pair.requested").await?;
    assert_eq!(requested["payload"]["nodeId"], node_id.as_str());
    let request_id = requested["payload"]["requestId"].clone();
    assert!(
        saw(&mut admin_ta, "node.pair.requested").await,
        "ta's admin is told"
    );
    for (who, ws) in [
        ("bob", &mut bob),
        ("alice without pairing", &mut alice_reader),
        ("tb alice", &mut alice_tb),
        ("tb admin", &mut admin_tb),
    ] {
        assert!(
            !saw(ws, "node.pair.requested").await,
            "{who} saw the request"
        );
    }
    // Only the node's own side may approve it.
    for (who, ws) in [("bob", &mut bob), ("tb admin", &mut admin_tb)] {
        let refused = ws
            .request("node.pair.approve", json!({"requestId": request_id}))
            .await?;
        assert_eq!(refused["ok"], false, "{who} approved: {refused}");
    }
    let refused = alice_reader.request("node.pair.list", json!({})).await?;
    assert_eq!(refused["ok"], false, "{refused}");
    let approved = alice
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await?;
    assert_eq!(approved["ok"], true, "{approved}");
    assert!(saw(&mut admin_ta, "node.pair.resolved").await);
    for (who, ws) in [("bob", &mut bob), ("tb admin", &mut admin_tb)] {
        assert!(
            !saw(ws, "node.pair.resolved").await,
            "{who} saw the decision"
        );
    }

    // Who sees it.
    for (who, ws, sees) in [
        ("alice", &mut alice, true),
        ("alice reader", &mut alice_reader, true),
        ("ta admin", &mut admin_ta, true),
        ("goclaw ta admin", &mut goclaw_admin_ta, true),
        ("bob", &mut bob, false),
        ("tb alice", &mut alice_tb, false),
        ("tb admin", &mut admin_tb, false),
        ("goclaw tb admin", &mut goclaw_admin_tb, false),
    ] {
        let list = ws.request("node.list", json!({})).await?;
        assert_eq!(list["ok"], true, "{who}: {list}");
        assert_eq!(ids(&list).contains(&node_id), sees, "{who}: {list}");
        let described = ws
            .request("node.describe", json!({"nodeId": node_id}))
            .await?;
        assert_eq!(described["ok"], sees, "{who}: {described}");
    }

    // Who may invoke it: others read it as not connected, and it never hears of them.
    let call = |key: &str| json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": key, "timeoutMs": 5000});
    for (who, ws) in [
        ("bob", &mut bob),
        ("tb alice", &mut alice_tb),
        ("tb admin", &mut admin_tb),
        ("goclaw tb admin", &mut goclaw_admin_tb),
    ] {
        let refused = ws.request("node.invoke", call(who)).await?;
        assert_eq!(refused["ok"], false, "{who} invoked: {refused}");
    }
    let refused = alice_reader.request("node.invoke", call("reader")).await?;
    assert_eq!(refused["ok"], false, "{refused}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        node.invokes_received(),
        0,
        "a refused call reached the node"
    );
    for (who, ws) in [
        ("alice", &mut alice),
        ("ta admin", &mut admin_ta),
        ("goclaw ta admin", &mut goclaw_admin_ta),
    ] {
        let res = ws.request("node.invoke", call(who)).await?;
        assert_eq!(res["ok"], true, "{who}: {res}");
    }
    assert_eq!(node.invokes_received(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stay_in_their_tenant_and_user_on_sqlite() -> anyhow::Result<()> {
    nodes_stay_in_their_tenant_and_user(GatewayDatabase::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stay_in_their_tenant_and_user_on_postgres() -> anyhow::Result<()> {
    nodes_stay_in_their_tenant_and_user(GatewayDatabase::FreshPostgres).await
}
