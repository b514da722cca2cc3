//! Node pairing RPCs at the service level, on SQLite and PostgreSQL (as the
//! app role, under row-level security): pending requests and their merging,
//! `NodeConnected` (declared ∩ approved, repair requests, node principals
//! only), the approver's scope tiers, reject / remove / rename / verify, and
//! tenant and user isolation. Tokens are stored hashed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_auth::NODE_PAIRING_REQUEST_TTL_MS;
use clawgate_proto::ErrorCode::{Forbidden, InvalidRequest, NotFound};
use clawgate_proto::auth::{
    ApproveNodePairingRequest, ApproveNodePairingResponse, GetNodeRequest, GetNodeResponse,
    ListNodePairingResponse, NodeConnectedRequest, NodeConnectedResponse, NodeInfo, PairedNode,
    RejectNodePairingRequest, RejectNodePairingResponse, RemoveNodeRequest, RemoveNodeResponse,
    RenameNodeRequest, RequestNodePairingRequest, RequestNodePairingResponse, VerifyNodeRequest,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use support::{Harness, admin, assert_code, principal, strings};

behaviour_suite!(
    requests_are_created_then_merged,
    node_connected_opens_one_request,
    approval_needs_the_scope_tier,
    approved_commands_gate_and_repair,
    reject_remove_rename_verify,
    tenants_are_isolated,
    users_are_isolated,
    node_connected_is_for_the_node_itself,
);

type Answer<T> = Result<T, ServiceError>;

fn node(id: &str, commands: &[&str]) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        display_name: format!("node {id}"),
        platform: "ios".into(),
        version: "2026.9.6".into(),
        caps: strings(&["camera"]),
        commands: strings(commands),
        ..Default::default()
    }
}

/// A `node` connection of `user` in `tenant`, on device `device_id`.
fn node_principal(tenant: &str, user: &str, device_id: &str) -> Principal {
    Principal {
        role: "node".into(),
        ..principal(tenant, user, &[], device_id)
    }
}

/// Asserts that `answer` failed with `code` and, unless empty, `message`.
fn refused<T: std::fmt::Debug>(answer: Answer<T>, code: ErrorCode, message: &str) {
    let err = assert_code(answer, code);
    if !message.is_empty() {
        assert_eq!(err.message, message);
    }
}

/// The node pairing RPCs as `who` calls them (through the trait, as the edge does).
struct As<'h> {
    h: &'h Harness,
    who: Principal,
}

fn caller(h: &Harness, who: Principal) -> As<'_> {
    As { h, who }
}

impl As<'_> {
    async fn request(&self, node: NodeInfo) -> Answer<RequestNodePairingResponse> {
        let request = RequestNodePairingRequest {
            node: Some(node),
            silent: false,
        };
        self.h.api().request_node_pairing(&self.who, request).await
    }

    /// The id of the pending request this caller's request of `node` left.
    async fn pending(&self, node: NodeInfo) -> String {
        let answer = self.request(node).await.unwrap();
        answer.request.unwrap().request_id
    }

    async fn connected(&self, node: NodeInfo) -> Answer<NodeConnectedResponse> {
        let request = NodeConnectedRequest { node: Some(node) };
        self.h.api().node_connected(&self.who, request).await
    }

    async fn approve(&self, request_id: &str) -> Answer<ApproveNodePairingResponse> {
        let request_id = request_id.into();
        let request = ApproveNodePairingRequest { request_id };
        self.h.api().approve_node_pairing(&self.who, request).await
    }

    async fn reject(&self, request_id: &str) -> Answer<RejectNodePairingResponse> {
        let request_id = request_id.into();
        let request = RejectNodePairingRequest { request_id };
        self.h.api().reject_node_pairing(&self.who, request).await
    }

    async fn remove(&self, node_id: &str) -> Answer<RemoveNodeResponse> {
        let node_id = node_id.into();
        self.h
            .api()
            .remove_node(&self.who, RemoveNodeRequest { node_id })
            .await
    }

    async fn rename(&self, node_id: &str, name: &str) -> Answer<PairedNode> {
        let request = RenameNodeRequest {
            node_id: node_id.into(),
            display_name: name.into(),
        };
        self.h.api().rename_node(&self.who, request).await
    }

    async fn verify(&self, node_id: &str, token: &str) -> bool {
        let request = VerifyNodeRequest {
            node_id: node_id.into(),
            token: token.into(),
        };
        let verified = self.h.api().verify_node(&self.who, request).await.unwrap();
        assert_eq!(verified.node_id, node_id);
        verified.ok
    }

    async fn list(&self) -> ListNodePairingResponse {
        let api = self.h.api();
        api.list_node_pairing(&self.who, Default::default())
            .await
            .unwrap()
    }

    async fn get(&self, node_id: &str) -> GetNodeResponse {
        let node_id = node_id.into();
        self.h
            .api()
            .get_node(&self.who, GetNodeRequest { node_id })
            .await
            .unwrap()
    }
}

