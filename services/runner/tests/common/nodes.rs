//! Node fixtures: a fake edge pod (a subscriber of the pod's inbox topic that
//! answers the runner's `NodeInvokeRequest`s on their reply topic, as a real
//! edge does, and records them), node records, and a runner with nodes (alice's
//! phone on `pod-a`, bob's mac on `pod-b`) started on the harness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    BusMessage, NodeInvokeRequest, NodeInvokeResult, ToolResult, bus_message, run_event,
};
use clawgate_proto::runner::{
    ExecApproval, ListApprovalsRequest, ResolveApprovalRequest, RunnerApi as _,
};
use clawgate_runner::RunnerConfig;
use clawgate_runner::tools::exec::ExecConfig;
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::{EventBus, SubscriptionControl, Topic};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::device_registry::inbox_topic;
use clawgate_runtime::nodes::memory::MemoryNodeRegistry;
use clawgate_runtime::nodes::{NodeRecord, NodeRegistry};
use prost::Message as _;
use serde_json::{Value, json};

use super::{Harness, Options, Script, TENANT, principal};

pub const ALICE_NODE: &str = "phone-1";
pub const BOB_NODE: &str = "bob-mac";

/// How a fake edge answers one request: `None` never answers.
pub type Answer = Box<dyn Fn(&NodeInvokeRequest) -> Option<NodeInvokeResult> + Send + Sync>;

/// An edge pod holding nodes: records every request reaching it.
pub struct FakeEdge {
    seen: Arc<Mutex<Vec<NodeInvokeRequest>>>,
    _control: Arc<dyn SubscriptionControl>,
}

impl FakeEdge {
    pub async fn start(bus: Arc<dyn EventBus>, pod: &str, answer: Answer) -> Self {
        let mut subscriber = bus.subscriber(64).await.expect("subscriber");
        subscriber
            .control
            .subscribe(&inbox_topic(pod))
            .await
            .expect("subscribe");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some(delivery) = subscriber.deliveries.recv().await {
                let Ok(BusMessage {
                    body: Some(bus_message::Body::NodeInvokeRequest(request)),
                }) = BusMessage::decode(delivery.payload)
                else {
                    continue;
                };
                record.lock().expect("lock").push(request.clone());
                if let Some(result) = answer(&request) {
                    let message = BusMessage {
                        body: Some(bus_message::Body::NodeInvokeResult(result)),
                    };
                    let topic = Topic::from_name(request.reply_topic.clone());
                    bus.publish(&topic, Bytes::from(message.encode_to_vec()))
                        .await
                        .expect("published");
                }
            }
        });
        Self {
            seen,
            _control: subscriber.control,
        }
    }

    pub fn seen(&self) -> Vec<NodeInvokeRequest> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.seen().into_iter().map(|r| r.command).collect()
    }
}

pub fn ok(request: &NodeInvokeRequest, payload: Value) -> NodeInvokeResult {
    NodeInvokeResult {
        id: request.id.clone(),
        tenant_id: request.tenant_id.clone(),
        node_id: request.node_id.clone(),
        ok: true,
        payload_json: payload.to_string(),
        ..Default::default()
    }
}

/// The answers of alice's phone.
pub fn phone(request: &NodeInvokeRequest) -> Option<NodeInvokeResult> {
    match request.command.as_str() {
        "camera.snap" => Some(ok(request, json!({"format": "jpg", "base64": "AAAA"}))),
        "location.get" => Some(NodeInvokeResult {
            ok: false,
            error_code: "LOCATION_DISABLED".into(),
            error_message: "location services are off".into(),
            ..ok(request, json!(null))
        }),
        "system.run" => Some(ok(
            request,
            json!({"exitCode": 0, "stdout": "hi\n", "stderr": "", "timedOut": false,
                "success": true}),
        )),
        // `screen.record` never answers.
        _ => None,
    }
}

