//! The in-process node registry (embedded mode: one edge, nothing to share).
//!
//! Invariant: same semantics as the Redis registry (one record per tenant and
//! node id; a disconnect applies only to the socket the record names).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use clawgate_proto::ServiceError;

use super::{NodeRecord, NodeRegistry};
use crate::clock::now_ms;

/// Records by (tenant, node id). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MemoryNodeRegistry {
    records: Arc<Mutex<HashMap<(String, String), NodeRecord>>>,
}

impl MemoryNodeRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), NodeRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key(tenant_id: &str, node_id: &str) -> (String, String) {
    (tenant_id.to_owned(), node_id.to_owned())
}

#[async_trait]
impl NodeRegistry for MemoryNodeRegistry {
    async fn put(&self, records: &[NodeRecord]) -> Result<(), ServiceError> {
        let mut map = self.lock();
        for record in records {
            map.insert(key(&record.tenant_id, &record.node_id), record.clone());
        }
        Ok(())
    }

    async fn disconnect(
        &self,
        tenant_id: &str,
        node_id: &str,
        conn_id: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let mut map = self.lock();
        if let Some(record) = map.get_mut(&key(tenant_id, node_id))
            && record.conn_id == conn_id
        {
            *record = record.clone().disconnected(now_ms(), reason);
        }
        Ok(())
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<NodeRecord>, ServiceError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((tenant, _), _)| tenant == tenant_id)
            .map(|(_, record)| record.clone())
            .collect())
    }

    async fn get(
        &self,
        tenant_id: &str,
        node_id: &str,
    ) -> Result<Option<NodeRecord>, ServiceError> {
        Ok(self.lock().get(&key(tenant_id, node_id)).cloned())
    }

    async fn forget(&self, tenant_id: &str, node_id: &str) -> Result<(), ServiceError> {
        self.lock().remove(&key(tenant_id, node_id));
        Ok(())
    }
}
