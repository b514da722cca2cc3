//! Node pairing (OpenClaw §3.6): a store separate from device pairing that
//! approves the commands a node declared. `node.pair.request {nodeId, …}` →
//! `{status, request, created}`, `node.pair.list {}` → `{pending, paired}`,
//! `node.pair.approve {requestId}` → `{requestId, node}`, `node.pair.reject
//! {requestId}` → `{requestId, nodeId}`, `node.pair.remove {nodeId}` →
//! `{nodeId}`, `node.pair.verify {nodeId, token}` → `{ok, nodeId}`,
//! `node.rename {nodeId, displayName}` → `{nodeId, displayName}`.
//!
//! A created request is announced as `node.pair.requested` (the request), a
//! decision as `node.pair.resolved {requestId, nodeId, decision, ts}`, on the
//! tenant's topic once the answer is queued; the edge holding the node applies
//! an approval's commands (or a removal) to the live node at once.
//!
//! Invariants: the tenant and user are the caller's (the auth service scopes
//! every call and checks the approver's scopes against the commands); no token
//! appears in a list or an event (only `approve` answers it, once, as
//! `node.token`).

use clawgate_proto::auth::{
    ApproveNodePairingRequest, AuthApi as _, ListNodePairingRequest, NodeInfo, NodePairingRequest,
    PairedNode, RejectNodePairingRequest, RemoveNodeRequest, RenameNodeRequest,
    RequestNodePairingRequest, VerifyNodeRequest,
};
use clawgate_proto::pb::common::v1::NodePairingEvent;
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Map, Value, json};

use super::decl::{Method, Outcome, Request, Role, Runs, Scope, job};
use crate::notify::Notice;
use crate::params::Style;
use crate::state::EdgeState;

pub const REQUESTED: &str = "node.pair.requested";
pub const RESOLVED: &str = "node.pair.resolved";

pub const METHODS: &[Method] = &[
    Method::call(
        "node.pair.request",
        Some(Scope::Pairing),
        None,
        parse_request,
    ),
    Method::call(
        "node.pair.list",
        Some(Scope::Pairing),
        Some(Role::Admin),
        |request| {
            request.closed(&[])?;
            Ok(job(Call::List))
        },
    ),
    Method::call(
        "node.pair.approve",
        Some(Scope::Pairing),
        Some(Role::Admin),
        |request| Ok(job(Call::Approve(request_id(request)?))),
    ),
    Method::call(
        "node.pair.reject",
        Some(Scope::Pairing),
        Some(Role::Admin),
        |request| Ok(job(Call::Reject(request_id(request)?))),
    ),
    Method::call(
        "node.pair.remove",
        Some(Scope::Pairing),
        Some(Role::Admin),
        |request| {
            let obj = request.closed(&["nodeId"])?;
            let node_id = obj
                .req_nonempty_str("nodeId")
                .map_err(|w| request.invalid(w))?;
            Ok(job(Call::Remove(node_id.to_owned())))
        },
    ),
    Method::call("node.pair.verify", Some(Scope::Pairing), None, |request| {
        let obj = request.closed(&["nodeId", "token"])?;
        let invalid = |why: String| request.invalid(why);
        Ok(job(Call::Verify {
            node_id: obj.req_nonempty_str("nodeId").map_err(invalid)?.to_owned(),
            token: obj.req_nonempty_str("token").map_err(invalid)?.to_owned(),
        }))
    }),
    Method::call("node.rename", Some(Scope::Pairing), None, |request| {
        let obj = request.closed(&["nodeId", "displayName"])?;
        let invalid = |why: String| request.invalid(why);
        Ok(job(Call::Rename {
            node_id: obj.req_nonempty_str("nodeId").map_err(invalid)?.to_owned(),
            display_name: obj
                .req_str_len("displayName", 128)
                .map_err(invalid)?
                .to_owned(),
        }))
    }),
];

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Request {
        node: Box<NodeInfo>,
        silent: bool,
    },
    List,
    Approve(String),
    Reject(String),
    Remove(String),
    Verify {
        node_id: String,
        token: String,
    },
    Rename {
        node_id: String,
        display_name: String,
    },
}

