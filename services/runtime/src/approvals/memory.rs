//! In-process approval store (one process: the embedded gateway), on the wall
//! clock of [`crate::clock::now_ms`].
//!
//! Invariant: records past their keep time are pruned on every write, so the
//! table holds only records that can still be read.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use clawgate_proto::ServiceError;

use super::{ApprovalStore, Decide, MAX_LISTED, StoredApproval, keep_ms};
use crate::clock::now_ms;

#[derive(Debug)]
struct Entry {
    stored: StoredApproval,
    /// Gone after this instant (epoch ms).
    gone_at_ms: i64,
    created_seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<(String, String), Entry>,
    next_seq: u64,
}

/// Approvals of one process.
#[derive(Debug, Default)]
pub struct MemoryApprovals {
    table: Mutex<Table>,
}

impl MemoryApprovals {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key(tenant_id: &str, id: &str) -> (String, String) {
    (tenant_id.to_owned(), id.to_owned())
}

#[async_trait]
impl ApprovalStore for MemoryApprovals {
    async fn create(
        &self,
        tenant_id: &str,
        id: &str,
        payload: &[u8],
        expires_at_ms: i64,
    ) -> Result<(), ServiceError> {
        let now = now_ms();
        let mut table = self.lock();
        table.entries.retain(|_, entry| entry.gone_at_ms > now);
        table.next_seq += 1;
        let entry = Entry {
            stored: StoredApproval {
                id: id.to_owned(),
                payload: payload.to_vec(),
                expires_at_ms,
                decision: None,
            },
            gone_at_ms: now.saturating_add(keep_ms(expires_at_ms, now)),
            created_seq: table.next_seq,
        };
        table.entries.insert(key(tenant_id, id), entry);
        Ok(())
    }

    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<StoredApproval>, ServiceError> {
        let now = now_ms();
        Ok(self
            .lock()
            .entries
            .get(&key(tenant_id, id))
            .filter(|entry| entry.gone_at_ms > now)
            .map(|entry| entry.stored.clone()))
    }

    async fn list(
        &self,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<Vec<StoredApproval>, ServiceError> {
        let table = self.lock();
        let mut pending: Vec<&Entry> = table
            .entries
            .iter()
            .filter(|((tenant, _), entry)| {
                tenant == tenant_id
                    && entry.stored.decision.is_none()
                    && entry.stored.expires_at_ms > now_ms
            })
            .map(|(_, entry)| entry)
            .collect();
        pending.sort_by_key(|entry| entry.created_seq);
        Ok(pending
            .into_iter()
            .take(MAX_LISTED)
            .map(|entry| entry.stored.clone())
            .collect())
    }

    async fn decide(
        &self,
        tenant_id: &str,
        id: &str,
        decision: &[u8],
    ) -> Result<Decide, ServiceError> {
        let now = now_ms();
        let mut table = self.lock();
        let Some(entry) = table
            .entries
            .get_mut(&key(tenant_id, id))
            .filter(|entry| entry.gone_at_ms > now)
        else {
            return Ok(Decide::Unknown);
        };
        if let Some(existing) = &entry.stored.decision {
            return Ok(Decide::Already(existing.clone()));
        }
        entry.stored.decision = Some(decision.to_vec());
        Ok(Decide::Applied)
    }
}