async fn requests_are_created_then_merged(h: &Harness) {
    let admin = caller(h, admin("default"));
    let first = admin.request(node("n1", &["camera.snap"])).await.unwrap();
    assert_eq!((first.status.as_str(), first.created), ("pending", true));
    assert!(first.paired.is_none());
    let pending = first.request.unwrap();
    assert_eq!(
        (pending.tenant_id.as_str(), pending.user_id.as_str()),
        ("default", "admin")
    );
    assert!(!pending.is_repair && !pending.request_id.is_empty());
    assert_eq!(pending.expires_at_ms, h.now() + NODE_PAIRING_REQUEST_TTL_MS);

    // Asked again: merged into the same request, its facts replaced.
    h.advance(1_000);
    let mut renamed = node("n1", &["screen.record", "camera.snap", " camera.snap"]);
    renamed.display_name = "Kitchen iPad".into();
    let second = admin.request(renamed).await.unwrap();
    assert_eq!((second.status.as_str(), second.created), ("pending", false));
    let merged = second.request.unwrap();
    assert_eq!(merged.request_id, pending.request_id);
    assert_eq!(merged.created_at_ms, pending.created_at_ms);
    let info = merged.node.unwrap();
    assert_eq!(info.display_name, "Kitchen iPad");
    assert_eq!(info.commands, ["camera.snap", "screen.record"]);
    let listed = admin.list().await;
    assert_eq!((listed.pending.len(), listed.paired.len()), (1, 0));
    let got = admin.get("n1").await;
    assert_eq!(got.pending.unwrap().request_id, pending.request_id);
    assert!(got.paired.is_none());

    // Newest first.
    h.advance(1_000);
    admin.pending(node("n0", &[])).await;
    let listed = admin.list().await.pending;
    let ids: Vec<String> = listed
        .into_iter()
        .map(|r| r.node.unwrap().node_id)
        .collect();
    assert_eq!(ids, ["n0", "n1"]);

    // Expired requests are gone; the next request is a new one.
    h.advance(NODE_PAIRING_REQUEST_TTL_MS + 1);
    assert!(admin.list().await.pending.is_empty());
    let again = admin.request(node("n1", &[])).await.unwrap();
    assert!(again.created);
    assert_ne!(again.request.unwrap().request_id, pending.request_id);

    let answer = admin.request(node("  ", &[])).await;

    refused(answer, InvalidRequest, "nodeId required");
    let answer = admin.request(node("n1", &["two words"])).await;
    refused(answer, InvalidRequest, "");
}

async fn node_connected_opens_one_request(h: &Harness) {
    let phone = caller(h, node_principal("default", "owner", "n2"));
    let first = phone.connected(node("n2", &["camera.snap"])).await.unwrap();
    assert!(first.paired.is_none() && first.allowed_commands.is_empty());
    let created = first.created.expect("a new request");
    assert_eq!(created.user_id, "owner");
    assert!(!created.is_repair);
    let second = phone.connected(node("n2", &["camera.snap"])).await.unwrap();
    assert!(second.created.is_none() && second.allowed_commands.is_empty());
    let pending = caller(h, admin("default")).list().await.pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request_id, created.request_id);
}

