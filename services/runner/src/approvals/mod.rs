//! Exec approvals: a run's `exec` call waits for a human decision that may come
//! through any edge and any runner.
//!
//! What it owns: creating an approval (stored in the shared
//! [`ApprovalStore`], announced with an [`ExecApprovalEvent`] on the tenant's
//! topic, which every edge shows to the sockets that may approve), waiting on
//! it, and applying decisions (`ResolveApproval`, on whichever runner the call
//! reaches). The runner that applied a decision wakes the waiting run: its own
//! directly, another runner's through that runner's control topic
//! ([`ApprovalDecided`]); the waiter also re-reads the store every
//! [`POLL_EVERY`], so a lost wake-up only delays it.
//!
//! Who may decide: a caller that may approve for its whole tenant
//! (`Principal::approves_tenant`: an admin or owner, or `operator.approvals`) any
//! approval of its tenant; anyone else only those of its own user's runs. An
//! approval of another tenant, or of another user for a caller that may not
//! see it, is unknown.
//!
//! `allow-always` (for callers that may approve for the whole tenant) also adds
//! the command to the agent's exec allowlist in the session service; the gate
//! ([`gate`]) runs allowlisted commands without asking. That allowlist is the
//! gateway's only: a command on a node (`host` `node`, with `node_id` and
//! `system_run_plan_json`) is always asked, and its `allow-always` goes to
//! the node (its own policy), never to the allowlist, so the gateway never
//! runs it unasked.
//!
//! Invariants: a decision is applied exactly once (the store's check-and-set),
//! however many callers answer at once; the same decision again is an
//! idempotent success, another one is refused; an approval nobody can answer
//! (no approver of its tenant or user connected, as the edges' approver
//! records in the presence registry tell) expires at once; one that is not
//! answered in time expires (decision `expired`), and an expired approval is
//! unknown to `ResolveApproval`.

pub mod gate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clawgate_proto::pb::common::v1::{
    ApprovalChange, ApprovalDecided, BusMessage, ExecApproval, ExecApprovalEvent, RunnerCommand,
    RunnerControl, bus_message, runner_command, runner_control,
};
use clawgate_proto::session::{AllowExecRequest, SessionApi as _, SessionClient};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::approvals::memory::MemoryApprovals;
use clawgate_runtime::approvals::{ApprovalStore, Decide, StoredApproval};
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::presence::{PresenceRegistry, approver_answers, approvers_key};
use prost::Message as _;
use serde_json::json;
use tokio::sync::Notify;

/// How often a waiting run re-reads its approval.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long an approval waits for a decision by default (as the reference).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest `WaitApproval` call.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

pub const ALLOW_ONCE: &str = "allow-once";
pub const ALLOW_ALWAYS: &str = "allow-always";
pub const DENY: &str = "deny";
pub const EXPIRED: &str = "expired";

/// What asking for an approval needs.
#[derive(Clone, Debug, Default)]
pub struct ApprovalAsk {
    pub tenant_id: String,
    pub user_id: String,
    pub agent_id: String,
    pub session_key: String,
    pub run_id: String,
    pub command: String,
    pub cwd: String,
    pub timeout: Duration,
    /// Where it runs: `gateway` (also when empty) or `node`.
    pub host: String,
    /// For `node`: the node that runs it.
    pub node_id: String,
    /// For `node`: the `systemRunPlan` the approver is shown (JSON text).
    pub system_run_plan_json: String,
}

/// The hosts of an approval's command: the gateway, or a node.
pub const HOST_GATEWAY: &str = "gateway";
pub const HOST_NODE: &str = "node";

/// The exec approvals of one runner process.
pub struct Approvals {
    store: Arc<dyn ApprovalStore>,
    bus: Arc<dyn EventBus>,
    approvers: Option<Arc<dyn PresenceRegistry>>,
    /// This runner's id in a cluster (empty in-process).
    runner_id: String,
    /// Where `allow-always` decisions add their command (the agent's allowlist).
    session: SessionClient,
    /// The runs of this runner waiting on an approval, by approval id.
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("runner_id", &self.runner_id)
            .finish_non_exhaustive()
    }
}

