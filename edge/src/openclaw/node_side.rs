//! What an OpenClaw connection of role `node` has that operators do not: the
//! sessions it follows (`node.event` `chat.subscribe`), the calls delivered to
//! it (`node.invoke.request`, sent straight to its socket, so without `seq` in
//! v3), and its reaction to its own pairing being resolved (the commands it
//! may run change on this edge's record at once).
//!
//! Pairing events of other nodes reach operators with `operator.pairing`
//! (admin satisfies it) of the node's tenant, and a non-admin only for nodes of
//! its own user ([`sees_node_pairing`]).
//!
//! Invariants: a node follows at most [`MAX_CHATS`] sessions, all of its own
//! user (the hub delivers only its user's runs); a call is rendered only for
//! the socket it names.

use std::collections::HashSet;
use std::sync::Arc;

use clawgate_proto::pb::common::v1::{NodeInvokeRequest, NodePairingEvent};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::{Value, json};

use crate::methods::Subscription;
use crate::out::EventOut;
use crate::state::EdgeState;

/// Sessions one node may follow.
pub const MAX_CHATS: usize = 64;

/// A node connection's own state.
#[derive(Debug, Default)]
pub struct NodeSide {
    chats: HashSet<String>,
}

impl NodeSide {
    /// Applies a `node.event` or passes on a `node.invoke.result` of the
    /// node `principal`; the answer to send.
    pub fn apply(
        &mut self,
        change: Subscription,
        state: &EdgeState,
        principal: &Principal,
    ) -> Result<Value, ServiceError> {
        match change {
            Subscription::NodeResult(result) => {
                Ok(if state.nodes.answer(&principal.connection_id, *result) {
                    json!({ "ok": true })
                } else {
                    json!({ "ok": true, "ignored": true })
                })
            }
            Subscription::NodeChat { key, on: true } => {
                if !self.chats.contains(&key) && self.chats.len() >= MAX_CHATS {
                    return Err(ServiceError::new(
                        ErrorCode::ResourceExhausted,
                        format!("at most {MAX_CHATS} chat subscriptions per node"),
                    ));
                }
                self.chats.insert(key);
                Ok(json!({ "ok": true, "event": "chat.subscribe", "handled": true }))
            }
            Subscription::NodeChat { key, on: false } => {
                self.chats.remove(&key);
                Ok(json!({ "ok": true, "event": "chat.unsubscribe", "handled": true }))
            }
            Subscription::NodeEvent { event } => Ok(json!({
                "ok": true,
                "event": event,
                "handled": false,
                "reason": "unsupported event",
            })),
            _ => Err(ServiceError::forbidden("unauthorized role: node")),
        }
    }

    /// Whether the node follows the session `key` (canonical).
    pub fn follows(&self, key: &str) -> bool {
        self.chats.contains(key)
    }
}

/// `node.invoke.request` for the node socket `principal`, if the call is for it.
pub fn invoke_request(principal: &Principal, request: &NodeInvokeRequest) -> Option<EventOut> {
    if request.conn_id != principal.connection_id || request.node_id != principal.device_id {
        return None;
    }
    let params_json = if request.params_json.is_empty() {
        Value::Null
    } else {
        Value::String(request.params_json.clone())
    };
    let mut payload = json!({
        "id": request.id,
        "nodeId": request.node_id,
        "command": request.command,
        "paramsJSON": params_json,
    });
    if request.timeout_ms > 0 {
        payload["timeoutMs"] = json!(request.timeout_ms);
    }
    if !request.idempotency_key.is_empty() {
        payload["idempotencyKey"] = json!(request.idempotency_key);
    }
    Some(EventOut::targeted("node.invoke.request", payload))
}

/// Whether an operator `principal` with the pairing scope sees `event`: one of
/// its tenant, and, unless it sees the whole tenant, of a node of its user.
pub fn sees_node_pairing(principal: &Principal, event: &NodePairingEvent) -> bool {
    event.tenant_id == principal.tenant_id
        && (principal.sees_tenant() || event.user_id == principal.user_id)
}

/// The node socket `principal` learns its own pairing was resolved: the
/// commands it may run change on this edge (in the background).
pub fn own_pairing(state: &Arc<EdgeState>, principal: &Principal, event: &NodePairingEvent) {
    if event.tenant_id != principal.tenant_id || event.node_id != principal.device_id {
        return;
    }
    let approved = match event.decision.as_str() {
        "approved" => Some(event.approved_commands.clone()),
        "removed" => None,
        _ => return,
    };
    let (state, tenant, node) = (
        state.clone(),
        event.tenant_id.clone(),
        event.node_id.clone(),
    );
    let at = clawgate_runtime::clock::now_ms();
    tokio::spawn(async move {
        state
            .nodes
            .apply_pairing(&tenant, &node, approved.as_deref(), at)
            .await;
    });
}

/// The frame of a node pairing event.
pub fn pairing_frame(event: &NodePairingEvent) -> Option<EventOut> {
    let payload: Value = serde_json::from_str(&event.payload_json).ok()?;
    let name = match event.event.as_str() {
        "node.pair.requested" => "node.pair.requested",
        "node.pair.resolved" => "node.pair.resolved",
        _ => return None,
    };
    Some(EventOut::droppable(name, payload))
}