async fn approval_needs_the_scope_tier(h: &Harness) {
    let pat = |scopes: &[&str]| caller(h, principal("default", "pat", scopes, ""));
    let asker = pat(&["operator.pairing"]);
    let commandless = asker.pending(node("bare", &[])).await;
    let plain = asker.pending(node("cam", &["camera.snap"])).await;
    let exec = asker
        .pending(node("exec", &["camera.snap", "system.run"]))
        .await;

    let pairing_write = ["operator.pairing", "operator.write"];
    for (scopes, request_id, missing) in [
        (&["operator.write"][..], &commandless, "operator.pairing"),
        (&["operator.write"], &plain, "operator.pairing"),
        (&["operator.pairing"], &plain, "operator.write"),
        (&["operator.pairing"], &exec, "operator.admin"),
        (&pairing_write, &exec, "operator.admin"),
        (
            &["operator.write", "operator.approvals"],
            &exec,
            "operator.pairing",
        ),
    ] {
        let answer = pat(scopes).approve(request_id).await;
        refused(answer, Forbidden, &format!("missing scope: {missing}"));
    }
    // Every exec command needs admin.
    for exec_command in ["system.run.prepare", "system.which"] {
        let id = asker.pending(node(exec_command, &[exec_command])).await;
        let answer = pat(&pairing_write).approve(&id).await;
        refused(answer, Forbidden, "missing scope: operator.admin");
        caller(h, admin("default")).approve(&id).await.unwrap();
    }
    // Refusals left the requests pending.
    assert_eq!(asker.list().await.pending.len(), 3);
    pat(&["operator.pairing"])
        .approve(&commandless)
        .await
        .unwrap();
    pat(&pairing_write).approve(&plain).await.unwrap();
    let approved = pat(&["operator.admin"]).approve(&exec).await.unwrap();
    let paired = approved.node.unwrap();
    assert_eq!(paired.user_id, "pat");
    assert_eq!(paired.approved_commands, ["camera.snap", "system.run"]);
    assert_eq!(asker.list().await.paired.len(), 5);
    let admin = caller(h, admin("default"));
    refused(admin.approve(&exec).await, NotFound, "unknown requestId");
    let answer = admin.approve("").await;
    refused(answer, InvalidRequest, "requestId required");
}

async fn approved_commands_gate_and_repair(h: &Harness) {
    let admin = caller(h, admin("default"));
    let phone = caller(h, node_principal("default", "owner", "n3"));
    let declared = ["camera.snap", "screen.record"];
    let created = phone
        .connected(node("n3", &declared))
        .await
        .unwrap()
        .created
        .unwrap();
    h.advance(1_000);
    let approved = admin.approve(&created.request_id).await.unwrap();
    assert_eq!(approved.token.len(), 43, "32 random bytes, base64url");
    assert_eq!(approved.request.unwrap().request_id, created.request_id);
    let paired = approved.node.unwrap();
    assert_eq!(
        (paired.user_id.as_str(), paired.approved_at_ms),
        ("owner", h.now())
    );
    assert_eq!(paired.approved_commands, declared);
    assert!(admin.list().await.pending.is_empty());

    // Only the digest is stored.
    let sql = "SELECT token_hash FROM paired_nodes WHERE node_id = 'n3'";
    let stored: String = sqlx::query_scalar(sql)
        .fetch_one(h.db.pool())
        .await
        .unwrap();
    use sha2::Digest as _;
    assert_eq!(
        stored,
        hex::encode(sha2::Sha256::digest(approved.token.as_bytes()))
    );

    // A new declared command: allowed = declared ∩ approved, plus a repair request.
    let upgraded = ["camera.snap", "location.get"];
    let answer = phone.connected(node("n3", &upgraded)).await.unwrap();
    assert_eq!(answer.allowed_commands, ["camera.snap"]);
    assert_eq!(answer.paired.unwrap().approved_commands, declared);
    let repair = answer.created.expect("a repair request");
    assert!(repair.is_repair);
    assert_eq!(repair.node.unwrap().commands, upgraded);
    let again = phone.connected(node("n3", &upgraded)).await.unwrap();
    assert!(again.created.is_none(), "merged into the pending repair");
    let subset = phone
        .connected(node("n3", &["screen.record"]))
        .await
        .unwrap();
    assert_eq!(subset.allowed_commands, ["screen.record"]);
    assert!(subset.created.is_none());
    let asked = admin.request(node("n3", &["camera.snap"])).await.unwrap();
    assert_eq!((asked.status.as_str(), asked.created), ("paired", false));
    assert!(asked.request.is_none() && asked.paired.is_some());

    // Approving the repair approves the set it carries now (and rotates the token).
    let pending = admin.list().await.pending;
    assert_eq!(pending.len(), 1);
    h.advance(1_000);
    let repaired = admin.approve(&pending[0].request_id).await.unwrap();
    let after = repaired.node.unwrap();
    assert_eq!(after.created_at_ms, paired.created_at_ms);
    assert!(after.approved_at_ms > paired.approved_at_ms);
    assert_eq!(after.approved_commands, upgraded);
    assert!(admin.verify("n3", &repaired.token).await);
    assert!(!admin.verify("n3", &approved.token).await, "rotated");
    let allowed = phone.connected(node("n3", &upgraded)).await.unwrap();
    assert_eq!(
        (allowed.allowed_commands, allowed.created),
        (strings(&upgraded), None)
    );
    let dropped = phone.connected(node("n3", &declared)).await.unwrap();
    assert_eq!(dropped.allowed_commands, ["camera.snap"]);
    assert!(dropped.created.unwrap().is_repair);
}