fn request_id(request: &Request<'_>) -> Result<String, ServiceError> {
    let obj = request.closed(&["requestId"])?;
    Ok(obj
        .req_nonempty_str("requestId")
        .map_err(|why| request.invalid(why))?
        .to_owned())
}

const REQUEST_KEYS: [&str; 12] = [
    "nodeId",
    "displayName",
    "platform",
    "version",
    "coreVersion",
    "uiVersion",
    "deviceFamily",
    "modelIdentifier",
    "caps",
    "commands",
    "remoteIp",
    "silent",
];

fn parse_request(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&REQUEST_KEYS)?;
    let invalid = |why: String| request.invalid(why);
    let text = |key: &str| -> Result<String, ServiceError> {
        Ok(obj
            .opt_str_len(key, 256)
            .map_err(invalid)?
            .unwrap_or_default()
            .to_owned())
    };
    let list = |key: &str| -> Result<Vec<String>, ServiceError> {
        let mut list = obj.opt_str_array(key).map_err(invalid)?.unwrap_or_default();
        list.sort();
        list.dedup();
        Ok(list)
    };
    let node = NodeInfo {
        node_id: obj.req_nonempty_str("nodeId").map_err(invalid)?.to_owned(),
        display_name: text("displayName")?,
        platform: text("platform")?,
        version: text("version")?,
        core_version: text("coreVersion")?,
        ui_version: text("uiVersion")?,
        device_family: text("deviceFamily")?,
        model_identifier: text("modelIdentifier")?,
        caps: list("caps")?,
        commands: list("commands")?,
        remote_ip: text("remoteIp")?,
    };
    let silent = obj.opt_bool("silent").map_err(invalid)?.unwrap_or(false);
    Ok(job(Call::Request {
        node: Box::new(node),
        silent,
    }))
}

fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), json!(value));
    }
}

/// The reference's fields of a node's facts.
fn info_fields(map: &mut Map<String, Value>, info: &NodeInfo) {
    map.insert("nodeId".into(), json!(info.node_id));
    put(map, "displayName", &info.display_name);
    put(map, "platform", &info.platform);
    put(map, "version", &info.version);
    put(map, "coreVersion", &info.core_version);
    put(map, "uiVersion", &info.ui_version);
    put(map, "deviceFamily", &info.device_family);
    put(map, "modelIdentifier", &info.model_identifier);
    put(map, "remoteIp", &info.remote_ip);
    map.insert("caps".into(), json!(info.caps));
    map.insert("commands".into(), json!(info.commands));
}

/// A pending request as the reference shows it.
pub fn request_json(request: &NodePairingRequest) -> Value {
    let mut map = Map::new();
    map.insert("requestId".into(), json!(request.request_id));
    if let Some(info) = &request.node {
        info_fields(&mut map, info);
    }
    if request.silent {
        map.insert("silent".into(), json!(true));
    }
    if request.is_repair {
        map.insert("isRepair".into(), json!(true));
    }
    map.insert("ts".into(), json!(request.created_at_ms));
    Value::Object(map)
}

/// A paired node as the reference shows it (without its token).
pub fn paired_json(node: &PairedNode) -> Value {
    let mut map = Map::new();
    if let Some(info) = &node.node {
        info_fields(&mut map, info);
    }
    map.insert("commands".into(), json!(node.approved_commands));
    map.insert("createdAtMs".into(), json!(node.created_at_ms));
    map.insert("approvedAtMs".into(), json!(node.approved_at_ms));
    Value::Object(map)
}

fn node_id_of(request: &NodePairingRequest) -> String {
    request
        .node
        .as_ref()
        .map(|n| n.node_id.clone())
        .unwrap_or_default()
}

/// `node.pair.requested` for a newly created request.
pub fn requested(request: &NodePairingRequest) -> NodePairingEvent {
    NodePairingEvent {
        tenant_id: request.tenant_id.clone(),
        user_id: request.user_id.clone(),
        node_id: node_id_of(request),
        event: REQUESTED.to_owned(),
        payload_json: request_json(request).to_string(),
        ..Default::default()
    }
}

