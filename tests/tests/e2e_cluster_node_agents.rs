//! Agents use nodes across the process cluster (two edges, auth, session, a
//! runner with an exec workspace; PostgreSQL and Redis), with the reference
//! node client on edge 1 and a mock model driving the tool calls: a run of
//! the node's user calls the node's command as a tool (`node_camera_snap`) and
//! reads its payload (the node, following the session with `chat.subscribe`,
//! receives the run's `chat` events); then its `exec` with `host: "node"` waits for an
//! approval, which an operator on edge 1 (not the requester's edge) gives
//! seeing the node and the `systemRunPlan`, after which the node receives
//! `system.run` with the argv and `approved: true` and the model reads its
//! output. A denied one never reaches the node.

use std::time::Duration;

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_testkit::refnode::{InvokeReply, NodeIdentity, NodeOptions, RefNode};
use clawgate_tests::cluster::{Cluster, ClusterOptions, Scale, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::{WsClient, openclaw_connect_params};
use serde_json::{Value, json};

const DONE: &str = "All done.";

async fn connect(url: &str, token: &str, scopes: Value) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = scopes;
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

/// The tool result the model was sent for `call_id`.
fn tool_result(model: &MockModel, call_id: &str) -> Option<String> {
    model.requests().iter().find_map(|request| {
        request.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
            .and_then(|m| m["content"].as_str().map(str::to_owned))
    })
}

/// Whether the model was offered a tool named `name`.
fn offered(model: &MockModel, name: &str) -> bool {
    model.requests().iter().any(|request| {
        request.body["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["function"]["name"] == name))
    })
}

async fn run_to_end(
    model: &MockModel,
    requester: &mut WsClient,
    run_id: &str,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<()> {
    model.queue_script(Script::tokens(["On it."]).with_tool_call(
        format!("call-{run_id}"),
        tool,
        arguments.to_string(),
    ));
    let res = requester
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "use the node", "idempotencyKey": run_id}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "chat.send failed: {res}");
    Ok(())
}

async fn terminal(requester: &mut WsClient, run_id: &str) -> anyhow::Result<Value> {
    requester
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == run_id
                && e["payload"]["state"] != "delta"
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calls_a_node_command_and_runs_a_command_on_it_after_an_approval()
-> anyhow::Result<()> {
    let model = MockModel::start(Script::text(DONE)).await?;
    let database = fresh_postgres_url().await?;
    let workspace = tempfile::tempdir()?;
    let cluster = Cluster::start_with(
        ClusterOptions {
            edges: 2,
            database_url: database.url().to_owned(),
            redis_url: test_redis_url(),
            model_base_url: model.base_url(),
            env: Vec::new(),
        },
        Scale {
            runner_args: vec![
                "--exec-workspace".into(),
                workspace.path().display().to_string(),
                "--approval-timeout-ms".into(),
                "5000".into(),
            ],
            ..Scale::default()
        },
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let (edge0, edge1) = (&cluster.edge_urls[0], &cluster.edge_urls[1]);
    let mut requester = connect(edge0, &token, json!(["operator.read", "operator.write"])).await?;
    // Approving a node that may run programs takes an admin.
    let mut admin = connect(edge1, &token, json!(["operator.admin"])).await?;

    let identity = NodeIdentity::random();
    let node_id = identity.device_id();
    let mut options = NodeOptions::new(identity, &token)
        .with_commands(["camera.snap", "system.run"])
        .with_display_name("Lab host");
    options
        .permissions
        .insert("camera.capture".into(), json!(true));
    let node = RefNode::connect(edge1, options)
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    node.on_invoke(|request| match request.command.as_str() {
        "camera.snap" => InvokeReply::ok(json!({"format": "png", "width": 640})),
        "system.run" => InvokeReply::ok(json!({
            "exitCode": 0, "stdout": "node-says-42\n", "stderr": "",
            "timedOut": false, "success": true,
        })),
        _ => InvokeReply::error("UNKNOWN", "unexpected"),
    });
    let requested = admin.event("node.pair.requested").await?;
    let approved = admin
        .request(
            "node.pair.approve",
            json!({"requestId": requested["payload"]["requestId"]}),
        )
        .await?;
    anyhow::ensure!(approved["ok"] == true, "{approved}");
    admin.event("node.pair.resolved").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The node follows the session the runs are in.
    let followed = node
        .event("chat.subscribe", json!({"sessionKey": "main"}))
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    assert_eq!(followed["handled"], true, "{followed}");

    // The node's command as a tool.
    run_to_end(
        &model,
        &mut requester,
        "snap-run",
        "node_camera_snap",
        json!({}),
    )
    .await?;
    let end = terminal(&mut requester, "snap-run").await?;
    assert_eq!(end["payload"]["state"], "final", "{end}");
    let mut seen_final = None;
    while let Some(event) = node.next_event("chat", Duration::from_secs(5)).await {
        if event.payload["runId"] == "snap-run" && event.payload["state"] == "final" {
            seen_final = Some(event);
            break;
        }
    }
    let seen_final = seen_final.expect("the node receives the session's chat events");
    assert_eq!(
        seen_final.seq, None,
        "sent straight to the node: no seq in v3"
    );
    assert!(offered(&model, "node_camera_snap"));
    assert!(
        !offered(&model, "node_system_run"),
        "system.run is exec's, not a tool"
    );
    let output = tool_result(&model, "call-snap-run").unwrap_or_default();
    assert!(output.contains("\"width\":640"), "{output}");
    let snaps: Vec<_> = node
        .invokes()
        .into_iter()
        .filter(|i| i.command == "camera.snap")
        .collect();
    assert_eq!(snaps.len(), 1);

    // exec on the node: approved from edge 1, run by the node.
    run_to_end(
        &model,
        &mut requester,
        "exec-run",
        "exec",
        json!({"command": "echo node-says-$((40+2))", "host": "node"}),
    )
    .await?;
    let asked = admin.event("exec.approval.requested").await?;
    let request = &asked["payload"]["request"];
    assert_eq!(request["host"], "node", "{asked}");
    assert_eq!(request["nodeId"], node_id.as_str(), "{asked}");
    assert_eq!(
        request["systemRunPlan"]["argv"],
        json!(["/bin/sh", "-c", "echo node-says-$((40+2))"]),
        "{asked}"
    );
    assert!(
        node.invokes().iter().all(|i| i.command != "system.run"),
        "nothing runs before the approval"
    );
    let resolved = admin
        .request(
            "exec.approval.resolve",
            json!({"id": asked["payload"]["id"], "decision": "allow-once"}),
        )
        .await?;
    assert_eq!(resolved["ok"], true, "{resolved}");
    let end = terminal(&mut requester, "exec-run").await?;
    assert_eq!(end["payload"]["state"], "final", "{end}");
    let runs: Vec<_> = node
        .invokes()
        .into_iter()
        .filter(|i| i.command == "system.run")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].params["command"],
        json!(["/bin/sh", "-c", "echo node-says-$((40+2))"])
    );
    assert_eq!(runs[0].params["approved"], true);
    let output = tool_result(&model, "call-exec-run").unwrap_or_default();
    assert!(output.contains("node-says-42"), "{output}");

    // Denied: the node never hears of it.
    run_to_end(
        &model,
        &mut requester,
        "deny-run",
        "exec",
        json!({"command": "rm -rf /tmp/x", "host": "node"}),
    )
    .await?;
    let asked = admin.event("exec.approval.requested").await?;
    admin
        .request(
            "exec.approval.resolve",
            json!({"id": asked["payload"]["id"], "decision": "deny"}),
        )
        .await?;
    terminal(&mut requester, "deny-run").await?;
    let output = tool_result(&model, "call-deny-run").unwrap_or_default();
    assert!(output.contains("denied"), "{output}");
    let runs = node
        .invokes()
        .into_iter()
        .filter(|i| i.command == "system.run")
        .count();
    assert_eq!(runs, 1, "a denied command reached the node");
    Ok(())
}
