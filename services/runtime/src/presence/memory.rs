//! The in-process presence registry (one process, `clawgate up`), on tokio's
//! clock so tests can pause it.
//!
//! Invariants: as [`super`]; expired records are pruned whenever their tenant
//! is touched; a tenant's version is kept even when it has no record left (a
//! watcher may hold an older list), one counter per tenant seen.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use tokio::time::Instant;

use super::{MAX_LISTED, PresenceList, PresenceRecord, PresenceRegistry, Refresh};

struct Stored {
    owner: String,
    payload: Vec<u8>,
    expires: Instant,
}

#[derive(Default)]
struct Tenant {
    records: HashMap<String, Stored>,
    /// Changes so far (the version is one more).
    changes: u64,
}

impl Tenant {
    fn prune(&mut self, now: Instant) {
        let before = self.records.len();
        self.records.retain(|_, stored| stored.expires > now);
        if self.records.len() != before {
            self.changes += 1;
        }
    }

    fn list(&self) -> PresenceList {
        let mut live: Vec<&Stored> = self.records.values().collect();
        live.sort_by_key(|stored| std::cmp::Reverse(stored.expires));
        PresenceList {
            payloads: live
                .into_iter()
                .take(MAX_LISTED)
                .map(|stored| stored.payload.clone())
                .collect(),
            version: self.changes + 1,
        }
    }
}

/// Presence of one process.
#[derive(Default)]
pub struct MemoryPresence {
    tenants: Mutex<HashMap<String, Tenant>>,
}

impl std::fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresence")
            .field("tenants", &self.lock().len())
            .finish()
    }
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Tenant>> {
        self.tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the pruned tenant.
    fn with_tenant<T>(&self, tenant_id: &str, f: impl FnOnce(&mut Tenant) -> T) -> T {
        let mut tenants = self.lock();
        let tenant = tenants.entry(tenant_id.to_owned()).or_default();
        tenant.prune(Instant::now());
        f(tenant)
    }
}

#[async_trait]
impl PresenceRegistry for MemoryPresence {
    async fn register(
        &self,
        tenant_id: &str,
        record: &PresenceRecord,
        ttl: Duration,
    ) -> Result<PresenceList, ServiceError> {
        Ok(self.with_tenant(tenant_id, |tenant| {
            tenant.records.insert(
                record.key.clone(),
                Stored {
                    owner: record.owner.clone(),
                    payload: record.payload.clone(),
                    expires: Instant::now() + ttl,
                },
            );
            tenant.changes += 1;
            tenant.list()
        }))
    }

    async fn refresh(&self, records: &[Refresh], ttl: Duration) -> Result<(), ServiceError> {
        let expires = Instant::now() + ttl;
        let mut tenants = self.lock();
        for refresh in records {
            let Some(tenant) = tenants.get_mut(&refresh.tenant_id) else {
                continue;
            };
            if let Some(stored) = tenant.records.get_mut(&refresh.record.key)
                && stored.owner == refresh.record.owner
            {
                stored.payload.clone_from(&refresh.record.payload);
                stored.expires = expires;
            }
        }
        Ok(())
    }

    async fn remove(
        &self,
        tenant_id: &str,
        key: &str,
        owner: &str,
    ) -> Result<PresenceList, ServiceError> {
        Ok(self.with_tenant(tenant_id, |tenant| {
            if tenant.records.get(key).is_some_and(|s| s.owner == owner) {
                tenant.records.remove(key);
                tenant.changes += 1;
            }
            tenant.list()
        }))
    }

    async fn list(&self, tenant_id: &str) -> Result<PresenceList, ServiceError> {
        Ok(self.with_tenant(tenant_id, |tenant| tenant.list()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, owner: &str, payload: &str) -> PresenceRecord {
        PresenceRecord {
            key: key.into(),
            owner: owner.into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn registers_lists_and_removes_with_a_growing_version() {
        let presence = MemoryPresence::new();
        assert_eq!(presence.list("t").await.unwrap().version, 1);
        let first = presence
            .register("t", &record("a", "c1", "A"), TTL)
            .await
            .unwrap();
        assert_eq!((first.payloads.len(), first.version), (1, 2));
        tokio::time::advance(Duration::from_millis(5)).await;
        let second = presence
            .register("t", &record("b", "c2", "B"), TTL)
            .await
            .unwrap();
        assert_eq!(second.payloads, vec![b"B".to_vec(), b"A".to_vec()]);
        assert_eq!(second.version, 3);
        assert!(presence.list("other").await.unwrap().payloads.is_empty());
        // Only the owner removes its record.
        let kept = presence.remove("t", "a", "c2").await.unwrap();
        assert_eq!((kept.payloads.len(), kept.version), (2, 3));
        let gone = presence.remove("t", "a", "c1").await.unwrap();
        assert_eq!((gone.payloads, gone.version), (vec![b"B".to_vec()], 4));
    }

    #[tokio::test(start_paused = true)]
    async fn records_expire_unless_refreshed_by_their_owner() {
        let presence = MemoryPresence::new();
        presence
            .register("t", &record("a", "c1", "A"), TTL)
            .await
            .unwrap();
        presence
            .register("t", &record("b", "c2", "B"), TTL)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        let refresh = |key: &str, owner: &str, payload: &str| Refresh {
            tenant_id: "t".into(),
            record: record(key, owner, payload),
        };
        presence
            .refresh(
                &[refresh("a", "c1", "A2"), refresh("b", "intruder", "X")],
                TTL,
            )
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(15)).await;
        let list = presence.list("t").await.unwrap();
        assert_eq!(list.payloads, vec![b"A2".to_vec()]);
        assert_eq!(list.version, 4, "the expiry of b is a change");
        // A refresh does not bring back a removed record.
        presence.remove("t", "a", "c1").await.unwrap();
        presence
            .refresh(&[refresh("a", "c1", "A3")], TTL)
            .await
            .unwrap();
        assert!(presence.list("t").await.unwrap().payloads.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_connection_of_the_same_key_takes_the_record_over() {
        let presence = MemoryPresence::new();
        presence
            .register("t", &record("d", "c1", "old"), TTL)
            .await
            .unwrap();
        presence
            .register("t", &record("d", "c2", "new"), TTL)
            .await
            .unwrap();
        let kept = presence.remove("t", "d", "c1").await.unwrap();
        assert_eq!(kept.payloads, vec![b"new".to_vec()]);
    }
}
