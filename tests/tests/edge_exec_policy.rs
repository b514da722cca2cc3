//! `allow-always` and the exec approvals policy through the WebSocket: an
//! approver allows a command always, the agent's next identical `exec` runs
//! without asking while another command still asks; `exec.approvals.get`
//! shows the allowlist with a hash, `exec.approvals.set` refuses a stale
//! `baseHash`, rejects unknown keys and agents, and clearing the list makes
//! the command ask again. A user who may only answer their own approvals
//! cannot allow a command always.

mod edge_support;

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use edge_support::{ok, open, openclaw_params, until_chat_terminal};
use serde_json::{Value, json};

/// The embedded gateway with the `exec` tool (approvals expire after
/// `approval_timeout_ms`) and its mock model; the workspace lives as long
/// as the returned guard.
async fn exec_gateway(
    approval_timeout_ms: u64,
) -> anyhow::Result<(TestGateway, MockModel, tempfile::TempDir)> {
    let model = MockModel::start(Script::text("Done.")).await?;
    let workspace = tempfile::tempdir()?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        exec_workspace: Some(workspace.path().to_path_buf()),
        approval_timeout_ms: Some(approval_timeout_ms),
        ..Default::default()
    })
    .await?;
    Ok((gw, model, workspace))
}

async fn connect(url: &str, token: &str, scopes: &[&str]) -> anyhow::Result<WsClient> {
    let mut client = open(url).await?;
    let res = client
        .request("connect", openclaw_params(token, scopes))
        .await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

/// Runs an `exec` of `command` from `user`; returns the tool result the
/// model got. `answer` resolves the approval if one is asked (on `approver`).
async fn exec_turn(
    model: &MockModel,
    user: &mut WsClient,
    approver: &mut WsClient,
    key: &str,
    command: &str,
    answer: Option<&str>,
) -> anyhow::Result<(String, bool)> {
    model.queue_script(Script::tokens(["Running."]).with_tool_call(
        format!("call-{key}"),
        "exec",
        json!({ "command": command }).to_string(),
    ));
    let sent = user
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "run it", "idempotencyKey": key}),
        )
        .await?;
    ok(&sent)?;
    let mut asked = false;
    if let Some(decision) = answer {
        let request = approver.event("exec.approval.requested").await?;
        asked = true;
        let id = request["payload"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let resolved = approver
            .request(
                "exec.approval.resolve",
                json!({"id": id, "decision": decision}),
            )
            .await?;
        ok(&resolved)?;
    }
    until_chat_terminal(user, key).await?;
    let call_id = format!("call-{key}");
    let result = model
        .requests()
        .iter()
        .find_map(|request| {
            request.body["messages"].as_array()?.iter().find_map(|m| {
                (m["role"] == "tool" && m["tool_call_id"] == call_id.as_str())
                    .then(|| m["content"].as_str().unwrap_or_default().to_owned())
            })
        })
        .unwrap_or_default();
    Ok((result, asked))
}

#[tokio::test]
async fn allow_always_lets_the_same_command_run_without_asking() -> anyhow::Result<()> {
    let (gw, model, _workspace) = exec_gateway(10_000).await?;
    let token = gw.gateway_token.clone();
    let mut user = connect(&gw.ws_url, &token, &["operator.read", "operator.write"]).await?;
    let mut approver =
        connect(&gw.ws_url, &token, &["operator.read", "operator.approvals"]).await?;
    let mut admin = connect(&gw.ws_url, &token, &["operator.admin"]).await?;

    let (output, asked) = exec_turn(
        &model,
        &mut user,
        &mut approver,
        "a1",
        "echo always-ok",
        Some("allow-always"),
    )
    .await?;
    assert!(asked && output.contains("always-ok"), "{output}");
    // The same command again: no approval asked, it runs.
    let (output, asked) = exec_turn(
        &model,
        &mut user,
        &mut approver,
        "a2",
        "echo always-ok",
        None,
    )
    .await?;
    assert!(!asked && output.contains("always-ok"), "{output}");
    let quiet: Vec<Value> = approver
        .drain(std::time::Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|f| f["event"] == "exec.approval.requested")
        .collect();
    assert!(quiet.is_empty(), "{quiet:?}");
    // Another command still asks (and a denial stands).
    let (output, asked) = exec_turn(
        &model,
        &mut user,
        &mut approver,
        "a3",
        "echo other",
        Some("deny"),
    )
    .await?;
    assert!(asked && output.contains("exec denied"), "{output}");

    // The policy shows the allowlist.
    let got = admin.request("exec.approvals.get", json!({})).await?;
    let got = ok(&got)?.clone();
    assert_eq!(got["exists"], true, "{got}");
    assert_eq!(
        got["file"],
        json!({"version": 1, "agents": {"main": {"allowlist": [{"pattern": "echo always-ok"}]}}})
    );
    let hash = got["hash"].as_str().unwrap_or_default().to_owned();
    assert_eq!(hash.len(), 64, "{got}");
    let denied = user.request("exec.approvals.get", json!({})).await?;
    assert_eq!(denied["ok"], false, "{denied}");

    // A stale baseHash, unknown keys and unknown agents are refused.
    let stale = admin
        .request(
            "exec.approvals.set",
            json!({"file": {"version": 1, "agents": {}}, "baseHash": "0".repeat(64)}),
        )
        .await?;
    assert!(
        stale.to_string().contains("changed since last load"),
        "{stale}"
    );
    for bad in [
        json!({"file": {"version": 1, "defaults": {"security": "full"}}}),
        json!({"file": {"version": 1, "agents": {"main": {"security": "full"}}}}),
        json!({"file": {"version": 1, "agents": {"ghost": {"allowlist": [{"pattern": "ls"}]}}}}),
        json!({"file": {"version": 2}}),
    ] {
        let refused = admin.request("exec.approvals.set", bad.clone()).await?;
        assert_eq!(refused["ok"], false, "{bad} → {refused}");
    }
    let unchanged = admin.request("exec.approvals.get", json!({})).await?;
    assert_eq!(ok(&unchanged)?["hash"], hash.as_str());

    // Clearing the list (with the current hash) makes the command ask again.
    let cleared = admin
        .request(
            "exec.approvals.set",
            json!({"file": {"version": 1, "agents": {}}, "baseHash": hash}),
        )
        .await?;
    let cleared = ok(&cleared)?;
    assert_eq!(cleared["exists"], false, "{cleared}");
    assert_ne!(cleared["hash"], hash.as_str());
    let (output, asked) = exec_turn(
        &model,
        &mut user,
        &mut approver,
        "a4",
        "echo always-ok",
        Some("allow-once"),
    )
    .await?;
    assert!(asked && output.contains("always-ok"), "{output}");
    Ok(())
}

