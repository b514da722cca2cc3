//! Agents use nodes: a runner built with a node registry offers each run the
//! commands of its user's live nodes as `node_*` tools and lets `exec` run on
//! a node after an approval. A fake edge (a subscriber of the node's pod
//! inbox, see `common::nodes`) answers the runner's `NodeInvokeRequest`s on
//! their reply topic, as a real edge does; the in-process bus, and Redis for
//! a cluster runner.

mod common;

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::run_event;
use clawgate_proto::run_events::decode_event;
use clawgate_proto::runner::{ListApprovalsRequest, RunnerApi as _};
use clawgate_proto::session::{
    AgentSettings, GetAgentRequest, SessionApi as _, SessionClient, StringList, UpdateAgentRequest,
};
use clawgate_runner::{ClusterOptions, ProviderConfig, RunnerConfig, RunnerService};
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::nodes::NodeRegistry;
use clawgate_runtime::nodes::memory::MemoryNodeRegistry;
use clawgate_runtime::redis::Redis;
use clawgate_session::SessionService;
use common::nodes::{
    ALICE_NODE, BOB_NODE, FakeEdge, call, offered, pending_approval, phone, record, resolve,
    results, world,
};
use common::{MockModel, Script, TENANT, principal, start};
use serde_json::{Value, json};

#[tokio::test]
async fn a_node_command_is_a_tool_that_returns_the_nodes_payload() {
    let first = call(
        "c1",
        "node_camera_snap",
        json!({"params": {"facing": "front"}}),
    );
    let mut w = world(first).await;
    w.h.start_run(start("main", "take a selfie", "r1"))
        .await
        .expect("started");
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(!results[0].is_error, "{results:?}");
    let payload: Value = serde_json::from_str(&results[0].result_json).expect("json");
    assert_eq!(payload, json!({"format": "jpg", "base64": "AAAA"}));

    // What the node received.
    let seen = w.alice.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].command, "camera.snap");
    assert_eq!(seen[0].node_id, ALICE_NODE);
    assert_eq!(seen[0].conn_id, format!("conn-{ALICE_NODE}"));
    let params: Value = serde_json::from_str(&seen[0].params_json).expect("params");
    assert_eq!(params, json!({"facing": "front"}));
    assert!(seen[0].reply_topic.starts_with("nodes."), "{:?}", seen[0]);
    assert!(!seen[0].idempotency_key.is_empty());
    assert!(
        seen[0].timeout_ms > 0 && seen[0].timeout_ms <= 400,
        "{:?}",
        seen[0]
    );

    // One tool per allowed non-exec command of alice's own nodes.
    let tools = offered(&w.h);
    for name in [
        "node_camera_snap",
        "node_location_get",
        "node_screen_record",
        "exec",
    ] {
        assert!(tools.contains_key(name), "{name}: {:?}", tools.keys());
    }
    let node_tools: Vec<&String> = tools.keys().filter(|n| n.starts_with("node_")).collect();
    assert_eq!(node_tools.len(), 3, "{node_tools:?}");
    let snap = &tools["node_camera_snap"];
    let description = snap["description"].as_str().expect("description");
    for part in [
        "camera.snap",
        "Alice's Phone",
        ALICE_NODE,
        "camera.capture=true",
        "location=false",
    ] {
        assert!(description.contains(part), "{part}: {description}");
    }
    assert!(snap["parameters"]["properties"]["params"].is_object());
    // One node offers it: `node` is not required.
    assert!(snap["parameters"].get("required").is_none(), "{snap}");
    // exec may run on a node.
    assert_eq!(
        tools["exec"]["parameters"]["properties"]["host"]["enum"],
        json!(["gateway", "node"])
    );
}

