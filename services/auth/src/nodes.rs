//! Node pairing RPCs (OpenClaw §3.6 / §5.7): a store separate from device
//! pairing that approves the commands a node (a `node` connection, already
//! admitted by device pairing) declares. Request, list, approve, reject,
//! remove, verify, rename and get for operators; `NodeConnected` for the
//! edge, when a node socket completes its handshake.
//!
//! Invariants:
//! - tenant and user come from the verified principal only: every call is
//!   confined to the caller's tenant; admins and owners see every node of it,
//!   anyone else only its own user's nodes (another user's node or request is
//!   "unknown", like a missing one, and is never merged into or overwritten);
//! - `NodeConnected` is answered only to a `node` principal whose device is
//!   the node, for its own user: allowed commands are declared ∩ approved,
//!   and declared commands beyond the approved ones open (or refresh) a
//!   pending repair request, never an approval;
//! - an approver holds `operator.pairing`, plus `operator.write` when the
//!   request declares any command and `operator.admin` when it declares an
//!   exec command ([`EXEC_COMMANDS`]) (`operator.admin` grants all);
//! - a node's token is minted on approval, returned once, stored as its
//!   SHA-256 digest and compared in constant time.
//!
//! The edge checks `operator.pairing` of the other calls and publishes the
//! `node.pair.*` events the responses describe.

use clawgate_proto::auth::{
    ApproveNodePairingRequest, ApproveNodePairingResponse, GetNodeRequest, GetNodeResponse,
    ListNodePairingResponse, NodeConnectedRequest, NodeConnectedResponse, NodeInfo,
    NodePairingRequest, PairedNode, RejectNodePairingRequest, RejectNodePairingResponse,
    RemoveNodeRequest, RemoveNodeResponse, RenameNodeRequest, RequestNodePairingRequest,
    RequestNodePairingResponse, VerifyNodeRequest, VerifyNodeResponse,
};
use clawgate_proto::principal::{SCOPE_ADMIN, SCOPE_PAIRING, SCOPE_WRITE};
use clawgate_proto::{Principal, ServiceError};

use crate::store::{
    MergeOwner, NewNodeRequest, NodeFacts, NodeRequestRecord, PairedNodeRecord, Scope,
};
use crate::{AuthService, secret};

/// How long a pending node pairing request lives after its last merge.
pub const NODE_PAIRING_REQUEST_TTL_MS: i64 = 5 * 60 * 1000;
/// Commands whose approval needs `operator.admin` (remote execution).
pub const EXEC_COMMANDS: [&str; 3] = ["system.run", "system.run.prepare", "system.which"];
/// The role of a node connection.
const ROLE_NODE: &str = "node";
/// Longest accepted node id.
const MAX_NODE_ID_LEN: usize = 256;
/// Longest accepted text field of a node's facts.
const MAX_TEXT_LEN: usize = 256;
/// Longest accepted display name of a rename.
const MAX_DISPLAY_NAME_LEN: usize = 128;
/// Most caps or commands a node may declare.
const MAX_LIST_LEN: usize = 256;
/// Longest accepted cap or command name.
const MAX_ITEM_LEN: usize = 128;

/// `RequestNodePairing`: an operator asks to have a node's declared commands
/// approved, for the node's user (the paired record's or request's when the
/// caller sees the tenant, else its own).
pub async fn request(
    svc: &AuthService,
    principal: &Principal,
    request: RequestNodePairingRequest,
) -> Result<RequestNodePairingResponse, ServiceError> {
    principal.require()?;
    let node = facts_of(request.node)?;
    let tenant = principal.tenant_id.as_str();
    let paired = svc
        .store
        .paired_node(Scope::tenant(tenant), &node.node_id)
        .await?;
    if let Some(p) = &paired
        && !sees(principal, &p.user_id)
    {
        return Err(ServiceError::forbidden("node pairing denied"));
    }
    if let Some(p) = &paired
        && node.commands.iter().all(|c| p.node.commands.contains(c))
    {
        return Ok(RequestNodePairingResponse {
            status: "paired".to_owned(),
            paired: Some(paired_node(p)),
            ..Default::default()
        });
    }
    let (owner, merge) = if principal.sees_tenant() {
        let user = paired.as_ref().map_or(&principal.user_id, |p| &p.user_id);
        (user.clone(), MergeOwner::Keep)
    } else {
        (principal.user_id.clone(), MergeOwner::Refuse)
    };
    let now = svc.now();
    let new = NewNodeRequest {
        tenant_id: tenant.to_owned(),
        user_id: owner,
        node,
        silent: request.silent,
        is_repair: paired.is_some(),
        expires_at: now + NODE_PAIRING_REQUEST_TTL_MS,
    };
    let (pending, created) = svc.store.put_node_request(&new, merge, now).await?;
    if created {
        let (node, id) = (&pending.node.node_id, &pending.request_id);
        tracing::info!(node = %node, request = %id, "node pairing requested");
    }
    Ok(RequestNodePairingResponse {
        status: "pending".to_owned(),
        request: Some(pending_request(&pending)),
        created,
        paired: paired.as_ref().map(paired_node),
    })
}

