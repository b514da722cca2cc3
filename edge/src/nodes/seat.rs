//! A node socket's place on this edge: what it declared at `connect` (caps,
//! commands, permissions and client facts, read from the already validated
//! connect params), reconciled with its node pairing by the auth service (the
//! commands it may run are those declared *and* approved; a node never paired,
//! or declaring commands its pairing did not approve, gets a pending request
//! announced as `node.pair.requested`), entered in [`super::EdgeNodes`].
//!
//! Invariant: the node's id, tenant and user come from the verified principal
//! (its device), never from the params.

use std::sync::Arc;

use clawgate_proto::auth::{AuthApi as _, NodeConnectedRequest, NodeInfo};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::nodes::NodeRecord;
use serde_json::Value;

use crate::hub::EventInbox;
use crate::methods::node_pairing;
use crate::notify::Notice;
use crate::state::{EdgeState, SocketInfo};

/// Sorted, deduplicated strings of `params[key]`.
fn sorted(params: &Value, key: &str) -> Vec<String> {
    let mut list: Vec<String> = params
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    list.sort();
    list.dedup();
    list
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The commands of `declared` that `approved` lists, sorted.
pub fn allowed(declared: &[String], approved: &[String]) -> Vec<String> {
    let mut allowed: Vec<String> = declared
        .iter()
        .filter(|command| approved.contains(command))
        .cloned()
        .collect();
    allowed.sort();
    allowed.dedup();
    allowed
}

/// The record of a node socket as it declared itself (not yet reconciled).
pub fn declared(
    principal: &Principal,
    info: &SocketInfo,
    params: &Value,
    pod_id: &str,
) -> NodeRecord {
    let client = params.get("client").cloned().unwrap_or(Value::Null);
    let permissions = params
        .get("permissions")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let now = now_ms();
    NodeRecord {
        tenant_id: principal.tenant_id.clone(),
        node_id: principal.device_id.clone(),
        user_id: principal.user_id.clone(),
        pod_id: pod_id.to_owned(),
        conn_id: info.conn_id.clone(),
        display_name: text(&client, "displayName"),
        platform: text(&client, "platform"),
        version: text(&client, "version"),
        client_id: text(&client, "id"),
        client_mode: text(&client, "mode"),
        device_family: text(&client, "deviceFamily"),
        model_identifier: text(&client, "modelIdentifier"),
        remote_ip: info.peer.remote_addr.clone(),
        path_env: text(params, "pathEnv"),
        caps: sorted(params, "caps"),
        commands: sorted(params, "commands"),
        permissions,
        connected: true,
        connected_at_ms: now,
        last_seen_at_ms: now,
        ..NodeRecord::default()
    }
}

fn node_info(record: &NodeRecord) -> NodeInfo {
    NodeInfo {
        node_id: record.node_id.clone(),
        display_name: record.display_name.clone(),
        platform: record.platform.clone(),
        version: record.version.clone(),
        core_version: record.core_version.clone(),
        ui_version: record.ui_version.clone(),
        device_family: record.device_family.clone(),
        model_identifier: record.model_identifier.clone(),
        caps: record.caps.clone(),
        commands: record.commands.clone(),
        remote_ip: record.remote_ip.clone(),
    }
}

/// Reconciles a node socket with its pairing and enters it (before its
/// `hello-ok`). Returns what to announce once `hello-ok` is queued.
pub async fn open(
    state: &Arc<EdgeState>,
    principal: &Principal,
    info: &SocketInfo,
    params: &Value,
    inbox: Arc<EventInbox>,
) -> Result<Vec<Notice>, ServiceError> {
    let mut record = declared(principal, info, params, &state.config.pod_id);
    let reconciled = state
        .services
        .auth
        .node_connected(
            principal,
            NodeConnectedRequest {
                node: Some(node_info(&record)),
            },
        )
        .await?;
    if let Some(paired) = &reconciled.paired {
        record.paired = true;
        record.approved_at_ms = paired.approved_at_ms;
        if record.display_name.is_empty()
            && let Some(node) = &paired.node
        {
            record.display_name = node.display_name.clone();
        }
    }
    record.allowed_commands = allowed(&record.commands, &reconciled.allowed_commands);
    state.nodes.add(record, inbox).await?;
    Ok(reconciled
        .created
        .iter()
        .map(|request| node_pairing::requested(request).into())
        .collect())
}