#[tokio::test]
async fn another_users_node_is_neither_offered_nor_callable() {
    let first = call("c1", "node_camera_snap", json!({"node": BOB_NODE}))
        .with_tool_call("c2", "node_bob_only", "{}")
        .with_tool_call("c3", "node_camera_snap", r#"{"node": "Bob's Mac"}"#);
    let mut w = world(first).await;
    w.h.start_run(start("main", "snap bob", "r1"))
        .await
        .expect("started");
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 3, "{results:?}");
    for result in &results {
        assert!(result.is_error, "{result:?}");
    }
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.tool_call_id == id)
            .map(|r| r.result_json.clone())
            .expect("result")
    };
    assert!(
        by_id("c1").contains("no connected node of yours named \"bob-mac\""),
        "{}",
        by_id("c1")
    );
    assert!(by_id("c1").contains(ALICE_NODE), "{}", by_id("c1"));
    assert_eq!(by_id("c2"), "unknown tool: node_bob_only");
    assert!(by_id("c3").contains("\"Bob's Mac\""), "{}", by_id("c3"));
    assert!(w.bob.seen().is_empty(), "{:?}", w.bob.seen());
    assert!(w.alice.seen().is_empty(), "{:?}", w.alice.seen());
    let tools = offered(&w.h);
    assert!(!tools.contains_key("node_bob_only"), "{:?}", tools.keys());
    let description = tools["node_camera_snap"]["description"]
        .as_str()
        .expect("text");
    assert!(!description.contains(BOB_NODE), "{description}");
}

#[tokio::test]
async fn exec_commands_and_the_approval_policy_are_never_node_tools() {
    let mut w = world(Script::text("Hi.")).await;
    w.h.start_run(start("main", "hi", "r1"))
        .await
        .expect("started");
    w.h.run_events("r1").await;
    let tools = offered(&w.h);
    for hidden in [
        "node_system_run",
        "node_system_which",
        "node_system_execApprovals_get",
    ] {
        assert!(!tools.contains_key(hidden), "{hidden}: {:?}", tools.keys());
    }
}

#[tokio::test]
async fn node_errors_and_timeouts_are_error_outputs() {
    let first = call("c1", "node_location_get", json!({})).with_tool_call(
        "c2",
        "node_screen_record",
        r#"{"node": "Alice's Phone", "params": {"seconds": 1}}"#,
    );
    let mut w = world(first).await;
    w.h.start_run(start("main", "where am I", "r1"))
        .await
        .expect("started");
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 2, "{results:?}");
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.tool_call_id == id)
            .expect("result")
    };
    let location = by_id("c1");
    assert!(location.is_error, "{location:?}");
    assert!(
        location
            .result_json
            .contains("LOCATION_DISABLED: location services are off"),
        "{location:?}"
    );
    let record = by_id("c2");
    assert!(record.is_error, "{record:?}");
    assert!(record.result_json.contains("timed out"), "{record:?}");
    // The model read both and answered.
    assert_eq!(w.h.model().requests().len(), 2);
    let mut commands = w.alice.commands();
    commands.sort();
    assert_eq!(commands, ["location.get", "screen.record"]);
}

