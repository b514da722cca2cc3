//! Nodes as operators see them, from any edge: `node.list {}` → `{ts,
//! nodes: [KnownNode]}`, `node.describe {nodeId}` → `{ts, ...KnownNode}`, and
//! `node.invoke {nodeId, command, params?, timeoutMs?, idempotencyKey}` →
//! `{ok: true, nodeId, command, payload, payloadJSON}` (OpenClaw §5.7; goclaw
//! admins call the same methods).
//!
//! A KnownNode joins the node's pairing (auth service) with its registry
//! record (what it declared, where it is connected, when it was last seen).
//! `connected` is true only while the record's lease holds *and* the pod
//! holding it is alive (its inbox has a listener), so a dead edge's nodes read
//! disconnected at once. `commands` are those the node may run (declared and
//! approved).
//!
//! Invariants: the tenant and user are the caller's; a caller that does not see
//! the whole tenant sees and invokes only its own user's nodes (another's
//! reads as unknown / not connected); invoke errors read as the reference's
//! (`UNAVAILABLE "node not connected"` with `details.code NOT_CONNECTED`,
//! `UNAVAILABLE "<code>: <message>"` with `details.nodeError`,
//! `INVALID_REQUEST` for a command the node may not run).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use clawgate_proto::auth::{AuthApi as _, ListNodePairingRequest, PairedNode};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::device_registry::inbox_topic;
use clawgate_runtime::nodes::NodeRecord;
use clawgate_runtime::nodes::invoker::{InvokeCall, InvokeError, Invoked};
use serde_json::{Map, Value, json};

use super::decl::{Method, Outcome, Request, Role, Runs, Scope, job};
use crate::params::Style;
use crate::state::EdgeState;

/// `node.invoke`'s wait when the caller names none (the reference's).
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
/// The longest wait a caller may ask for.
pub const MAX_TIMEOUT_MS: i64 = 10 * 60 * 1000;
const MAX_PARAMS_BYTES: usize = 512 * 1024;

pub const METHODS: &[Method] = &[
    Method::call(
        "node.list",
        Some(Scope::Read),
        Some(Role::Admin),
        |request| {
            request.closed(&[])?;
            Ok(job(Call::List))
        },
    ),
    Method::call(
        "node.describe",
        Some(Scope::Read),
        Some(Role::Admin),
        |request| {
            let obj = request.closed(&["nodeId"])?;
            let node_id = obj
                .req_nonempty_str("nodeId")
                .map_err(|why| request.invalid(why))?;
            Ok(job(Call::Describe(node_id.to_owned())))
        },
    ),
    Method::call(
        "node.invoke",
        Some(Scope::Write),
        Some(Role::Admin),
        parse_invoke,
    ),
];

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    List,
    Describe(String),
    Invoke(InvokeCall),
}

fn parse_invoke(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&["nodeId", "command", "params", "timeoutMs", "idempotencyKey"])?;
    let invalid = |why: String| request.invalid(why);
    let node_id = obj.req_nonempty_str("nodeId").map_err(invalid)?;
    let command = obj.req_str_len("command", 256).map_err(invalid)?;
    if command.trim().is_empty() {
        return Err(invalid("at /command: must not be empty".to_owned()));
    }
    let idempotency_key = obj.req_nonempty_str("idempotencyKey").map_err(invalid)?;
    let timeout_ms = obj
        .opt_int("timeoutMs", 0, MAX_TIMEOUT_MS)
        .map_err(invalid)?
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let params_json = match obj.raw("params") {
        None | Some(Value::Null) => String::new(),
        Some(params) => params.to_string(),
    };
    if params_json.len() > MAX_PARAMS_BYTES {
        return Err(invalid(format!(
            "at /params: larger than {MAX_PARAMS_BYTES} bytes"
        )));
    }
    Ok(job(Call::Invoke(InvokeCall {
        tenant_id: request.principal.tenant_id.clone(),
        node_id: node_id.to_owned(),
        owner: owner_of(request.principal),
        command: command.to_owned(),
        params_json,
        timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
        idempotency_key: idempotency_key.to_owned(),
    })))
}

/// `Some(user)` for a caller that sees only its own user's nodes.
pub fn owner_of(principal: &Principal) -> Option<String> {
    (!principal.sees_tenant()).then(|| principal.user_id.clone())
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        match self {
            Call::List => known_nodes(state, principal)
                .await
                .map(|nodes| json!({ "ts": now_ms(), "nodes": nodes }))
                .into(),
            Call::Describe(node_id) => describe(state, principal, &node_id).await.into(),
            Call::Invoke(call) => {
                // The tenant and owner are the verified caller's, whatever parsed them.
                let call = InvokeCall {
                    tenant_id: principal.tenant_id.clone(),
                    owner: owner_of(principal),
                    ..call
                };
                invoke_reply(state.nodes.invoker().invoke(call).await).into()
            }
        }
    }
}

