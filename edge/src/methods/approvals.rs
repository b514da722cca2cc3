//! Exec approvals for both dialects: what an agent's `exec` call waits on,
//! listed and decided through any edge (the runner service owns them; see
//! `clawgate_runner::approvals`).
//!
//! OpenClaw (scope `operator.approvals`): `exec.approval.list {}` →
//! `[{id, request, createdAtMs, expiresAtMs}]`; `exec.approval.get {id}` →
//! `{id, commandText, commandPreview, allowedDecisions, host, nodeId, agentId,
//! expiresAtMs}`; `exec.approval.resolve {id, decision}` → `{ok: true}`;
//! `exec.approval.waitDecision {id}` → `{id, decision, createdAtMs,
//! expiresAtMs}` (decision `null` once expired). goclaw: `exec.approval.list`
//! (`{approvals: [...]}`, snake_case), `exec.approval.approve {id, always?}`,
//! `exec.approval.deny {id}`. Ids may be a unique prefix of a pending one.
//!
//! Events ([`requested_payload`], [`resolved_payload`]): `exec.approval.requested
//! {id, request, createdAtMs, expiresAtMs}` and `exec.approval.resolved {id,
//! decision, resolvedBy, ts, request}`, shown by each dialect to the sockets
//! that may decide the approval ([`sees_approval`]).
//!
//! Invariants: the tenant and the user come from the caller's verified
//! principal; the runner decides what the caller may see and applies a
//! decision exactly once; `waitDecision` waits in bounded calls (each below the
//! service call timeout) until the approval is decided or expires.

use clawgate_proto::pb::common::v1::{ApprovalChange, ExecApproval, ExecApprovalEvent};
use clawgate_proto::runner::{
    GetApprovalRequest, ListApprovalsRequest, ResolveApprovalRequest, RunnerApi,
    WaitApprovalRequest,
};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::out::EventOut;
use crate::params::{Obj, Style};
use crate::state::EdgeState;

pub const REQUESTED: &str = "exec.approval.requested";
pub const RESOLVED: &str = "exec.approval.resolved";

const DECISIONS: [&str; 3] = ["allow-once", "allow-always", "deny"];
/// Longest approval id (or prefix) accepted.
const MAX_ID_CHARS: usize = 64;
/// Longest `commandPreview`, in characters.
const PREVIEW_CHARS: usize = 120;
/// One `WaitApproval` call's bound (below the service call timeout).
const WAIT_SLICE_MS: u32 = 20_000;

pub const METHODS: &[Method] = &[
    Method::call(
        "exec.approval.list",
        Some(Scope::Approvals),
        Some(Role::Viewer),
        parse_call,
    ),
    Method::call(
        "exec.approval.get",
        Some(Scope::Approvals),
        None,
        parse_call,
    ),
    Method::call(
        "exec.approval.resolve",
        Some(Scope::Approvals),
        None,
        parse_call,
    ),
    Method::call(
        "exec.approval.waitDecision",
        Some(Scope::Approvals),
        None,
        parse_call,
    ),
    Method::call(
        "exec.approval.approve",
        None,
        Some(Role::Operator),
        parse_call,
    ),
    Method::call("exec.approval.deny", None, Some(Role::Operator), parse_call),
];

/// A validated call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    List,
    Get { id: String },
    Resolve { id: String, decision: String },
    Wait { id: String },
}

/// Validates `params` of `method`; `Ok(None)` when it is not an approval method.
pub fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| ServiceError::invalid(format!("invalid {method} params: {why}"));
    let obj = Obj::new(params, "").map_err(bad)?;
    let closed = |allowed: &[&str]| match style {
        Style::Camel => obj.closed(allowed).map_err(bad),
        Style::Snake => Ok(()),
    };
    let id = || -> Result<String, ServiceError> {
        let id = obj.req_str_len("id", MAX_ID_CHARS).map_err(bad)?.trim();
        if id.is_empty() {
            return Err(bad("at /id: must NOT be empty".to_owned()));
        }
        Ok(id.to_owned())
    };
    let call = match method {
        "exec.approval.list" => {
            closed(&[])?;
            Call::List
        }
        "exec.approval.get" => {
            closed(&["id"])?;
            Call::Get { id: id()? }
        }
        "exec.approval.waitDecision" => {
            closed(&["id"])?;
            Call::Wait { id: id()? }
        }
        "exec.approval.resolve" => {
            closed(&["id", "decision"])?;
            let decision = obj.req_enum("decision", &DECISIONS).map_err(bad)?;
            Call::Resolve {
                id: id()?,
                decision: decision.to_owned(),
            }
        }
        "exec.approval.approve" => {
            let always = obj.opt_bool("always").map_err(bad)?.unwrap_or(false);
            let decision = if always { "allow-always" } else { "allow-once" };
            Call::Resolve {
                id: id()?,
                decision: decision.to_owned(),
            }
        }
        "exec.approval.deny" => Call::Resolve {
            id: id()?,
            decision: "deny".to_owned(),
        },
        _ => return Ok(None),
    };
    Ok(Some(call))
}

fn parse_call(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    declared(parse(request.method, request.params, request.style)?)
}

/// The `request` object of an approval, as OpenClaw shows it.
fn request_json(approval: &ExecApproval) -> Value {
    let mut request = json!({
        "command": approval.command,
        "cwd": approval.cwd,
        "host": approval.host,
        "agentId": approval.agent_id,
        "sessionKey": approval.session_key,
    });
    // A command for a node carries its node and the plan the node will run.
    if !approval.node_id.is_empty() {
        request["nodeId"] = json!(approval.node_id);
        if let Ok(plan) = serde_json::from_str::<Value>(&approval.system_run_plan_json) {
            request["systemRunPlan"] = plan;
        }
    }
    request
}