#[tokio::test]
async fn an_agent_allowlist_needs_nodes_for_node_tools() {
    let w = world(Script::text("Hi.")).await;
    let mut h = w.h;
    let admin = Principal {
        tenant_id: TENANT.into(),
        user_id: "boss".into(),
        role: "admin".into(),
        ..Default::default()
    };
    let allow = |tools: &[&str]| UpdateAgentRequest {
        agent_id: "main".into(),
        settings: Some(AgentSettings {
            tools: Some(StringList {
                items: tools.iter().map(|t| (*t).to_owned()).collect(),
            }),
            ..Default::default()
        }),
    };
    h.session
        .update_agent(&admin, allow(&["sessions_list"]))
        .await
        .expect("allowlist set");
    h.start_run(start("main", "one", "r1"))
        .await
        .expect("started");
    h.run_events("r1").await;
    h.session
        .update_agent(&admin, allow(&["sessions_list", "nodes"]))
        .await
        .expect("allowlist set");
    h.start_run(start("main", "two", "r2"))
        .await
        .expect("started");
    h.run_events("r2").await;
    h.session
        .update_agent(&admin, allow(&["node_location_get"]))
        .await
        .expect("allowlist set");
    h.start_run(start("main", "three", "r3"))
        .await
        .expect("started");
    h.run_events("r3").await;
    let names = |index: usize| -> Vec<String> {
        let mut names: Vec<String> = h.model().requests()[index].body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(names(0), ["sessions_list"]);
    assert_eq!(
        names(1),
        [
            "node_camera_snap",
            "node_location_get",
            "node_screen_record",
            "sessions_list"
        ]
    );
    assert_eq!(names(2), ["node_location_get"]);
}

const COMMAND: &str = "echo hi; uname -a";

fn exec_on_node() -> Script {
    call(
        "c1",
        "exec",
        json!({"command": COMMAND, "host": "node", "workdir": "/tmp", "timeout": 5}),
    )
}

#[tokio::test]
async fn exec_on_a_node_is_approved_then_runs_system_run_there() {
    let mut w = world(exec_on_node()).await;
    w.h.start_run(start("main", "run it on my phone", "r1"))
        .await
        .expect("started");
    let approval = pending_approval(&w.h).await;
    assert_eq!(approval.host, "node");
    assert_eq!(approval.node_id, ALICE_NODE);
    assert_eq!(approval.command, COMMAND);
    assert_eq!(approval.cwd, "/tmp");
    assert_eq!(approval.run_id, "r1");
    let plan: Value = serde_json::from_str(&approval.system_run_plan_json).expect("plan");
    assert_eq!(
        plan,
        json!({
            "argv": ["/bin/sh", "-c", COMMAND],
            "cwd": "/tmp",
            "commandText": COMMAND,
            "commandPreview": COMMAND,
            "agentId": approval.agent_id,
            "sessionKey": "main",
        })
    );
    // Nothing reached the node before the decision.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(w.alice.seen().is_empty(), "{:?}", w.alice.seen());

    resolve(&w.h, &principal("alice"), &approval.id, "allow-once").await;
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(!results[0].is_error, "{results:?}");
    let output: Value = serde_json::from_str(&results[0].result_json).expect("json");
    assert_eq!(output["exitCode"], 0);
    assert_eq!(output["output"], "hi\n");
    assert_eq!(output["timedOut"], false);
    assert_eq!(output["host"], "node");
    assert_eq!(output["node"], ALICE_NODE);
    assert_eq!(output["cwd"], "/tmp");

    let seen = w.alice.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].command, "system.run");
    let params: Value = serde_json::from_str(&seen[0].params_json).expect("params");
    assert_eq!(params["command"], json!(["/bin/sh", "-c", COMMAND]));
    assert_eq!(params["rawCommand"], COMMAND);
    assert_eq!(params["cwd"], "/tmp");
    assert_eq!(params["timeoutMs"], 5000);
    assert_eq!(params["approved"], true);
    assert_eq!(params["approvalDecision"], "allow-once");
    assert_eq!(params["runId"], "r1");
    assert_eq!(params["sessionKey"], "main");
    assert!(w.bob.seen().is_empty());
}

#[tokio::test]
async fn a_denied_exec_on_a_node_never_reaches_it() {
    let mut w = world(exec_on_node()).await;
    w.h.start_run(start("main", "run it", "r1"))
        .await
        .expect("started");
    let approval = pending_approval(&w.h).await;
    resolve(&w.h, &principal("alice"), &approval.id, "deny").await;
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].is_error, "{results:?}");
    assert!(
        results[0].result_json.starts_with("exec denied: denied by"),
        "{results:?}"
    );
    assert!(w.alice.seen().is_empty(), "{:?}", w.alice.seen());
}

#[tokio::test]
async fn allow_always_on_a_node_is_the_nodes_not_the_gateways() {
    let mut w = world(exec_on_node()).await;
    w.h.start_run(start("main", "run it", "r1"))
        .await
        .expect("started");
    let approval = pending_approval(&w.h).await;
    let admin = Principal {
        tenant_id: TENANT.into(),
        user_id: "boss".into(),
        role: "admin".into(),
        ..Default::default()
    };
    resolve(&w.h, &admin, &approval.id, "allow-always").await;
    let results = results(&mut w.h, "r1").await;
    assert!(!results[0].is_error, "{results:?}");
    let params: Value = serde_json::from_str(&w.alice.seen()[0].params_json).expect("params");
    assert_eq!(params["approvalDecision"], "allow-always");
    // The agent's (gateway) exec allowlist did not get the command.
    let agent =
        w.h.session
            .get_agent(
                &principal("alice"),
                GetAgentRequest {
                    agent_id: approval.agent_id.clone(),
                },
            )
            .await
            .expect("agent");
    assert!(
        !agent.exec_allowlist.contains(&COMMAND.to_owned()),
        "{:?}",
        agent.exec_allowlist
    );
}

