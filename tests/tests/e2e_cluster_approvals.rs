//! Exec approvals across the process cluster (two edges, two runners, auth and
//! session as separate OS processes on PostgreSQL and Redis): a run's `exec`
//! call waits for a human decision that an operator on the *other* edge gives;
//! allow runs the command and the model reads its output, deny gives the
//! model a denied result, an approval nobody answers expires (at once when no
//! approver is connected), and of two concurrent answers exactly one applies.
//! Also: a tenant's own provider, whose key the runner process reads from the
//! auth process.

use std::time::{Duration, Instant};

use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_tests::cluster::{Cluster, ClusterOptions, Scale, test_redis_url};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::{WsClient, openclaw_connect_params};
use serde_json::{Value, json};

const DONE: &str = "Done with the command.";

/// An OpenClaw operator that may answer approvals.
async fn approver(url: &str, token: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = json!(["operator.read", "operator.write", "operator.approvals"]);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

async fn terminal_chat(client: &mut WsClient, run_id: &str) -> anyhow::Result<Value> {
    client
        .event_where(|e| {
            e["event"] == "chat"
                && e["payload"]["runId"] == run_id
                && e["payload"]["state"] != "delta"
        })
        .await
}

/// Queues a model step calling `exec` with `command`, then sends a message.
async fn send_exec(
    model: &MockModel,
    requester: &mut WsClient,
    run_id: &str,
    command: &str,
) -> anyhow::Result<()> {
    let arguments = json!({ "command": command }).to_string();
    model.queue_script(Script::tokens(["Running it."]).with_tool_call(
        format!("call-{run_id}"),
        "exec",
        &arguments,
    ));
    let res = requester
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "please run it", "idempotencyKey": run_id}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "chat.send failed: {res}");
    Ok(())
}

/// The tool result the model was sent for call `call-<run_id>`.
fn tool_result(model: &MockModel, run_id: &str) -> Option<String> {
    let call_id = format!("call-{run_id}");
    model.requests().iter().find_map(|request| {
        request.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id.as_str())
            .and_then(|m| m["content"].as_str().map(str::to_owned))
    })
}

