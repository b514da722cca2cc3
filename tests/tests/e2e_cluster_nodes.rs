//! Nodes across the process cluster (two edges, auth, session and a runner as
//! separate OS processes on PostgreSQL and Redis), driven by the reference node
//! client of the test kit (written from the protocol reference, not from
//! clawgate): a node connected to edge 1 is paired, listed (in `node.list`
//! and presence), described and invoked by an operator on edge 0; a command the node may not run is refused
//! without reaching it; retries of one idempotency key run once; a node error
//! reads as the reference's; a call made while the node reconnects (to edge 0)
//! succeeds once it is back; and when edge 1 is killed mid-call the call fails
//! within a second and `node.list` shows the node disconnected. Both protocol
//! versions (v3 and v4 node connects).

use std::time::{Duration, Instant};

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_testkit::refnode::{Connected, InvokeReply, NodeIdentity, NodeOptions, RefNode};
use clawgate_tests::cluster::{Cluster, ClusterOptions, Scale, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::{WsClient, openclaw_connect_params};
use serde_json::{Value, json};

const COMMANDS: [&str; 3] = ["camera.snap", "location.get", "screen.record"];

/// An operator that may pair nodes and invoke them.
async fn operator(url: &str, token: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = json!(["operator.read", "operator.write", "operator.pairing"]);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

fn node_options(identity: &NodeIdentity, token: &str, protocol: u32) -> NodeOptions {
    let mut options = NodeOptions::new(identity.clone(), token)
        .with_protocol(protocol)
        .with_commands(COMMANDS)
        .with_caps(["camera", "location", "screen"])
        .with_display_name("Kitchen phone");
    options
        .permissions
        .insert("camera.capture".into(), json!(true));
    options
}

/// The node answering `camera.snap` and `location.get` at once.
fn answering(node: &Connected) {
    node.on_invoke(|request| match request.command.as_str() {
        "camera.snap" => {
            InvokeReply::ok(json!({"format": "jpg", "base64": "AAAA", "params": request.params}))
        }
        "location.get" => InvokeReply::error("LOCATION_DISABLED", "location is off"),
        _ => InvokeReply::error("UNKNOWN", "unexpected"),
    });
}

async fn invoke(
    client: &mut WsClient,
    node_id: &str,
    command: &str,
    key: &str,
    timeout_ms: u64,
) -> anyhow::Result<Value> {
    client
        .request(
            "node.invoke",
            json!({
                "nodeId": node_id,
                "command": command,
                "params": {"quality": 80},
                "timeoutMs": timeout_ms,
                "idempotencyKey": key,
            }),
        )
        .await
}

fn listed(list: &Value, node_id: &str) -> Option<Value> {
    list["payload"]["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["nodeId"] == node_id)
        .cloned()
}

async fn nodes_across_edges(protocol: u32) -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("unused")).await?;
    let database = fresh_postgres_url().await?;
    let mut cluster = Cluster::start_with(
        ClusterOptions {
            edges: 2,
            database_url: database.url().to_owned(),
            redis_url: test_redis_url(),
            model_base_url: model.base_url(),
            env: Vec::new(),
        },
        Scale::default(),
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let (edge0, edge1) = (cluster.edge_urls[0].clone(), cluster.edge_urls[1].clone());
    let mut op = operator(&edge0, &token).await?;
    let identity = NodeIdentity::random();
    let node_id = identity.device_id();

    // The node connects to edge 1; its commands wait for node pairing, which
    // the operator on edge 0 is told about and approves.
    let node = RefNode::connect(&edge1, node_options(&identity, &token, protocol))
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    answering(&node);
    let requested = op.event("node.pair.requested").await?;
    assert_eq!(
        requested["payload"]["nodeId"],
        node_id.as_str(),
        "{requested}"
    );
    let request_id = requested["payload"]["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let before = op.request("node.list", json!({})).await?;
    let unpaired = listed(&before, &node_id).expect("a connected node is listed");
    assert_eq!(unpaired["connected"], true, "{unpaired}");
    assert_eq!(unpaired["paired"], false, "{unpaired}");
    assert_eq!(
        unpaired["commands"],
        json!([]),
        "nothing runs before approval: {unpaired}"
    );
    let refused = invoke(&mut op, &node_id, "camera.snap", "before-approval", 5_000).await?;
    assert_eq!(refused["ok"], false, "{refused}");
    let approved = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await?;
    assert_eq!(approved["ok"], true, "{approved}");
    let resolved = op.event("node.pair.resolved").await?;
    assert_eq!(resolved["payload"]["decision"], "approved", "{resolved}");

    // Listed and described from the other edge, with what it declared.
    let deadline = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let list = op.request("node.list", json!({})).await?;
        let entry = listed(&list, &node_id).expect("listed");
        if entry["commands"].as_array().is_some_and(|c| !c.is_empty()) || Instant::now() > deadline
        {
            break entry;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["paired"], true, "{entry}");
    assert_eq!(entry["connected"], true, "{entry}");
    assert_eq!(entry["displayName"], "Kitchen phone", "{entry}");
    assert_eq!(entry["commands"], json!(COMMANDS), "{entry}");
    assert_eq!(
        entry["caps"],
        json!(["camera", "location", "screen"]),
        "{entry}"
    );
    assert_eq!(entry["permissions"]["camera.capture"], true, "{entry}");
    // Presence, on the other edge too, lists the node's connection.
    let presence = op.request("system-presence", json!({})).await?;
    assert!(
        presence["payload"].as_array().is_some_and(|entries| entries
            .iter()
            .any(|e| e["deviceId"] == node_id.as_str() && e["roles"] == json!(["node"]))),
        "{presence}"
    );
    let described = op
        .request("node.describe", json!({"nodeId": node_id}))
        .await?;
    assert_eq!(
        described["payload"]["nodeId"],
        node_id.as_str(),
        "{described}"
    );
    assert!(described["payload"]["ts"].as_i64().is_some(), "{described}");
    assert!(
        described["payload"]["connectedAtMs"].as_i64().is_some(),
        "{described}"
    );

    // Invoked from edge 0; the result comes back there.
    let res = invoke(&mut op, &node_id, "camera.snap", "snap-1", 10_000).await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["ok"], true, "{res}");
    assert_eq!(res["payload"]["nodeId"], node_id.as_str());
    assert_eq!(res["payload"]["command"], "camera.snap");
    assert_eq!(res["payload"]["payload"]["format"], "jpg", "{res}");
    assert_eq!(
        res["payload"]["payload"]["params"],
        json!({"quality": 80}),
        "{res}"
    );
    assert!(res["payload"]["payloadJSON"].is_string(), "{res}");
    let received = node.invokes();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].idempotency_key.as_deref(), Some("snap-1"));
    assert!(received[0].raw.get("timeoutMs").is_some());

    // A retry of the same key runs once.
    let again = invoke(&mut op, &node_id, "camera.snap", "snap-1", 10_000).await?;
    assert_eq!(again["payload"], res["payload"], "{again}");
    assert_eq!(node.invokes_received(), 1);

    // A command the node did not declare, or a reserved one, never reaches it.
    for command in ["camera.clip", "system.execApprovals.get"] {
        let refused = invoke(&mut op, &node_id, command, command, 5_000).await?;
        assert_eq!(refused["ok"], false, "{refused}");
        assert_eq!(refused["error"]["code"], "INVALID_REQUEST", "{refused}");
    }
    assert_eq!(
        node.invokes_received(),
        1,
        "refused commands reached the node"
    );

    // The node's own error, as the reference words it.
    let failed = invoke(&mut op, &node_id, "location.get", "loc-1", 10_000).await?;
    assert_eq!(failed["error"]["code"], "UNAVAILABLE", "{failed}");
    assert_eq!(
        failed["error"]["message"], "LOCATION_DISABLED: location is off",
        "{failed}"
    );
    assert_eq!(
        failed["error"]["details"]["nodeError"]["code"],
        "LOCATION_DISABLED"
    );

    // An unknown node is not connected.
    let unknown = invoke(&mut op, "no-such-node", "camera.snap", "nobody", 5_000).await?;
    assert_eq!(
        unknown["error"]["details"]["code"], "NOT_CONNECTED",
        "{unknown}"
    );

    // A call made while the node reconnects (now to edge 0) succeeds once it is back.
    node.close().await;
    let id = op
        .send_request(
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "timeoutMs": 10_000,
                   "idempotencyKey": "during-reconnect"}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = RefNode::connect(&edge0, node_options(&identity, &token, protocol))
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    answering(&node);
    let res = op.response(&id).await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(node.invokes_received(), 1);
    node.close().await;

    // Back on edge 1, mid-call: killing edge 1 fails the call within a second.
    let node = RefNode::connect(&edge1, node_options(&identity, &token, protocol))
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    node.on_invoke(|_| InvokeReply::NoAnswer);
    let id = op
        .send_request(
            "node.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "timeoutMs": 20_000,
                   "idempotencyKey": "mid-kill"}),
        )
        .await?;
    anyhow::ensure!(
        node.wait_invokes(1, Duration::from_secs(5)).await,
        "the call did not reach the node"
    );
    let killed_at = Instant::now();
    cluster.kill("edge1").await?;
    let res = op.response(&id).await?;
    let took = killed_at.elapsed();
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["details"]["code"], "NOT_CONNECTED", "{res}");
    assert!(took < Duration::from_secs(1), "failed after {took:?}");
    let list = op.request("node.list", json!({})).await?;
    let entry = listed(&list, &node_id).expect("a paired node stays listed");
    assert_eq!(entry["connected"], false, "{entry}");
    assert_eq!(entry["paired"], true, "{entry}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_one_edge_is_paired_listed_and_invoked_from_another_v3() -> anyhow::Result<()> {
    nodes_across_edges(3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_one_edge_is_paired_listed_and_invoked_from_another_v4() -> anyhow::Result<()> {
    nodes_across_edges(4).await
}