/// An approval that does not exist, expired, or is not the caller's to see.
fn not_found() -> ServiceError {
    ServiceError::not_found("unknown or expired approval id")
        .with_details(json!({ "reason": "APPROVAL_NOT_FOUND" }))
}

/// An approval as stored (its decision when it has one).
fn decode(stored: &StoredApproval) -> Option<ExecApproval> {
    decoded(stored.decision.as_deref().unwrap_or(&stored.payload)).ok()
}

/// An approval from stored bytes.
fn decoded(bytes: &[u8]) -> Result<ExecApproval, ServiceError> {
    ExecApproval::decode(bytes)
        .map_err(|_| ServiceError::internal("an approval's decision cannot be read"))
}

/// Removes a waiter when its run stops waiting; a run that stopped before a
/// decision (aborted, timed out) leaves its approval expired, so nobody
/// answers a request no run waits for any more.
struct Waiting<'a> {
    approvals: &'a Approvals,
    approval: ExecApproval,
    /// Stored and not decided yet.
    open: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.approval.id);
        if !self.open {
            return;
        }
        let store = self.approvals.store.clone();
        let mut expired = self.approval.clone();
        expired.decision = EXPIRED.to_owned();
        expired.resolved_at_ms = now_ms();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let decided = store
                    .decide(&expired.tenant_id, &expired.id, &expired.encode_to_vec())
                    .await;
                if let Err(err) = decided {
                    tracing::debug!(error = %err, "an abandoned approval stays until it expires");
                }
            });
        }
    }
}