/// `NodeConnected`: reconciles a node socket's declared commands with its
/// pairing. Only for the node itself (role `node`, device id = node id).
pub async fn connected(
    svc: &AuthService,
    principal: &Principal,
    request: NodeConnectedRequest,
) -> Result<NodeConnectedResponse, ServiceError> {
    principal.require()?;
    if principal.role != ROLE_NODE {
        return Err(ServiceError::forbidden(
            "only a node reports its connection",
        ));
    }
    let node = facts_of(request.node)?;
    if principal.device_id.is_empty() || principal.device_id != node.node_id {
        return Err(ServiceError::forbidden(
            "nodeId does not match the connected device",
        ));
    }
    let tenant = principal.tenant_id.as_str();
    let paired = svc
        .store
        .paired_node(Scope::tenant(tenant), &node.node_id)
        .await?;
    // A pairing made for another user (the device changed hands) grants nothing.
    let mine = paired.as_ref().filter(|p| p.user_id == principal.user_id);
    let mut allowed: Vec<String> = match mine {
        Some(p) => node
            .commands
            .iter()
            .filter(|c| p.node.commands.contains(c))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    allowed.sort();
    let up_to_date =
        mine.is_some_and(|p| node.commands.iter().all(|c| p.node.commands.contains(c)));
    let mut created = None;
    if !up_to_date {
        let now = svc.now();
        let new = NewNodeRequest {
            tenant_id: tenant.to_owned(),
            user_id: principal.user_id.clone(),
            node,
            silent: false,
            is_repair: paired.is_some(),
            expires_at: now + NODE_PAIRING_REQUEST_TTL_MS,
        };
        let (pending, is_new) = svc
            .store
            .put_node_request(&new, MergeOwner::TakeOver, now)
            .await?;
        if is_new {
            let (node, id, repair) = (
                &pending.node.node_id,
                &pending.request_id,
                pending.is_repair,
            );
            tracing::info!(node = %node, request = %id, repair, "connect requested node pairing");
            created = Some(pending_request(&pending));
        }
    }
    Ok(NodeConnectedResponse {
        paired: mine.map(paired_node),
        created,
        allowed_commands: allowed,
    })
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
) -> Result<ListNodePairingResponse, ServiceError> {
    principal.require()?;
    let scope = Scope::of(principal);
    let pending = svc.store.node_requests(scope, "", "", svc.now()).await?;
    let paired = svc.store.paired_nodes(scope, None).await?;
    Ok(ListNodePairingResponse {
        pending: pending.iter().map(pending_request).collect(),
        paired: paired.iter().map(paired_node).collect(),
    })
}

/// The scopes an approver of a request declaring `commands` must hold, in
/// the order they are checked.
pub fn approval_scopes(commands: &[String]) -> &'static [&'static str] {
    if commands.iter().any(|c| EXEC_COMMANDS.contains(&c.as_str())) {
        &[SCOPE_PAIRING, SCOPE_ADMIN]
    } else if commands.is_empty() {
        &[SCOPE_PAIRING]
    } else {
        &[SCOPE_PAIRING, SCOPE_WRITE]
    }
}