/// The answer of `node.invoke`, or its error as the reference words it.
pub fn invoke_reply(outcome: Result<Invoked, InvokeError>) -> Result<Value, ServiceError> {
    match outcome {
        Ok(invoked) => {
            let payload = if invoked.payload_json.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&invoked.payload_json).unwrap_or(Value::Null)
            };
            let payload_json = if invoked.payload_json.is_empty() {
                Value::Null
            } else {
                Value::String(invoked.payload_json)
            };
            Ok(json!({
                "ok": true,
                "nodeId": invoked.node_id,
                "command": invoked.command,
                "payload": payload,
                "payloadJSON": payload_json,
            }))
        }
        Err(err) => Err(invoke_error(err)),
    }
}

pub fn invoke_error(err: InvokeError) -> ServiceError {
    match err {
        InvokeError::NotConnected => ServiceError::unavailable("node not connected")
            .with_details(json!({ "code": "NOT_CONNECTED" })),
        InvokeError::Disallowed(command) => {
            ServiceError::invalid(format!("node command not allowed: {command}"))
                .with_details(json!({ "code": "COMMAND_NOT_ALLOWED", "command": command }))
        }
        InvokeError::Timeout => node_error("TIMEOUT", "node invoke timed out"),
        InvokeError::Node { code, message } => node_error(&code, &message),
        InvokeError::Unavailable(why) => ServiceError::new(ErrorCode::Unavailable, why),
    }
}

fn node_error(code: &str, message: &str) -> ServiceError {
    ServiceError::unavailable(format!("{code}: {message}"))
        .with_details(json!({ "nodeError": { "code": code, "message": message } }))
}

async fn describe(
    state: &EdgeState,
    principal: &Principal,
    node_id: &str,
) -> Result<Value, ServiceError> {
    let nodes = known_nodes(state, principal).await?;
    let Some(Value::Object(node)) = nodes
        .into_iter()
        .find(|node| node.get("nodeId").and_then(Value::as_str) == Some(node_id))
    else {
        return Err(ServiceError::invalid("unknown nodeId")
            .with_details(json!({ "code": "UNKNOWN_NODE", "nodeId": node_id })));
    };
    let mut described = Map::new();
    described.insert("ts".into(), json!(now_ms()));
    described.extend(node);
    Ok(Value::Object(described))
}