async fn reject_remove_rename_verify(h: &Harness) {
    let admin = caller(h, admin("default"));
    let id = admin.pending(node("n4", &["camera.snap"])).await;
    let rejected = admin.reject(&id).await.unwrap();
    assert_eq!(rejected.request.unwrap().node.unwrap().node_id, "n4");
    assert!(admin.list().await.pending.is_empty());
    refused(admin.reject(&id).await, NotFound, "unknown requestId");

    let id = admin.pending(node("n4", &["camera.snap"])).await;
    let token = admin.approve(&id).await.unwrap().token;
    assert!(admin.verify("n4", &token).await);
    assert!(!admin.verify("n4", "not-the-token").await);
    assert!(!admin.verify("n4", "").await);
    assert!(!admin.verify("nope", &token).await);

    let renamed = admin.rename("n4", "  Kitchen iPad ").await.unwrap();
    assert_eq!(renamed.node.unwrap().display_name, "Kitchen iPad");
    let listed = admin.list().await.paired;
    assert_eq!(
        listed[0].node.as_ref().unwrap().display_name,
        "Kitchen iPad"
    );
    let answer = admin.rename("n4", "   ").await;
    refused(answer, InvalidRequest, "displayName required");
    let answer = admin.rename("n4", "").await;
    refused(answer, InvalidRequest, "displayName required");
    assert!(admin.rename("n4", &"x".repeat(128)).await.is_ok());
    let answer = admin.rename("n4", &"x".repeat(129)).await;
    refused(answer, InvalidRequest, "");
    refused(admin.rename("nope", "x").await, NotFound, "unknown nodeId");

    let removed = admin.remove("n4").await.unwrap();
    assert_eq!((removed.node_id.as_str(), removed.removed), ("n4", true));
    assert_eq!(removed.user_id, "admin");
    assert!(admin.list().await.paired.is_empty());
    assert!(!admin.verify("n4", &token).await);
    refused(admin.remove("n4").await, NotFound, "unknown nodeId");
    // A pending request alone is removed too.
    admin.pending(node("n5", &[])).await;
    admin.remove("n5").await.unwrap();
    let gone = admin.get("n5").await;
    assert!(gone.paired.is_none() && gone.pending.is_none());
}

async fn tenants_are_isolated(h: &Harness) {
    let owner = caller(h, admin("default"));
    let pending = owner.pending(node("n6", &[])).await;
    let id = owner.pending(node("n7", &["camera.snap"])).await;
    let token = owner.approve(&id).await.unwrap().token;

    let intruder = caller(h, admin("other"));
    let seen = intruder.list().await;
    assert!(seen.pending.is_empty() && seen.paired.is_empty());
    for request_id in [&pending, &id] {
        let answer = intruder.approve(request_id).await;
        refused(answer, NotFound, "unknown requestId");
        let answer = intruder.reject(request_id).await;
        refused(answer, NotFound, "unknown requestId");
    }
    for node_id in ["n6", "n7"] {
        refused(intruder.remove(node_id).await, NotFound, "unknown nodeId");
        let answer = intruder.rename(node_id, "mine").await;
        refused(answer, NotFound, "unknown nodeId");
        let got = intruder.get(node_id).await;
        assert!(got.paired.is_none() && got.pending.is_none());
    }
    assert!(!intruder.verify("n7", &token).await);
    // The same node id is a node of its own in the other tenant.
    let theirs = intruder
        .request(node("n7", &["camera.snap"]))
        .await
        .unwrap();
    assert_eq!((theirs.status.as_str(), theirs.created), ("pending", true));
    let phone = caller(h, node_principal("other", "eve", "n7"));
    let elsewhere = phone.connected(node("n7", &["camera.snap"])).await.unwrap();
    assert!(elsewhere.paired.is_none() && elsewhere.allowed_commands.is_empty());

    // Nothing changed in the first tenant.
    let mine = owner.list().await;
    assert_eq!((mine.pending.len(), mine.paired.len()), (1, 1));
    assert_eq!(mine.pending[0].request_id, pending);
    assert_eq!(mine.pending[0].user_id, "admin");
    assert!(owner.verify("n7", &token).await);
}