pub async fn approve(
    svc: &AuthService,
    principal: &Principal,
    request: ApproveNodePairingRequest,
) -> Result<ApproveNodePairingResponse, ServiceError> {
    principal.require()?;
    principal.require_scope(SCOPE_PAIRING)?;
    let request_id = required("requestId", &request.request_id)?;
    let scope = Scope::of(principal);
    let now = svc.now();
    let pending = svc
        .store
        .node_request(scope, request_id, now)
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown requestId"))?;
    for scope in approval_scopes(&pending.node.commands) {
        principal.require_scope(scope)?;
    }
    let token = secret::device_token();
    let node = svc
        .store
        .approve_node(scope, &pending, &token.hash(), now)
        .await?;
    let (node_id, id) = (&node.node.node_id, &pending.request_id);
    tracing::info!(node = %node_id, request = %id, "node pairing approved");
    Ok(ApproveNodePairingResponse {
        request: Some(pending_request(&pending)),
        node: Some(paired_node(&node)),
        token: token.into_inner(),
    })
}

pub async fn reject(
    svc: &AuthService,
    principal: &Principal,
    request: RejectNodePairingRequest,
) -> Result<RejectNodePairingResponse, ServiceError> {
    principal.require()?;
    let request_id = required("requestId", &request.request_id)?;
    let rejected = svc
        .store
        .take_node_request(Scope::of(principal), request_id, svc.now())
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown requestId"))?;
    let (node, id) = (&rejected.node.node_id, &rejected.request_id);
    tracing::info!(node = %node, request = %id, "node pairing rejected");
    Ok(RejectNodePairingResponse {
        request: Some(pending_request(&rejected)),
    })
}

pub async fn remove(
    svc: &AuthService,
    principal: &Principal,
    request: RemoveNodeRequest,
) -> Result<RemoveNodeResponse, ServiceError> {
    principal.require()?;
    let node_id = required("nodeId", &request.node_id)?;
    let owner = svc
        .store
        .delete_node(Scope::of(principal), node_id, svc.now())
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown nodeId"))?;
    tracing::info!(node = %node_id, "node removed");
    Ok(RemoveNodeResponse {
        node_id: node_id.to_owned(),
        removed: true,
        user_id: owner,
    })
}

/// Whether `token` is the paired node's; an unknown node (or one the caller
/// may not see) does not verify.
pub async fn verify(
    svc: &AuthService,
    principal: &Principal,
    request: VerifyNodeRequest,
) -> Result<VerifyNodeResponse, ServiceError> {
    principal.require()?;
    let node_id = required("nodeId", &request.node_id)?;
    let paired = svc.store.paired_node(Scope::of(principal), node_id).await?;
    let ok = !request.token.is_empty()
        && paired.is_some_and(|p| secret::matches_hash(&request.token, &p.token_hash));
    Ok(VerifyNodeResponse {
        ok,
        node_id: node_id.to_owned(),
    })
}

pub async fn rename(
    svc: &AuthService,
    principal: &Principal,
    request: RenameNodeRequest,
) -> Result<PairedNode, ServiceError> {
    principal.require()?;
    let node_id = required("nodeId", &request.node_id)?;
    let name = request.display_name.trim();
    if name.is_empty() {
        return Err(ServiceError::invalid("displayName required"));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid displayName"));
    }
    let renamed = svc
        .store
        .rename_node(Scope::of(principal), node_id, name)
        .await?
        .ok_or_else(|| ServiceError::not_found("unknown nodeId"))?;
    Ok(paired_node(&renamed))
}

pub async fn get(
    svc: &AuthService,
    principal: &Principal,
    request: GetNodeRequest,
) -> Result<GetNodeResponse, ServiceError> {
    principal.require()?;
    let node_id = required("nodeId", &request.node_id)?;
    let scope = Scope::of(principal);
    let paired = svc.store.paired_node(scope, node_id).await?;
    let pending = svc
        .store
        .node_requests(scope, node_id, "", svc.now())
        .await?;
    Ok(GetNodeResponse {
        paired: paired.as_ref().map(paired_node),
        pending: pending.first().map(pending_request),
    })
}

/// Whether `principal` may see a node of `user` (its tenant's, already).
fn sees(principal: &Principal, user: &str) -> bool {
    principal.sees_tenant() || principal.user_id == user
}

/// `value` trimmed, or INVALID_REQUEST "`name` required" when that is empty.
fn required<'a>(name: &str, value: &'a str) -> Result<&'a str, ServiceError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ServiceError::invalid(format!("{name} required")));
    }
    Ok(value)
}

