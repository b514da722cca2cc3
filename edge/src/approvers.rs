//! This edge's approvers: the connections that may answer exec approvals,
//! listed in the presence registry under each tenant's approvers key
//! ([`approvers_key`]) so a runner anywhere can tell whether anyone could
//! answer an approval before it waits for one (no one: it expires at once).
//!
//! Who is listed ([`may_answer`]): an OpenClaw operator with
//! `operator.approvals` (or `operator.admin`); a goclaw connection of role
//! operator or above (goclaw lets operators decide their own user's). A record's
//! payload is `*` for a connection that may answer every approval of its
//! tenant, else its user id.
//!
//! Invariants: one record per live approver connection, registered when its
//! handshake completes and removed when it closes; all of this edge's records
//! are refreshed by one task every [`REFRESH_EVERY`] (a dead edge's records
//! expire after [`ENTRY_TTL`]); registry failures are logged and never refuse
//! a connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use clawgate_proto::Principal;
use clawgate_proto::principal::SCOPE_APPROVALS;
use clawgate_runtime::presence::{
    ENTRY_TTL, PresenceRecord, PresenceRegistry, REFRESH_EVERY, Refresh, approver_payload,
    approvers_key,
};

use crate::methods::Role;

/// Whether a connection of `principal` may answer some approval.
pub fn may_answer(principal: &Principal, goclaw: bool) -> bool {
    if goclaw {
        Role::of(&principal.role).is_some_and(|role| role >= Role::Operator)
    } else {
        principal.role == "operator" && principal.has_scope(SCOPE_APPROVALS)
    }
}

/// This edge's approver connections, refreshed while they live.
#[derive(Clone)]
pub struct EdgeApprovers {
    registry: Arc<dyn PresenceRegistry>,
    local: Arc<Mutex<HashMap<String, Refresh>>>,
}

impl std::fmt::Debug for EdgeApprovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeApprovers")
            .field("listed", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl EdgeApprovers {
    /// Starts the refresh loop, which ends once every handle is dropped.
    pub fn start(registry: Arc<dyn PresenceRegistry>) -> Self {
        let approvers = Self {
            registry,
            local: Arc::new(Mutex::new(HashMap::new())),
        };
        let registry = approvers.registry.clone();
        clawgate_runtime::refresh::while_alive(&approvers.local, REFRESH_EVERY, move |local| {
            let refreshes: Vec<Refresh> = lock(local).values().cloned().collect();
            let registry = registry.clone();
            async move {
                if refreshes.is_empty() {
                    return;
                }
                if let Err(err) = registry.refresh(&refreshes, ENTRY_TTL).await {
                    tracing::warn!(error = %err, "cannot refresh approvers");
                }
            }
        });
        approvers
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Refresh>> {
        lock(&self.local)
    }

    /// Lists connection `conn_id` of `principal` if it may answer approvals.
    pub async fn add(&self, principal: &Principal, conn_id: &str, goclaw: bool) {
        if !may_answer(principal, goclaw) {
            return;
        }
        let refresh = Refresh {
            tenant_id: approvers_key(&principal.tenant_id),
            record: PresenceRecord {
                key: conn_id.to_owned(),
                owner: conn_id.to_owned(),
                payload: approver_payload(principal),
            },
        };
        if let Err(err) = self
            .registry
            .register(&refresh.tenant_id, &refresh.record, ENTRY_TTL)
            .await
        {
            tracing::warn!(error = %err, "cannot list an approver");
            return;
        }
        self.lock().insert(conn_id.to_owned(), refresh);
    }

    /// Removes connection `conn_id`'s record, if it has one.
    pub async fn remove(&self, conn_id: &str) {
        let Some(refresh) = self.lock().remove(conn_id) else {
            return;
        };
        if let Err(err) = self
            .registry
            .remove(&refresh.tenant_id, conn_id, conn_id)
            .await
        {
            tracing::debug!(error = %err, "cannot remove an approver");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