fn node_id_json(approval: &ExecApproval) -> Value {
    if approval.node_id.is_empty() {
        Value::Null
    } else {
        json!(approval.node_id)
    }
}

/// An approval as goclaw lists it.
fn goclaw_json(approval: &ExecApproval) -> Value {
    json!({
        "id": approval.id,
        "command": approval.command,
        "cwd": approval.cwd,
        "host": approval.host,
        "node_id": approval.node_id,
        "agent_id": approval.agent_id,
        "session_key": approval.session_key,
        "user_id": approval.user_id,
        "created_at_ms": approval.created_at_ms,
        "expires_at_ms": approval.expires_at_ms,
        "decision": approval.decision,
    })
}

/// `exec.approval.requested`'s payload (also a list entry).
pub fn requested_payload(approval: &ExecApproval, style: Style) -> Value {
    match style {
        Style::Camel => json!({
            "id": approval.id,
            "request": request_json(approval),
            "createdAtMs": approval.created_at_ms,
            "expiresAtMs": approval.expires_at_ms,
        }),
        Style::Snake => goclaw_json(approval),
    }
}

/// `exec.approval.resolved`'s payload.
pub fn resolved_payload(approval: &ExecApproval, style: Style) -> Value {
    match style {
        Style::Camel => json!({
            "id": approval.id,
            "decision": approval.decision,
            "resolvedBy": approval.resolved_by,
            "ts": approval.resolved_at_ms,
            "request": request_json(approval),
        }),
        Style::Snake => {
            let mut value = goclaw_json(approval);
            value["resolved_by"] = json!(approval.resolved_by);
            value["ts"] = json!(approval.resolved_at_ms);
            value
        }
    }
}

/// Whether a connection of `principal` sees events of `approval`: of its
/// tenant, and either it may decide every approval of the tenant (an admin or
/// owner, or `operator.approvals`) or the approval is of its own user's run
/// and `own_user` (the dialect lets users decide their own).
pub fn sees_approval(principal: &Principal, approval: &ExecApproval, own_user: bool) -> bool {
    approval.tenant_id == principal.tenant_id
        && (principal.approves_tenant() || (own_user && approval.user_id == principal.user_id))
}

/// The frame a connection of `principal` (goclaw or OpenClaw) gets for
/// `event`: `None` unless it may answer approvals
/// ([`crate::approvers::may_answer`]) and may see this one ([`sees_approval`];
/// goclaw users see their own user's).
pub fn event_for(
    principal: &Principal,
    event: &ExecApprovalEvent,
    goclaw: bool,
) -> Option<EventOut> {
    let approval = event.approval.as_ref()?;
    if !crate::approvers::may_answer(principal, goclaw)
        || !sees_approval(principal, approval, goclaw)
    {
        return None;
    }
    let style = if goclaw { Style::Snake } else { Style::Camel };
    let (name, payload) = if event.change == ApprovalChange::Requested as i32 {
        (REQUESTED, requested_payload(approval, style))
    } else {
        (RESOLVED, resolved_payload(approval, style))
    };
    Some(EventOut::droppable(name, payload))
}

/// The decision as `waitDecision` reports it: `null` while pending or expired.
fn decision_json(approval: &ExecApproval) -> Value {
    match approval.decision.as_str() {
        "" | "expired" => Value::Null,
        decision => json!(decision),
    }
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await.into()
    }
}

async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    let runner = &state.services.runner;
    match call {
        Call::List => {
            let list = runner
                .list_approvals(principal, ListApprovalsRequest {})
                .await?;
            let items: Vec<Value> = list
                .approvals
                .iter()
                .map(|approval| requested_payload(approval, style))
                .collect();
            Ok(match style {
                Style::Camel => Value::Array(items),
                Style::Snake => json!({ "approvals": items }),
            })
        }
        Call::Get { id } => {
            let approval = runner
                .get_approval(principal, GetApprovalRequest { id })
                .await?;
            let preview: String = approval.command.chars().take(PREVIEW_CHARS).collect();
            Ok(json!({
                "id": approval.id,
                "commandText": approval.command,
                "commandPreview": preview,
                "allowedDecisions": DECISIONS,
                "host": approval.host,
                "nodeId": node_id_json(&approval),
                "agentId": approval.agent_id,
                "expiresAtMs": approval.expires_at_ms,
            }))
        }
        Call::Resolve { id, decision } => {
            let resolved_by = [&principal.device_id, &principal.connection_id]
                .into_iter()
                .find(|who| !who.is_empty())
                .cloned()
                .unwrap_or_default();
            let resolved = runner
                .resolve_approval(
                    principal,
                    ResolveApprovalRequest {
                        id,
                        decision,
                        resolved_by,
                    },
                )
                .await?;
            let approval = resolved.approval.unwrap_or_default();
            Ok(match style {
                Style::Camel => json!({ "ok": true }),
                Style::Snake => json!({
                    "ok": true,
                    "id": approval.id,
                    "decision": approval.decision,
                }),
            })
        }
        Call::Wait { id } => {
            let mut approval = runner
                .get_approval(principal, GetApprovalRequest { id: id.clone() })
                .await?;
            while approval.decision.is_empty() && approval.expires_at_ms > now_ms() {
                approval = runner
                    .wait_approval(
                        principal,
                        WaitApprovalRequest {
                            id: approval.id.clone(),
                            timeout_ms: WAIT_SLICE_MS,
                        },
                    )
                    .await?;
            }
            Ok(json!({
                "id": approval.id,
                "decision": decision_json(&approval),
                "createdAtMs": approval.created_at_ms,
                "expiresAtMs": approval.expires_at_ms,
            }))
        }
    }
}