async fn requested(client: &mut WsClient, command: &str) -> anyhow::Result<Value> {
    let event = client
        .event_where(|e| {
            e["event"] == "exec.approval.requested" && e["payload"]["request"]["command"] == command
        })
        .await?;
    Ok(event["payload"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_waits_for_an_approval_from_another_edge() -> anyhow::Result<()> {
    let model = MockModel::start(Script::text(DONE)).await?;
    let database = fresh_postgres_url().await?;
    let workspace = tempfile::tempdir()?;
    let workspace_arg = workspace.path().display().to_string();
    let cluster = Cluster::start_with(
        ClusterOptions {
            edges: 2,
            database_url: database.url().to_owned(),
            redis_url: test_redis_url(),
            model_base_url: model.base_url(),
            env: Vec::new(),
        },
        Scale {
            runners: 2,
            runner_args: vec![
                "--exec-workspace".into(),
                workspace_arg,
                "--approval-timeout-ms".into(),
                "3000".into(),
            ],
            ..Scale::default()
        },
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let (edge0, edge1) = (&cluster.edge_urls[0], &cluster.edge_urls[1]);

    // The requester may not answer approvals; the approver is on the other edge.
    let mut requester = WsClient::connect(edge0).await?;
    requester.openclaw_handshake(&token).await?;
    let mut operator = approver(edge1, &token).await?;
    // A goclaw admin of the tenant sees approvals too (and may answer them).
    let mut admin = WsClient::connect(edge0).await?;
    admin.goclaw_handshake(&token, "someone-else").await?;

    // Allowed from the other edge: the command runs, the model reads its output.
    send_exec(
        &model,
        &mut requester,
        "ap-allow",
        "echo approved-$((40+2))",
    )
    .await?;
    let asked = requested(&mut operator, "echo approved-$((40+2))").await?;
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    assert!(
        asked["expiresAtMs"].as_i64() > asked["createdAtMs"].as_i64(),
        "{asked}"
    );
    assert_eq!(asked["request"]["host"], "gateway", "{asked}");
    let seen = admin
        .event_where(|e| {
            e["event"] == "exec.approval.requested" && e["payload"]["id"] == id.as_str()
        })
        .await?;
    assert_eq!(
        seen["payload"]["command"], "echo approved-$((40+2))",
        "{seen}"
    );
    let listed = operator.request("exec.approval.list", json!({})).await?;
    assert!(
        listed["payload"]
            .as_array()
            .is_some_and(|list| list.iter().any(|a| a["id"] == id.as_str())),
        "{listed}"
    );
    let got = operator
        .request("exec.approval.get", json!({"id": &id[..8]}))
        .await?;
    assert_eq!(
        got["payload"]["commandText"], "echo approved-$((40+2))",
        "{got}"
    );
    assert_eq!(
        got["payload"]["allowedDecisions"],
        json!(["allow-once", "allow-always", "deny"])
    );
    // The requester without `operator.approvals` may not answer.
    let refused = requester
        .request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert_eq!(refused["ok"], false, "{refused}");
    let resolved = operator
        .request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert_eq!(resolved["payload"], json!({"ok": true}), "{resolved}");
    let event = operator.event("exec.approval.resolved").await?;
    assert_eq!(event["payload"]["id"], id.as_str());
    assert_eq!(event["payload"]["decision"], "allow-once");
    let final_chat = terminal_chat(&mut requester, "ap-allow").await?;
    assert_eq!(final_chat["payload"]["state"], "final", "{final_chat}");
    let output = tool_result(&model, "ap-allow").unwrap_or_default();
    assert!(output.contains("approved-42"), "{output}");
    // Resending the same decision is idempotent; it is no longer pending.
    let again = operator
        .request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert_eq!(again["ok"], true, "{again}");
    let waited = operator
        .request("exec.approval.waitDecision", json!({"id": id}))
        .await?;
    assert_eq!(waited["payload"]["decision"], "allow-once", "{waited}");

    // Denied (by the goclaw admin): nothing runs, the model reads why.
    let marker = workspace.path().join("denied-marker");
    let command = format!("touch {}", marker.display());
    send_exec(&model, &mut requester, "ap-deny", &command).await?;
    let asked = requested(&mut operator, &command).await?;
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    let denied = admin
        .request("exec.approval.deny", json!({"id": id}))
        .await?;
    assert_eq!(denied["payload"]["decision"], "deny", "{denied}");
    terminal_chat(&mut requester, "ap-deny").await?;
    let output = tool_result(&model, "ap-deny").unwrap_or_default();
    assert!(output.contains("exec denied"), "{output}");
    assert!(!marker.exists(), "a denied command ran");

    // Two answers at once, from both edges: exactly one applies.
    send_exec(&model, &mut requester, "ap-race", "echo raced").await?;
    let asked = requested(&mut operator, "echo raced").await?;
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    let allow_id = operator
        .send_request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    let deny_id = admin
        .send_request("exec.approval.deny", json!({"id": id}))
        .await?;
    let (allow, deny) = (
        operator.response(&allow_id).await?,
        admin.response(&deny_id).await?,
    );
    let applied = [allow["ok"] == true, deny["ok"] == true];
    assert_eq!(
        applied.iter().filter(|ok| **ok).count(),
        1,
        "{allow} {deny}"
    );
    let loser = if applied[0] { &deny } else { &allow };
    assert!(
        loser.to_string().contains("approval already resolved"),
        "{loser}"
    );
    terminal_chat(&mut requester, "ap-race").await?;
    let output = tool_result(&model, "ap-race").unwrap_or_default();
    assert_eq!(output.contains("raced"), applied[0], "{output}");
    assert_eq!(output.contains("exec denied"), applied[1], "{output}");
    let resolved_events: Vec<Value> = operator
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|e| e["event"] == "exec.approval.resolved" && e["payload"]["id"] == id.as_str())
        .collect();
    assert_eq!(resolved_events.len(), 1, "{resolved_events:?}");

    // Unanswered: it expires after the approval timeout (3 s).
    let started = Instant::now();
    send_exec(&model, &mut requester, "ap-late", "echo too-late").await?;
    let asked = requested(&mut operator, "echo too-late").await?;
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    let waited = operator
        .request("exec.approval.waitDecision", json!({"id": id}))
        .await?;
    assert_eq!(waited["payload"]["decision"], Value::Null, "{waited}");
    terminal_chat(&mut requester, "ap-late").await?;
    assert!(started.elapsed() >= Duration::from_millis(2_500));
    let output = tool_result(&model, "ap-late").unwrap_or_default();
    assert!(output.contains("expired"), "{output}");
    let late = operator
        .request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert!(
        late.to_string().contains("unknown or expired approval id"),
        "{late}"
    );

    // A tenant's own provider: its key reaches the runner process (over gRPC
    // from the auth process), the run calls it with that key.
    let own = MockModel::start(Script::text("own provider answer")).await?;
    let secret = admin
        .request(
            "secrets.set",
            json!({"name": "OWN_KEY", "value": "sk-cluster-own"}),
        )
        .await?;
    assert_eq!(secret["ok"], true, "{secret}");
    let provider = admin
        .request(
            "providers.set",
            json!({"id": "own", "kind": "openai", "base_url": own.base_url(),
                   "models": ["own-model"], "api_key_secret": "OWN_KEY"}),
        )
        .await?;
    assert_eq!(provider["ok"], true, "{provider}");
    let res = requester
        .request(
            "chat.send",
            json!({"sessionKey": "own", "message": "hi", "idempotencyKey": "ap-own"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    let done = terminal_chat(&mut requester, "ap-own").await?;
    assert_eq!(
        done["payload"]["message"]["content"][0]["text"], "own provider answer",
        "{done}"
    );
    let sent = own.requests();
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some("Bearer sk-cluster-own")
    );
    let deleted = admin
        .request("providers.delete", json!({"id": "own"}))
        .await?;
    assert_eq!(deleted["ok"], true, "{deleted}");

    // No approver connected: it expires at once, nothing is announced.
    operator.close().await;
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    send_exec(&model, &mut requester, "ap-nobody", "echo nobody").await?;
    terminal_chat(&mut requester, "ap-nobody").await?;
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    let output = tool_result(&model, "ap-nobody").unwrap_or_default();
    assert!(output.contains("expired"), "{output}");
    Ok(())
}