#[tokio::test]
async fn allow_always_needs_tenant_wide_approval() -> anyhow::Result<()> {
    let (gw, model, _workspace) = exec_gateway(10_000).await?;
    let mut admin = WsClient::connect(&gw.ws_url).await?;
    admin.goclaw_handshake(&gw.gateway_token, "boss").await?;
    // A goclaw operator answers their own approvals, but not "always".
    let mut dave = admin.operator_socket(&gw.ws_url, "dave").await?;
    model.queue_script(Script::tokens(["Running."]).with_tool_call(
        "call-g1",
        "exec",
        r#"{"command":"echo mine"}"#,
    ));
    let id = dave
        .send_request(
            "chat.send",
            json!({"sessionKey": "main", "message": "run", "idempotencyKey": "g1"}),
        )
        .await?;
    let asked = dave.event("exec.approval.requested").await?;
    let approval = asked["payload"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let always = dave
        .request(
            "exec.approval.approve",
            json!({"id": approval, "always": true}),
        )
        .await?;
    assert_eq!(always["ok"], false, "{always}");
    assert!(
        always.to_string().contains("allow-always needs"),
        "{always}"
    );
    let once = dave
        .request("exec.approval.approve", json!({"id": approval}))
        .await?;
    assert_eq!(ok(&once)?["decision"], "allow-once", "{once}");
    let answer = dave.response(&id).await?;
    assert_eq!(answer["ok"], true, "{answer}");
    Ok(())
}

#[tokio::test]
async fn an_aborted_run_leaves_no_approval_to_answer() -> anyhow::Result<()> {
    let (gw, model, _workspace) = exec_gateway(60_000).await?;
    let token = gw.gateway_token.clone();
    let mut user = connect(&gw.ws_url, &token, &["operator.read", "operator.write"]).await?;
    let mut approver =
        connect(&gw.ws_url, &token, &["operator.read", "operator.approvals"]).await?;
    model.queue_script(Script::tokens(["Running."]).with_tool_call(
        "call-ab",
        "exec",
        r#"{"command":"echo never"}"#,
    ));
    let sent = user
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "run it", "idempotencyKey": "ab1"}),
        )
        .await?;
    ok(&sent)?;
    let asked = approver.event("exec.approval.requested").await?;
    let id = asked["payload"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let listed = approver.request("exec.approval.list", json!({})).await?;
    assert_eq!(ok(&listed)?.as_array().map(Vec::len), Some(1), "{listed}");
    let aborted = user
        .request("chat.abort", json!({"sessionKey": "main", "runId": "ab1"}))
        .await?;
    ok(&aborted)?;
    until_chat_terminal(&mut user, "ab1").await?;
    // The abandoned approval is gone from the list and cannot be answered.
    let mut pending = 1;
    for _ in 0..40 {
        let listed = approver.request("exec.approval.list", json!({})).await?;
        pending = ok(&listed)?.as_array().map_or(0, Vec::len);
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0, "the abandoned approval is still listed");
    let late = approver
        .request(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert!(
        late.to_string().contains("unknown or expired approval id"),
        "{late}"
    );
    Ok(())
}