/// Every node `principal` may see: paired ones and those whose record the
/// registry holds, connected first, then by name.
pub async fn known_nodes(
    state: &EdgeState,
    principal: &Principal,
) -> Result<Vec<Value>, ServiceError> {
    let (pairing, records) = tokio::join!(
        state
            .services
            .auth
            .list_node_pairing(principal, ListNodePairingRequest {}),
        state.nodes.registry().list(&principal.tenant_id),
    );
    let paired = pairing?.paired;
    let owner = owner_of(principal);
    let now = now_ms();
    let records: Vec<NodeRecord> = records?
        .into_iter()
        .filter(|r| owner.as_ref().is_none_or(|owner| *owner == r.user_id))
        .map(|r| r.observed(now))
        .collect();
    let alive = live_pods(state, &records).await;
    let mut by_id: BTreeMap<String, (Option<PairedNode>, Option<NodeRecord>)> = BTreeMap::new();
    for node in paired {
        let id = node
            .node
            .as_ref()
            .map(|n| n.node_id.clone())
            .unwrap_or_default();
        if !id.is_empty() {
            by_id.entry(id).or_default().0 = Some(node);
        }
    }
    for mut record in records {
        if record.connected && !alive.get(&record.pod_id).copied().unwrap_or(false) {
            record.connected = false;
            record.last_seen_reason = "edge gone".to_owned();
        }
        let id = record.node_id.clone();
        by_id.entry(id).or_default().1 = Some(record);
    }
    let mut nodes: Vec<Value> = by_id
        .into_iter()
        .filter(|(_, (paired, record))| {
            paired.is_some() || record.as_ref().is_some_and(|r| r.connected)
        })
        .map(|(id, (paired, record))| known_node(&id, paired.as_ref(), record.as_ref()))
        .collect();
    nodes.sort_by_key(|node| {
        let connected = node.get("connected").and_then(Value::as_bool) == Some(true);
        let name = node
            .get("displayName")
            .or_else(|| node.get("nodeId"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        (!connected, name)
    });
    Ok(nodes)
}

/// Whether each pod holding a connected record still listens on its inbox.
async fn live_pods(state: &EdgeState, records: &[NodeRecord]) -> HashMap<String, bool> {
    let mut pods: Vec<&str> = records
        .iter()
        .filter(|r| r.connected)
        .map(|r| r.pod_id.as_str())
        .collect();
    pods.sort_unstable();
    pods.dedup();
    let checks = pods.iter().map(|pod| async move {
        let listening = match state.services.bus.listeners(&inbox_topic(pod)).await {
            Ok(listeners) => listeners > 0,
            // Unknown: the lease decides.
            Err(_) => true,
        };
        ((*pod).to_owned(), listening)
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

fn put_text(node: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        node.insert(key.to_owned(), json!(value));
    }
}

fn put_ms(node: &mut Map<String, Value>, key: &str, value: i64) {
    if value > 0 {
        node.insert(key.to_owned(), json!(value));
    }
}

/// One KnownNode.
fn known_node(id: &str, paired: Option<&PairedNode>, record: Option<&NodeRecord>) -> Value {
    let info = paired.and_then(|p| p.node.as_ref());
    let mut node = Map::new();
    node.insert("nodeId".into(), json!(id));
    let pick = |live: Option<&str>, stored: Option<&str>| -> String {
        live.filter(|v| !v.is_empty())
            .or(stored)
            .unwrap_or_default()
            .to_owned()
    };
    let stored_name = info
        .map(|i| i.display_name.as_str())
        .filter(|n| !n.is_empty());
    // A rename (stored) wins over what the node calls itself.
    let display_name = stored_name
        .map(str::to_owned)
        .unwrap_or_else(|| pick(record.map(|r| r.display_name.as_str()), None));
    put_text(&mut node, "displayName", &display_name);
    put_text(
        &mut node,
        "platform",
        &pick(
            record.map(|r| r.platform.as_str()),
            info.map(|i| i.platform.as_str()),
        ),
    );
    put_text(
        &mut node,
        "version",
        &pick(
            record.map(|r| r.version.as_str()),
            info.map(|i| i.version.as_str()),
        ),
    );
    put_text(
        &mut node,
        "coreVersion",
        &pick(
            record.map(|r| r.core_version.as_str()),
            info.map(|i| i.core_version.as_str()),
        ),
    );
    put_text(
        &mut node,
        "uiVersion",
        &pick(
            record.map(|r| r.ui_version.as_str()),
            info.map(|i| i.ui_version.as_str()),
        ),
    );
    put_text(
        &mut node,
        "deviceFamily",
        &pick(
            record.map(|r| r.device_family.as_str()),
            info.map(|i| i.device_family.as_str()),
        ),
    );
    put_text(
        &mut node,
        "modelIdentifier",
        &pick(
            record.map(|r| r.model_identifier.as_str()),
            info.map(|i| i.model_identifier.as_str()),
        ),
    );
    put_text(
        &mut node,
        "remoteIp",
        &pick(
            record.map(|r| r.remote_ip.as_str()),
            info.map(|i| i.remote_ip.as_str()),
        ),
    );
    if let Some(record) = record {
        put_text(&mut node, "clientId", &record.client_id);
        put_text(&mut node, "clientMode", &record.client_mode);
        put_text(&mut node, "pathEnv", &record.path_env);
        if !record.permissions.is_empty() {
            node.insert(
                "permissions".into(),
                Value::Object(record.permissions.clone()),
            );
        }
        put_ms(&mut node, "connectedAtMs", record.connected_at_ms);
        put_ms(&mut node, "lastSeenAtMs", record.last_seen_at_ms);
        if !record.connected {
            put_text(&mut node, "lastSeenReason", &record.last_seen_reason);
        }
    }
    let mut caps: Vec<String> = record
        .map(|r| r.caps.clone())
        .or_else(|| info.map(|i| i.caps.clone()))
        .unwrap_or_default();
    caps.sort();
    let mut commands: Vec<String> = match (record, paired) {
        (Some(record), _) if record.connected => record.allowed_commands.clone(),
        (_, Some(paired)) => paired.approved_commands.clone(),
        _ => Vec::new(),
    };
    commands.sort();
    node.insert("caps".into(), json!(caps));
    node.insert("commands".into(), json!(commands));
    if let Some(paired) = paired {
        put_ms(&mut node, "approvedAtMs", paired.approved_at_ms);
    }
    node.insert("paired".into(), json!(paired.is_some()));
    node.insert(
        "connected".into(),
        json!(record.is_some_and(|r| r.connected)),
    );
    Value::Object(node)
}