async fn users_are_isolated(h: &Harness) {
    let scopes = ["operator.pairing", "operator.write"];
    let pat = caller(h, principal("default", "pat", &scopes, ""));
    let sam = caller(h, principal("default", "sam", &scopes, ""));
    let admin = caller(h, admin("default"));
    let id = pat.pending(node("n8", &["camera.snap"])).await;

    assert!(sam.list().await.pending.is_empty());
    assert!(sam.get("n8").await.pending.is_none());
    refused(sam.approve(&id).await, NotFound, "unknown requestId");
    refused(sam.reject(&id).await, NotFound, "unknown requestId");
    refused(sam.remove("n8").await, NotFound, "unknown nodeId");
    let answer = sam.request(node("n8", &[])).await;
    refused(answer, Forbidden, "node pairing denied");
    assert_eq!(admin.list().await.pending.len(), 1);

    let token = pat.approve(&id).await.unwrap().token;
    assert_eq!(pat.list().await.paired.len(), 1);
    assert!(sam.list().await.paired.is_empty());
    assert!(sam.get("n8").await.paired.is_none());
    assert!(!sam.verify("n8", &token).await);
    refused(sam.rename("n8", "mine").await, NotFound, "unknown nodeId");
    let answer = sam.request(node("n8", &["camera.snap"])).await;
    refused(answer, Forbidden, "");
    // An admin asking for pat's node asks on pat's behalf.
    let asked = admin
        .request(node("n8", &["camera.snap", "screen.record"]))
        .await;
    let repair = asked.unwrap().request.unwrap();
    assert!(repair.is_repair);
    assert_eq!(repair.user_id, "pat");
    assert_eq!(pat.list().await.pending.len(), 1);
    let seen = admin.list().await;
    assert_eq!((seen.pending.len(), seen.paired.len()), (1, 1));
    assert!(pat.verify("n8", &token).await);
}

async fn node_connected_is_for_the_node_itself(h: &Harness) {
    let info = node("n9", &["camera.snap"]);
    let operator = caller(h, principal("default", "owner", &["operator.admin"], "n9"));
    let answer = operator.connected(info.clone()).await;
    refused(answer, Forbidden, "only a node reports its connection");
    for device in ["n10", ""] {
        let other = caller(h, node_principal("default", "owner", device));
        refused(other.connected(info.clone()).await, Forbidden, "");
    }
    let admin = caller(h, admin("default"));
    assert!(admin.list().await.pending.is_empty());

    // Paired for pat, now connecting as owner's device: nothing is allowed,
    // a repair request waits, and only an admin may hand the node over.
    let scopes = ["operator.pairing", "operator.write"];
    let pat = caller(h, principal("default", "pat", &scopes, ""));
    let id = pat.pending(info.clone()).await;
    pat.approve(&id).await.unwrap();
    let phone = caller(h, node_principal("default", "owner", "n9"));
    let answer = phone.connected(info.clone()).await.unwrap();
    assert!(answer.paired.is_none() && answer.allowed_commands.is_empty());
    let handover = answer.created.unwrap();
    assert!(handover.is_repair);
    assert_eq!(handover.user_id, "owner");
    let owner = caller(h, principal("default", "owner", &scopes, ""));
    let answer = owner.approve(&handover.request_id).await;
    refused(answer, Forbidden, "node pairing approval denied");
    let paired = admin.approve(&handover.request_id).await.unwrap();
    assert_eq!(paired.node.unwrap().user_id, "owner");
    let answer = phone.connected(info).await.unwrap();
    assert_eq!(answer.allowed_commands, ["camera.snap"]);
}