/// The validated facts of `node`: texts trimmed, lists trimmed, deduplicated
/// and sorted.
fn facts_of(node: Option<NodeInfo>) -> Result<NodeFacts, ServiceError> {
    let node = node.ok_or_else(|| ServiceError::invalid("node required"))?;
    let node_id = required("nodeId", &node.node_id)?;
    if node_id.len() > MAX_NODE_ID_LEN || node_id.chars().any(char::is_control) {
        return Err(ServiceError::invalid("invalid nodeId"));
    }
    let text = |name: &str, value: &str| -> Result<String, ServiceError> {
        let value = value.trim();
        if value.chars().count() > MAX_TEXT_LEN || value.chars().any(char::is_control) {
            return Err(ServiceError::invalid(format!("invalid {name}")));
        }
        Ok(value.to_owned())
    };
    Ok(NodeFacts {
        node_id: node_id.to_owned(),
        display_name: text("displayName", &node.display_name)?,
        platform: text("platform", &node.platform)?,
        version: text("version", &node.version)?,
        core_version: text("coreVersion", &node.core_version)?,
        ui_version: text("uiVersion", &node.ui_version)?,
        device_family: text("deviceFamily", &node.device_family)?,
        model_identifier: text("modelIdentifier", &node.model_identifier)?,
        caps: names("caps", &node.caps)?,
        commands: names("commands", &node.commands)?,
        remote_ip: text("remoteIp", &node.remote_ip)?,
    })
}

/// A list of caps or commands, trimmed (empty entries dropped), deduplicated, sorted.
fn names(name: &str, items: &[String]) -> Result<Vec<String>, ServiceError> {
    if items.len() > MAX_LIST_LEN {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_LIST_LEN} {name}"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        if item.len() > MAX_ITEM_LEN || item.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ServiceError::invalid(format!("invalid {name} entry")));
        }
        out.push(item.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn info(node: &NodeFacts) -> NodeInfo {
    NodeInfo {
        node_id: node.node_id.clone(),
        display_name: node.display_name.clone(),
        platform: node.platform.clone(),
        version: node.version.clone(),
        core_version: node.core_version.clone(),
        ui_version: node.ui_version.clone(),
        device_family: node.device_family.clone(),
        model_identifier: node.model_identifier.clone(),
        caps: node.caps.clone(),
        commands: node.commands.clone(),
        remote_ip: node.remote_ip.clone(),
    }
}

fn pending_request(r: &NodeRequestRecord) -> NodePairingRequest {
    NodePairingRequest {
        request_id: r.request_id.clone(),
        tenant_id: r.tenant_id.clone(),
        user_id: r.user_id.clone(),
        node: Some(info(&r.node)),
        silent: r.silent,
        is_repair: r.is_repair,
        created_at_ms: r.created_at,
        expires_at_ms: r.expires_at,
    }
}

fn paired_node(p: &PairedNodeRecord) -> PairedNode {
    PairedNode {
        tenant_id: p.tenant_id.clone(),
        user_id: p.user_id.clone(),
        node: Some(info(&p.node)),
        approved_commands: p.node.commands.clone(),
        created_at_ms: p.created_at,
        approved_at_ms: p.approved_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn approval_tiers() {
        assert_eq!(approval_scopes(&[]), [SCOPE_PAIRING]);
        assert_eq!(
            approval_scopes(&strings(&["canvas.snapshot"])),
            [SCOPE_PAIRING, SCOPE_WRITE]
        );
        for exec in EXEC_COMMANDS {
            assert_eq!(
                approval_scopes(&strings(&["camera.snap", exec])),
                [SCOPE_PAIRING, SCOPE_ADMIN]
            );
        }
    }

    #[test]
    fn lists_are_normalized_and_bounded() {
        let list = names("commands", &strings(&[" b ", "a", "", "b"])).unwrap();
        assert_eq!(list, ["a", "b"]);
        assert!(names("commands", &strings(&["two words"])).is_err());
        assert!(names("commands", &vec!["x".to_owned(); MAX_LIST_LEN + 1]).is_err());
        assert!(facts_of(None).is_err());
        assert!(facts_of(Some(NodeInfo::default())).is_err());
    }
}