fn resolved(
    tenant_id: &str,
    user_id: &str,
    request_id: &str,
    node_id: &str,
    decision: &str,
    approved_commands: Vec<String>,
) -> NodePairingEvent {
    let payload = json!({
        "requestId": request_id,
        "nodeId": node_id,
        "decision": decision,
        "ts": now_ms(),
    });
    NodePairingEvent {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        node_id: node_id.to_owned(),
        event: RESOLVED.to_owned(),
        payload_json: payload.to_string(),
        decision: decision.to_owned(),
        approved_commands,
    }
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        match run(self, state, principal).await {
            Ok((value, notices)) => Outcome {
                result: Ok(value),
                notices,
            },
            Err(err) => Err(err).into(),
        }
    }
}

async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
) -> Result<(Value, Vec<Notice>), ServiceError> {
    let auth = &state.services.auth;
    Ok(match call {
        Call::Request { node, silent } => {
            let answer = auth
                .request_node_pairing(
                    principal,
                    RequestNodePairingRequest {
                        node: Some(*node),
                        silent,
                    },
                )
                .await?;
            let request = answer.request.unwrap_or_default();
            let notices = if answer.created {
                vec![requested(&request).into()]
            } else {
                Vec::new()
            };
            let value = json!({
                "status": answer.status,
                "request": request_json(&request),
                "created": answer.created,
            });
            (value, notices)
        }
        Call::List => {
            let list = auth
                .list_node_pairing(principal, ListNodePairingRequest {})
                .await?;
            let pending: Vec<Value> = list.pending.iter().map(request_json).collect();
            let paired: Vec<Value> = list.paired.iter().map(paired_json).collect();
            (json!({ "pending": pending, "paired": paired }), Vec::new())
        }
        Call::Approve(request_id) => {
            let approved = auth
                .approve_node_pairing(principal, ApproveNodePairingRequest { request_id })
                .await?;
            let request = approved.request.unwrap_or_default();
            let node = approved.node.unwrap_or_default();
            let node_id = node_id_of(&request);
            let event = resolved(
                &request.tenant_id,
                &request.user_id,
                &request.request_id,
                &node_id,
                "approved",
                node.approved_commands.clone(),
            );
            // The node's token is answered this once, to the approver.
            let mut shown = paired_json(&node);
            shown["token"] = json!(approved.token);
            let value = json!({ "requestId": request.request_id, "node": shown });
            (value, vec![event.into()])
        }
        Call::Reject(request_id) => {
            let rejected = auth
                .reject_node_pairing(principal, RejectNodePairingRequest { request_id })
                .await?;
            let request = rejected.request.unwrap_or_default();
            let node_id = node_id_of(&request);
            let event = resolved(
                &request.tenant_id,
                &request.user_id,
                &request.request_id,
                &node_id,
                "rejected",
                Vec::new(),
            );
            let value = json!({ "requestId": request.request_id, "nodeId": node_id });
            (value, vec![event.into()])
        }
        Call::Remove(node_id) => {
            let removed = auth
                .remove_node(
                    principal,
                    RemoveNodeRequest {
                        node_id: node_id.clone(),
                    },
                )
                .await?;
            let owner = removed.user_id.clone();
            let event = resolved(
                &principal.tenant_id,
                &owner,
                "",
                &node_id,
                "removed",
                Vec::new(),
            );
            (json!({ "nodeId": removed.node_id }), vec![event.into()])
        }
        Call::Verify { node_id, token } => {
            let verified = auth
                .verify_node(principal, VerifyNodeRequest { node_id, token })
                .await?;
            (
                json!({ "ok": verified.ok, "nodeId": verified.node_id }),
                Vec::new(),
            )
        }
        Call::Rename {
            node_id,
            display_name,
        } => {
            let renamed = auth
                .rename_node(
                    principal,
                    RenameNodeRequest {
                        node_id,
                        display_name,
                    },
                )
                .await?;
            let info = renamed.node.unwrap_or_default();
            (
                json!({ "nodeId": info.node_id, "displayName": info.display_name }),
                Vec::new(),
            )
        }
    })
}
