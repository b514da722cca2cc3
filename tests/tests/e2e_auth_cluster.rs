//! Auth across edge processes: the binary as separate OS processes (two edges,
//! auth, session, runner) against real PostgreSQL and Redis. Revoking or rotating
//! a device token on one edge disconnects the device's socket held by the other
//! (4001), and pairing events crossing edges still respect the pairing scope.

mod auth_support;

use auth_support::{
    QUIET, assert_pairing_required, assert_rejected, backend_admin, connect, connect_ok,
    device_token, operator, paired, pairing_events,
};
use clawgate_runtime::db::testing::{TestDatabase, fresh_postgres_url};
use clawgate_tests::cluster::{Cluster, ClusterOptions, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ConnectSpec, DeviceIdentity, challenge_nonce};
use clawgate_tests::ws::WsClient;
use serde_json::json;

async fn cluster(model: &MockModel) -> anyhow::Result<(Cluster, TestDatabase)> {
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start(ClusterOptions {
        edges: 2,
        database_url: database.url().to_owned(),
        redis_url: test_redis_url(),
        model_base_url: model.base_url(),
        env: Vec::new(),
    })
    .await?;
    Ok((cluster, database))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_token_revoke_and_rotate_on_one_edge_disconnect_sockets_on_another()
-> anyhow::Result<()> {
    let model = MockModel::start(Script::text("hi")).await?;
    let (cluster, _database) = cluster(&model).await?;
    let (edge_a, edge_b) = (cluster.edge_urls[0].as_str(), cluster.edge_urls[1].as_str());
    let shared = cluster.gateway_token.as_str();
    let scopes = ["operator.read"];

    // Two devices, approved on loopback through edge B, each holding a socket on
    // edge B authenticated by its device token alone.
    let mut live = Vec::new();
    for _ in 0..2 {
        let identity = DeviceIdentity::generate();
        let (ws, hello) = paired(edge_b, shared, &identity, &operator(&scopes, shared)).await?;
        ws.close().await;
        let token = device_token(&hello);
        let spec = ConnectSpec::operator(&scopes).with_device_token(&token);
        let (ws, _) = connect_ok(edge_b, &identity, &spec).await?;
        live.push((identity, spec, ws));
    }
    let (mut admin, _) = backend_admin(edge_a, shared).await?;

    for ((identity, spec, ws), method) in live
        .iter_mut()
        .zip(["device.token.revoke", "device.token.rotate"])
    {
        let res = admin
            .request(
                method,
                json!({"deviceId": identity.device_id(), "role": "operator"}),
            )
            .await?;
        assert_eq!(res["ok"], true, "{method}: {res}");
        let closed = ws.expect_close().await?;
        assert_eq!(closed.code, Some(4001), "{method}: {closed:?}");
        // The old token is refused on the other edge at once.
        let (mut again, res) = connect(edge_b, identity, spec).await?;
        assert_rejected(
            &mut again,
            &res,
            "INVALID_REQUEST",
            Some("AUTH_DEVICE_TOKEN_MISMATCH"),
            1008,
        )
        .await?;
    }
    Ok(())
}

/// A pairing request made through edge A reaches a pairing-scoped socket on edge
/// B, and not a read-only socket there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_events_cross_edges_only_to_pairing_scoped_sockets() -> anyhow::Result<()> {
    let model = MockModel::start(Script::text("hi")).await?;
    let (cluster, _database) = cluster(&model).await?;
    let (edge_a, edge_b) = (cluster.edge_urls[0].as_str(), cluster.edge_urls[1].as_str());
    let shared = cluster.gateway_token.as_str();
    let (mut pairing, _) = paired(
        edge_b,
        shared,
        &DeviceIdentity::generate(),
        &operator(&["operator.pairing"], shared),
    )
    .await?;
    let (mut reader, _) = paired(
        edge_b,
        shared,
        &DeviceIdentity::generate(),
        &operator(&["operator.read"], shared),
    )
    .await?;
    pairing.drain(QUIET).await;
    reader.drain(QUIET).await;

    // Proxy headers make the device remote, so it is not approved silently.
    let device = DeviceIdentity::generate();
    let mut ws =
        WsClient::connect_with_headers(edge_a, &[("x-forwarded-for", "203.0.113.20")]).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let res = ws
        .request(
            "connect",
            operator(&["operator.read"], shared).params(&device, &nonce),
        )
        .await?;
    let request_id = assert_pairing_required(&mut ws, &res, &device).await?;
    let requested = pairing
        .event_where(|f| {
            f["event"] == "device.pair.requested"
                && f["payload"]["requestId"] == request_id.as_str()
        })
        .await?;
    assert_eq!(
        requested["payload"]["deviceId"],
        device.device_id().as_str()
    );
    let frames = reader.drain(QUIET).await;
    assert!(pairing_events(&frames).is_empty(), "{frames:?}");
    Ok(())
}
