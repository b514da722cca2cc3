//! Scale-out with the process cluster: sockets of one user spread over three
//! edges, two runners behind a balanced channel; one run per session across the
//! cluster under concurrent sends on different edges; abort from another edge
//! than the one that started the run; `chat.replay` (clawgate extension).

use std::time::Duration;

use clawgate_tests::cluster::{Cluster, Scale, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const REPLY: &str = "One reply for every edge.";

async fn terminal_chat(client: &mut WsClient, run_id: &str) -> anyhow::Result<Value> {
    client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == run_id
                && e["payload"]["state"] != "delta"
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fans_out_to_sockets_of_its_user_on_three_edges() -> anyhow::Result<()> {
    let model = MockModel::start(
        Script::tokens(["One ", "reply ", "for ", "every ", "edge."])
            .with_delay(Duration::from_millis(20)),
    )
    .await?;
    let (cluster, _database) = Cluster::start_fresh(
        &model.base_url(),
        3,
        Scale {
            runners: 2,
            ..Scale::default()
        },
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let mut clients = Vec::new();
    for url in &cluster.edge_urls {
        let mut client = WsClient::connect(url).await?;
        client.openclaw_handshake(&token).await?;
        clients.push(client);
    }
    let res = clients[0]
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "fan out", "idempotencyKey": "fan-1"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    for client in &mut clients {
        let terminal = terminal_chat(client, "fan-1").await?;
        assert_eq!(terminal["payload"]["state"], "final", "{terminal}");
        assert_eq!(terminal["payload"]["message"]["content"][0]["text"], REPLY);
    }

    // The run's agent events can be read back through any edge (extension).
    let replay = clients[2]
        .request("chat.replay", json!({"runId": "fan-1"}))
        .await?;
    let events = replay["payload"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(replay["payload"]["complete"], true, "{replay}");
    assert_eq!(
        events.first().map(|e| e["stream"].clone()),
        Some(json!("lifecycle"))
    );
    let last_text = events
        .iter()
        .rev()
        .find(|e| e["stream"] == "assistant")
        .map(|e| e["data"]["text"].clone());
    assert_eq!(last_text, Some(json!(REPLY)), "{replay}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let tail = clients[2]
        .request(
            "chat.replay",
            json!({"runId": "fan-1", "afterSeq": seqs[1], "limit": 2}),
        )
        .await?;
    let tail_seqs: Vec<u64> = tail["payload"]["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(tail_seqs, seqs[2..4].to_vec(), "{tail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_session_across_edges_and_abort_from_another_edge() -> anyhow::Result<()> {
    let model = MockModel::start(Script::tokens(["still ", "going "]).then_hang()).await?;
    let (cluster, _database) = Cluster::start_fresh(
        &model.base_url(),
        3,
        Scale {
            runners: 2,
            ..Scale::default()
        },
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let mut clients = Vec::new();
    for url in &cluster.edge_urls {
        let mut client = WsClient::connect(url).await?;
        client.openclaw_handshake(&token).await?;
        clients.push(client);
    }
    // The same session, three different messages, sent at once on three edges.
    let mut ids = Vec::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let id = client
            .send_request(
                "chat.send",
                json!({"sessionKey": "main", "message": format!("m{index}"),
                       "idempotencyKey": format!("race-{index}")}),
            )
            .await?;
        ids.push(id);
    }
    let mut started = Vec::new();
    for (index, (client, id)) in clients.iter_mut().zip(&ids).enumerate() {
        let res = client.response(id).await?;
        if res["ok"] == true {
            assert_eq!(res["payload"]["status"], "started", "{res}");
            started.push(index);
        } else {
            assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
            assert_eq!(res["error"]["details"]["reason"], "session-busy", "{res}");
            assert_eq!(res["error"]["retryable"], true, "{res}");
        }
    }
    assert_eq!(started.len(), 1, "exactly one run may start: {started:?}");
    let owner = started[0];
    let run_id = format!("race-{owner}");
    clients[owner]
        .event_where(|e| e["event"] == "agent" && e["payload"]["stream"] == "assistant")
        .await?;

    // Abort through an edge that did not start the run (and maybe a runner
    // that does not own it).
    let other = (owner + 1) % clients.len();
    let res = clients[other]
        .request("chat.abort", json!({"sessionKey": "main", "runId": run_id}))
        .await?;
    assert_eq!(res["payload"]["aborted"], true, "{res}");
    for client in &mut clients {
        let terminal = terminal_chat(client, &run_id).await?;
        assert_eq!(terminal["payload"]["state"], "aborted", "{terminal}");
    }
    // The session is free again.
    model.set_script(Script::text("next"));
    let res = clients[other]
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "again", "idempotencyKey": "after-abort"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started", "{res}");
    let terminal = terminal_chat(&mut clients[other], "after-abort").await?;
    assert_eq!(terminal["payload"]["state"], "final", "{terminal}");
    Ok(())
}

mod auth_support;

/// A device's socket is entered in the device registry (pod inbox routing) while
/// it is open and removed when it closes; a revocation on another edge reaches
/// it through its pod's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sockets_are_registered_and_targeted_through_their_pod() -> anyhow::Result<()> {
    use auth_support::{backend_admin, connect_ok, device_token, operator, paired};
    use clawgate_tests::openclaw_device::{ConnectSpec, DeviceIdentity};
    use redis::AsyncCommands as _;

    let model = MockModel::start(Script::text("hi")).await?;
    let (cluster, _database) = Cluster::start_fresh(
        &model.base_url(),
        2,
        Scale {
            runners: 1,
            ..Scale::default()
        },
    )
    .await?;
    let (edge_a, edge_b) = (cluster.edge_urls[0].as_str(), cluster.edge_urls[1].as_str());
    let shared = cluster.gateway_token.as_str();
    let scopes = ["operator.read"];
    let identity = DeviceIdentity::generate();
    let (ws, hello) = paired(edge_b, shared, &identity, &operator(&scopes, shared)).await?;
    ws.close().await;
    let spec = ConnectSpec::operator(&scopes).with_device_token(&device_token(&hello));
    let (mut ws, _) = connect_ok(edge_b, &identity, &spec).await?;

    let key = format!(
        "{}:edge:dev:{{default:{}}}",
        cluster.redis_prefix,
        identity.device_id()
    );
    let mut redis = redis::Client::open(test_redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let members: Vec<String> = redis.zrange(&key, 0, -1).await?;
    assert_eq!(
        members.len(),
        1,
        "one live socket of the device: {members:?}"
    );

    let (mut admin, _) = backend_admin(edge_a, shared).await?;
    let res = admin
        .request(
            "device.token.revoke",
            json!({"deviceId": identity.device_id(), "role": "operator"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(ws.expect_close().await?.code, Some(4001));

    // The closed socket leaves the registry.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let members: Vec<String> = redis.zrange(&key, 0, -1).await?;
        if members.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "entry not removed: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