pub fn record(
    node_id: &str,
    user_id: &str,
    pod: &str,
    name: &str,
    commands: &[&str],
) -> NodeRecord {
    let commands: Vec<String> = commands.iter().map(|c| (*c).to_owned()).collect();
    let mut permissions = serde_json::Map::new();
    permissions.insert("camera.capture".into(), json!(true));
    permissions.insert("location".into(), json!(false));
    NodeRecord {
        tenant_id: TENANT.into(),
        node_id: node_id.into(),
        user_id: user_id.into(),
        pod_id: pod.into(),
        conn_id: format!("conn-{node_id}"),
        display_name: name.into(),
        platform: "ios".into(),
        commands: commands.clone(),
        allowed_commands: commands,
        permissions,
        paired: true,
        connected: true,
        expires_at_ms: now_ms() + 600_000,
        ..NodeRecord::default()
    }
}

pub struct World {
    pub h: Harness,
    pub alice: FakeEdge,
    pub bob: FakeEdge,
    _workspace: tempfile::TempDir,
}

/// A runner with nodes: alice's phone on pod-a, bob's mac on pod-b (which
/// answers everything). The model first runs `first`, then says "Done.".
pub async fn world(first: Script) -> World {
    let registry = MemoryNodeRegistry::new();
    registry
        .put(&[
            record(
                ALICE_NODE,
                "alice",
                "pod-a",
                "Alice's Phone",
                &[
                    "camera.snap",
                    "location.get",
                    "screen.record",
                    "system.run",
                    "system.which",
                    "system.execApprovals.get",
                ],
            ),
            record(
                BOB_NODE,
                "bob",
                "pod-b",
                "Bob's Mac",
                &["camera.snap", "bob.only", "system.run"],
            ),
        ])
        .await
        .expect("put");
    let bus = MemoryBus::new();
    let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
    let alice = FakeEdge::start(shared.clone(), "pod-a", Box::new(phone)).await;
    let bob = FakeEdge::start(
        shared,
        "pod-b",
        Box::new(|r: &NodeInvokeRequest| Some(ok(r, json!({})))),
    )
    .await;
    let workspace = tempfile::tempdir().expect("tempdir");
    let config = RunnerConfig {
        node_timeout: Duration::from_millis(400),
        exec: Some(ExecConfig::new(workspace.path())),
        ..RunnerConfig::default()
    };
    let options = Options {
        script: Some(Script::text("Done.")),
        config,
        bus: None,
    };
    let h = Harness::start_on(options, bus, Some(Arc::new(registry))).await;
    h.model().queue_script(first);
    World {
        h,
        alice,
        bob,
        _workspace: workspace,
    }
}

/// The tool results of `run_id`, in the order they were published.
pub async fn results(h: &mut Harness, run_id: &str) -> Vec<ToolResult> {
    h.run_events(run_id)
        .await
        .into_iter()
        .filter_map(|event| match event.kind {
            Some(run_event::Kind::ToolResult(result)) => Some(result),
            _ => None,
        })
        .collect()
}

/// The tools offered in the model's first request, by name.
pub fn offered(h: &Harness) -> serde_json::Map<String, Value> {
    let requests = h.model().requests();
    requests[0].body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| {
            let function = &tool["function"];
            (
                function["name"].as_str().expect("name").to_owned(),
                function.clone(),
            )
        })
        .collect()
}

pub fn call(id: &str, name: &str, arguments: Value) -> Script {
    Script::tokens(Vec::<String>::new()).with_tool_call(id, name, arguments.to_string())
}

/// Waits for the one pending approval of alice's.
pub async fn pending_approval(h: &Harness) -> ExecApproval {
    for _ in 0..500 {
        let listed = h
            .runner
            .list_approvals(&principal("alice"), ListApprovalsRequest::default())
            .await
            .expect("listed")
            .approvals;
        if let Some(approval) = listed.into_iter().next() {
            return approval;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no approval asked")
}

pub async fn resolve(h: &Harness, who: &Principal, id: &str, decision: &str) {
    h.runner
        .resolve_approval(
            who,
            ResolveApprovalRequest {
                id: id.into(),
                decision: decision.into(),
                ..Default::default()
            },
        )
        .await
        .expect("resolved");
}