#[tokio::test]
async fn exec_on_a_node_needs_a_node_that_may_run_commands() {
    // Bob's node is not alice's, and a name no node has is refused.
    let first = call("c1", "exec", json!({"command": "true", "node": BOB_NODE})).with_tool_call(
        "c2",
        "exec",
        r#"{"command": "true", "host": "gateway", "node": "x"}"#,
    );
    let mut w = world(first).await;
    w.h.start_run(start("main", "run", "r1"))
        .await
        .expect("started");
    let results = results(&mut w.h, "r1").await;
    assert_eq!(results.len(), 2, "{results:?}");
    for result in &results {
        assert!(result.is_error, "{result:?}");
    }
    let c1 = &results
        .iter()
        .find(|r| r.tool_call_id == "c1")
        .expect("c1")
        .result_json;
    assert!(
        c1.contains("\"bob-mac\"") && c1.contains(ALICE_NODE),
        "{c1}"
    );
    let listed =
        w.h.runner
            .list_approvals(&principal("alice"), ListApprovalsRequest::default())
            .await
            .expect("listed");
    assert!(listed.approvals.is_empty(), "{listed:?}");
    assert!(w.bob.seen().is_empty() && w.alice.seen().is_empty());
}

/// A cluster runner calls nodes over Redis and reads their answers on its own
/// reply topic, `nodes.<runner id>`. Needs Redis (`CLAWGATE_TEST_REDIS_URL`,
/// default `redis://127.0.0.1:6379`); the test uses its own key prefix.
#[tokio::test]
async fn a_cluster_runner_calls_nodes_over_redis() {
    let url = std::env::var("CLAWGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&url, &prefix)
        .await
        .expect("this test needs Redis (CLAWGATE_TEST_REDIS_URL)");
    let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(&redis));
    let events = bus.subscriber(1024).await.expect("subscriber");
    events
        .control
        .subscribe(&Topic::user(TENANT, "alice"))
        .await
        .expect("subscribe");
    let mut deliveries = events.deliveries;
    let alice = FakeEdge::start(bus.clone(), "pod-a", Box::new(phone)).await;
    let registry = MemoryNodeRegistry::new();
    registry
        .put(&[record(
            ALICE_NODE,
            "alice",
            "pod-a",
            "Alice's Phone",
            &["camera.snap"],
        )])
        .await
        .expect("put");

    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let sessions = SessionService::connect(&db).await.expect("session db");
    sessions.migrate().await.expect("migrate");
    let session = SessionClient::local(Arc::new(sessions));
    let model = MockModel::start(Script::text("Done."))
        .await
        .expect("model");
    model.queue_script(call("c1", "node_camera_snap", json!({})));
    let config = RunnerConfig {
        provider: Some(ProviderConfig::new(model.base_url(), "mock")),
        ..RunnerConfig::default()
    };
    let options = ClusterOptions {
        runner_id: "runner-n1".into(),
        ..ClusterOptions::default()
    };
    let runner = RunnerService::builder(config, session, bus.clone())
        .cluster(redis, options)
        .nodes(Arc::new(registry))
        .build()
        .await
        .expect("runner");
    runner
        .start_run(&principal("alice"), start("main", "snap", "r1"))
        .await
        .expect("started");
    let result = loop {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .expect("an event in time")
            .expect("bus open");
        match decode_event(&delivery.payload).and_then(|event| event.kind) {
            Some(run_event::Kind::ToolResult(result)) => break result,
            Some(run_event::Kind::End(_) | run_event::Kind::Error(_)) => panic!("no tool result"),
            _ => {}
        }
    };
    assert!(!result.is_error, "{result:?}");
    assert_eq!(result.result_json, r#"{"base64":"AAAA","format":"jpg"}"#);
    let seen = alice.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].reply_topic, "nodes.runner-n1");
    runner.shutdown(Duration::from_secs(2)).await;
}
