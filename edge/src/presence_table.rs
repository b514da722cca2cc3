//! This edge's side of presence, below everything that knows a socket: the
//! table of its listed connections (refreshed in the registry by one
//! edge-wide task) and its cache of each tenant's latest list (see
//! [`crate::presence`] for what is listed, who sees what, and when events go
//! out).
//!
//! Invariants: one row per listed live connection; refreshes are one
//! pipelined call per [`REFRESH_EVERY`], whatever the number of connections; a
//! cached list is never replaced by an older one (lower version), serves for
//! [`CACHE_FRESH`], and at most [`CACHE_TENANTS`] tenants are cached. This
//! module knows neither sockets nor the edge's state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::{PresenceEntry, PresenceEvent};
use clawgate_runtime::presence::{PresenceList, PresenceRecord, PresenceRegistry, Refresh};
use prost::Message as _;
use tokio::time::Instant;

pub use clawgate_runtime::presence::{ENTRY_TTL, REFRESH_EVERY};

/// How long a tenant's cached list serves snapshots of unlisted watchers.
pub const CACHE_FRESH: Duration = REFRESH_EVERY;
/// Most tenants whose list an edge caches.
pub const CACHE_TENANTS: usize = 1024;

/// The latest list of a tenant this edge saw (a registry reply or an event).
#[derive(Debug, Clone)]
struct Cached {
    list: Arc<PresenceEvent>,
    at: Instant,
}

/// One listed connection of this edge.
#[derive(Debug, Clone)]
struct Listed {
    tenant_id: String,
    entry: PresenceEntry,
}

pub(crate) fn record(entry: &PresenceEntry) -> PresenceRecord {
    PresenceRecord {
        key: entry.key.clone(),
        owner: entry.conn_id.clone(),
        payload: entry.encode_to_vec(),
    }
}

/// The entries of a registry list (undecodable payloads are skipped).
pub fn entries_of(list: &PresenceList) -> Vec<PresenceEntry> {
    list.payloads
        .iter()
        .filter_map(|payload| PresenceEntry::decode(payload.as_slice()).ok())
        .collect()
}

/// This edge's listed connections, refreshed in the registry while they live.
#[derive(Clone)]
pub struct EdgePresence {
    registry: Arc<dyn PresenceRegistry>,
    local: Arc<Mutex<HashMap<String, Listed>>>,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl std::fmt::Debug for EdgePresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgePresence")
            .field("listed", &self.lock().len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EdgePresence {
    /// Starts the refresh loop, which ends once every handle is dropped.
    pub fn start(registry: Arc<dyn PresenceRegistry>) -> Self {
        let presence = Self {
            registry,
            local: Arc::new(Mutex::new(HashMap::new())),
            cache: Arc::new(Mutex::new(HashMap::new())),
        };
        let registry = presence.registry.clone();
        clawgate_runtime::refresh::while_alive(&presence.local, REFRESH_EVERY, move |local| {
            let refreshes: Vec<Refresh> = lock(local)
                .values()
                .map(|listed| Refresh {
                    tenant_id: listed.tenant_id.clone(),
                    record: record(&listed.entry),
                })
                .collect();
            let registry = registry.clone();
            async move {
                if refreshes.is_empty() {
                    return;
                }
                if let Err(err) = registry.refresh(&refreshes, ENTRY_TTL).await {
                    tracing::warn!(error = %err, "cannot refresh presence");
                }
            }
        });
        presence
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Listed>> {
        lock(&self.local)
    }

    pub fn registry(&self) -> &Arc<dyn PresenceRegistry> {
        &self.registry
    }

    /// Keeps `list` as its tenant's latest unless a newer one is cached.
    pub(crate) fn remember(&self, list: &Arc<PresenceEvent>) {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        if let Some(cached) = cache.get_mut(&list.tenant_id) {
            if cached.list.version <= list.version {
                *cached = Cached {
                    list: list.clone(),
                    at: now,
                };
            }
            return;
        }
        if cache.len() >= CACHE_TENANTS {
            cache.retain(|_, cached| now.duration_since(cached.at) < CACHE_FRESH);
            if cache.len() >= CACHE_TENANTS {
                return;
            }
        }
        let cached = Cached {
            list: list.clone(),
            at: now,
        };
        cache.insert(list.tenant_id.clone(), cached);
    }

    /// The tenant's cached list, if recent enough.
    pub(crate) fn cached(&self, tenant_id: &str) -> Option<Arc<PresenceEvent>> {
        lock(&self.cache)
            .get(tenant_id)
            .filter(|cached| cached.at.elapsed() < CACHE_FRESH)
            .map(|cached| cached.list.clone())
    }

    /// The tenant's list: from the cache when fresh, else read (and cached).
    pub(crate) async fn current(
        &self,
        tenant_id: &str,
    ) -> Result<Arc<PresenceEvent>, ServiceError> {
        if let Some(list) = self.cached(tenant_id) {
            return Ok(list);
        }
        let list = self.registry.list(tenant_id).await?;
        Ok(self.remember_list(tenant_id, &list))
    }

    /// A registry reply as the tenant's latest list (cached).
    pub(crate) fn remember_list(&self, tenant_id: &str, list: &PresenceList) -> Arc<PresenceEvent> {
        let event = Arc::new(PresenceEvent {
            tenant_id: tenant_id.to_owned(),
            version: list.version,
            entries: entries_of(list),
            departed: None,
        });
        self.remember(&event);
        event
    }

    /// Lists a connection; returns its tenant's list after it.
    pub(crate) async fn add(
        &self,
        tenant_id: &str,
        entry: PresenceEntry,
    ) -> Result<PresenceList, ServiceError> {
        let list = self
            .registry
            .register(tenant_id, &record(&entry), ENTRY_TTL)
            .await?;
        let listed = Listed {
            tenant_id: tenant_id.to_owned(),
            entry,
        };
        self.lock().insert(listed.entry.conn_id.clone(), listed);
        Ok(list)
    }

    /// Notes activity of a listed connection (written by the next refresh).
    pub(crate) fn touch(&self, conn_id: &str, at_ms: i64) {
        if let Some(listed) = self.lock().get_mut(conn_id) {
            listed.entry.last_activity_at_ms = at_ms;
            listed.entry.ts_ms = at_ms;
        }
    }

    /// Unlists a closed connection: its tenant, its last entry and the
    /// tenant's list after it.
    pub(crate) async fn remove(
        &self,
        conn_id: &str,
    ) -> Option<(String, PresenceEntry, Result<PresenceList, ServiceError>)> {
        let listed = self.lock().remove(conn_id)?;
        let list = self
            .registry
            .remove(&listed.tenant_id, &listed.entry.key, conn_id)
            .await;
        Some((listed.tenant_id, listed.entry, list))
    }
}