impl Approvals {
    /// Approvals kept in `store`, announced on `bus`; `approvers` tells whether
    /// anyone can answer (`None`: assume someone can).
    pub fn new(
        store: Arc<dyn ApprovalStore>,
        bus: Arc<dyn EventBus>,
        approvers: Option<Arc<dyn PresenceRegistry>>,
        runner_id: String,
        session: SessionClient,
    ) -> Self {
        Self {
            store,
            bus,
            approvers,
            runner_id,
            session,
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// Approvals of one process: an in-process store, announced on `bus`,
    /// with no approver registry (someone may always answer).
    pub fn in_process(bus: Arc<dyn EventBus>, session: SessionClient) -> Self {
        Self::new(
            Arc::new(MemoryApprovals::new()),
            bus,
            None,
            String::new(),
            session,
        )
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether someone connected may answer an approval of `user_id`.
    async fn approver_connected(&self, tenant_id: &str, user_id: &str) -> bool {
        let Some(approvers) = &self.approvers else {
            return true;
        };
        match approvers.list(&approvers_key(tenant_id)).await {
            Ok(list) => list
                .payloads
                .iter()
                .any(|payload| approver_answers(payload, user_id)),
            Err(err) => {
                tracing::warn!(error = %err, "approver presence unavailable; waiting");
                true
            }
        }
    }

    async fn announce(&self, change: ApprovalChange, approval: &ExecApproval) {
        let message = BusMessage {
            body: Some(bus_message::Body::ExecApprovalEvent(ExecApprovalEvent {
                tenant_id: approval.tenant_id.clone(),
                change: change as i32,
                approval: Some(approval.clone()),
            })),
        };
        let topic = Topic::tenant(&approval.tenant_id);
        if let Err(err) = self
            .bus
            .publish(&topic, message.encode_to_vec().into())
            .await
        {
            tracing::warn!(error = %err, "approval event not published");
        }
    }

    /// Asks for a decision and waits for it (or for the expiry); returns the
    /// decided approval. Dropping the future (the run was aborted) stops
    /// waiting; the approval then expires unanswered.
    pub async fn ask(&self, ask: ApprovalAsk) -> Result<ExecApproval, ServiceError> {
        let now = now_ms();
        let timeout_ms = i64::try_from(ask.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut approval = ExecApproval {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: ask.tenant_id,
            user_id: ask.user_id,
            agent_id: ask.agent_id,
            session_key: ask.session_key,
            run_id: ask.run_id,
            command: ask.command,
            cwd: ask.cwd,
            host: if ask.host.is_empty() {
                HOST_GATEWAY.to_owned()
            } else {
                ask.host
            },
            node_id: ask.node_id,
            system_run_plan_json: ask.system_run_plan_json,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(timeout_ms),
            runner_id: self.runner_id.clone(),
            ..Default::default()
        };
        if !self
            .approver_connected(&approval.tenant_id, &approval.user_id)
            .await
        {
            approval.decision = EXPIRED.to_owned();
            approval.resolved_at_ms = now;
            return Ok(approval);
        }
        let notify = Arc::new(Notify::new());
        self.lock().insert(approval.id.clone(), notify.clone());
        let mut waiting = Waiting {
            approvals: self,
            approval: approval.clone(),
            open: false,
        };
        self.store
            .create(
                &approval.tenant_id,
                &approval.id,
                &approval.encode_to_vec(),
                approval.expires_at_ms,
            )
            .await?;
        waiting.open = true;
        self.announce(ApprovalChange::Requested, &approval).await;
        let decided = self.wait_decided(&approval, Some(&notify)).await;
        waiting.open = false;
        decided
    }

    /// Waits until `approval` is decided, or expires it at its expiry.
    async fn wait_decided(
        &self,
        approval: &ExecApproval,
        notify: Option<&Notify>,
    ) -> Result<ExecApproval, ServiceError> {
        let expires = tokio::time::Instant::now()
            + Duration::from_millis(
                u64::try_from(approval.expires_at_ms.saturating_sub(now_ms())).unwrap_or(0),
            );
        loop {
            match self.store.get(&approval.tenant_id, &approval.id).await {
                Ok(Some(stored)) if stored.decision.is_some() => {
                    return decode(&stored).ok_or_else(|| {
                        ServiceError::internal("an approval's decision cannot be read")
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(not_found()),
                Err(err) => tracing::warn!(error = %err, "approval store unavailable; waiting"),
            }
            if tokio::time::Instant::now() >= expires {
                return self.expire(approval).await;
            }
            let wake = async {
                match notify {
                    Some(notify) => notify.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = tokio::time::sleep_until(expires) => {}
            }
        }
    }

    /// Records that `approval` expired unanswered (unless a decision won).
    async fn expire(&self, approval: &ExecApproval) -> Result<ExecApproval, ServiceError> {
        let mut expired = approval.clone();
        expired.decision = EXPIRED.to_owned();
        expired.resolved_at_ms = now_ms();
        match self
            .store
            .decide(&approval.tenant_id, &approval.id, &expired.encode_to_vec())
            .await?
        {
            Decide::Applied | Decide::Unknown => Ok(expired),
            Decide::Already(winner) => decoded(&winner),
        }
    }

    /// Whether `principal` may see `approval` (of its tenant).
    fn visible(principal: &Principal, approval: &ExecApproval) -> bool {
        approval.tenant_id == principal.tenant_id
            && (principal.approves_tenant() || approval.user_id == principal.user_id)
    }

    /// The pending approvals `principal` may decide, oldest first.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<ExecApproval>, ServiceError> {
        let stored = self.store.list(&principal.tenant_id, now_ms()).await?;
        Ok(stored
            .iter()
            .filter_map(decode)
            .filter(|approval| Self::visible(principal, approval))
            .collect())
    }

    /// The approval of `id` (or of a unique prefix of a pending one's id).
    pub async fn get(&self, principal: &Principal, id: &str) -> Result<ExecApproval, ServiceError> {
        let id = id.trim();
        if id.is_empty() || id.len() > 64 {
            return Err(ServiceError::invalid("an approval id is required"));
        }
        if let Some(stored) = self.store.get(&principal.tenant_id, id).await? {
            return decode(&stored)
                .filter(|approval| Self::visible(principal, approval))
                .ok_or_else(not_found);
        }
        let mut matches = self
            .list(principal)
            .await?
            .into_iter()
            .filter(|approval| approval.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(approval), None) => Ok(approval),
            (Some(_), Some(_)) => Err(ServiceError::invalid("the approval id prefix is ambiguous")),
            _ => Err(not_found()),
        }
    }

    /// Applies `decision` to the approval of `id` unless another decision was
    /// applied first; returns the decided approval and whether this call
    /// applied it.
    pub async fn resolve(
        &self,
        principal: &Principal,
        id: &str,
        decision: &str,
        resolved_by: &str,
    ) -> Result<(ExecApproval, bool), ServiceError> {
        if ![ALLOW_ONCE, ALLOW_ALWAYS, DENY].contains(&decision) {
            return Err(ServiceError::invalid(
                "decision must be allow-once, allow-always or deny",
            ));
        }
        if decision == ALLOW_ALWAYS && !principal.approves_tenant() {
            return Err(ServiceError::invalid(
                "allow-always needs operator.approvals (it allows the command for the whole tenant)",
            )
            .with_details(json!({ "reason": "APPROVAL_ALLOW_ALWAYS_UNAVAILABLE" })));
        }
        let approval = self.get(principal, id).await?;
        let mut decided = approval.clone();
        decided.decision = decision.to_owned();
        decided.resolved_by = if resolved_by.is_empty() {
            principal.user_id.clone()
        } else {
            resolved_by.to_owned()
        };
        decided.resolved_at_ms = now_ms();
        let outcome = self
            .store
            .decide(&approval.tenant_id, &approval.id, &decided.encode_to_vec())
            .await?;
        match outcome {
            Decide::Applied => {
                // The agent's allowlist is the gateway's: a node keeps its own.
                if decision == ALLOW_ALWAYS && decided.host != HOST_NODE {
                    self.allow_always(principal, &decided).await;
                }
                self.wake(&decided).await;
                self.announce(ApprovalChange::Resolved, &decided).await;
                Ok((decided, true))
            }
            Decide::Already(winner) => {
                let winner = decoded(&winner)?;
                if winner.decision == EXPIRED {
                    Err(not_found())
                } else if winner.decision == decision {
                    Ok((winner, false))
                } else {
                    Err(ServiceError::invalid("approval already resolved")
                        .with_details(json!({ "reason": "APPROVAL_ALREADY_RESOLVED" })))
                }
            }
            Decide::Unknown => Err(not_found()),
        }
    }

    /// Adds the command of an `allow-always` decision to its agent's
    /// allowlist, as the approver (a failure is logged: the decision stands).
    async fn allow_always(&self, principal: &Principal, approval: &ExecApproval) {
        let request = AllowExecRequest {
            agent_id: approval.agent_id.clone(),
            command: approval.command.clone(),
        };
        if let Err(err) = self.session.allow_exec(principal, request).await {
            tracing::warn!(error = %err, approval_id = %approval.id, "allow-always not recorded");
        }
    }

    /// Waits (at most `timeout`, bounded by [`MAX_WAIT`]) until the approval of
    /// `id` is decided; a still pending one is returned as it is.
    pub async fn wait(
        &self,
        principal: &Principal,
        id: &str,
        timeout: Duration,
    ) -> Result<ExecApproval, ServiceError> {
        let approval = self.get(principal, id).await?;
        if !approval.decision.is_empty() {
            return Ok(approval);
        }
        let bound = if timeout.is_zero() {
            MAX_WAIT
        } else {
            timeout.min(MAX_WAIT)
        };
        match tokio::time::timeout(bound, self.wait_decided(&approval, None)).await {
            Ok(decided) => decided,
            Err(_) => Ok(approval),
        }
    }

    /// Wakes the run waiting on `approval`: here, or through its runner.
    async fn wake(&self, approval: &ExecApproval) {
        if approval.runner_id.is_empty() || approval.runner_id == self.runner_id {
            self.woken(&approval.id);
            return;
        }
        let command = RunnerCommand {
            request_id: String::new(),
            reply_to: String::new(),
            command: Some(runner_command::Command::ApprovalDecided(ApprovalDecided {
                tenant_id: approval.tenant_id.clone(),
                approval_id: approval.id.clone(),
            })),
        };
        let payload = RunnerControl {
            body: Some(runner_control::Body::Command(command)),
        }
        .encode_to_vec();
        if let Err(err) = self
            .bus
            .publish(&Topic::runner(&approval.runner_id), payload.into())
            .await
        {
            tracing::warn!(error = %err, "approval wake-up not sent; the waiter polls");
        }
    }

    /// A decision for an approval this runner may be waiting on arrived.
    pub fn woken(&self, approval_id: &str) {
        if let Some(notify) = self.lock().get(approval_id) {
            notify.notify_one();
        }
    }
}
