//! Targeted delivery: which edge pod holds the sockets of a device, so a message
//! for one device (a disconnect after its removal or token revocation; later
//! approvals and node invocations) is published only to the pods holding it, on
//! their **inbox** topic (`edge.<pod id>`, see [`inbox_topic`]), instead of on
//! the tenant's topic that every edge holding any socket of the tenant receives.
//!
//! **Registry** ([`DeviceRegistry`], Redis: [`RedisDeviceRegistry`]): per
//! (tenant, device) one sorted set `{prefix}:edge:dev:{<tenant>:<device>}` whose
//! members are `<pod id> <connection id>` scored with their expiry (epoch ms).
//! An edge adds a member when a device's socket completes its handshake (before
//! `hello-ok`, so a later message cannot miss it), refreshes all of its members
//! every [`REFRESH_EVERY`] and removes a member when its socket closes. A pod that
//! dies stops refreshing: its members are ignored once their expiry passed and
//! pruned at the next lookup; the key itself expires [`ENTRY_TTL`] after the last
//! refresh. The braces are a Redis Cluster hash tag.
//!
//! **Fallback**: when the registry has no live member for the device (or cannot
//! be read), the message goes on the tenant topic as before, and every edge
//! decides per socket.
//!
//! Edges use it through [`LocalDevices`] (this pod's device sockets, refreshed
//! while they live) and publishers through [`DeviceRegistry::pods`].
//!
//! Invariants: every Redis call is bounded by [`COMMAND_TIMEOUT`]; the Redis URL
//! is never logged; the local table holds one entry per live device socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use redis::aio::ConnectionManager;

use crate::bus::Topic;
use crate::clock::now_ms;
use crate::redis::Redis;

/// How long a registry entry lives without a refresh.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);
/// How often an edge refreshes its entries.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Bound of one registry round trip.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The inbox topic of one edge pod.
pub fn inbox_topic(pod_id: &str) -> Topic {
    Topic::from_name(format!("edge.{pod_id}"))
}

/// One device socket held by one pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceEntry {
    pub tenant_id: String,
    pub device_id: String,
    pub conn_id: String,
    pub pod_id: String,
}

/// Where the sockets of a device live.
#[async_trait]
pub trait DeviceRegistry: Send + Sync + 'static {
    /// Adds or refreshes `entries` (live for `ttl` from now).
    async fn put(&self, entries: &[DeviceEntry], ttl: Duration) -> Result<(), ServiceError>;
    async fn remove(&self, entry: &DeviceEntry) -> Result<(), ServiceError>;
    /// Pods holding a live socket of the device (deduplicated).
    async fn pods(&self, tenant_id: &str, device_id: &str) -> Result<Vec<String>, ServiceError>;
}

/// The Redis registry, on the process's shared connection.
#[derive(Clone)]
pub struct RedisDeviceRegistry {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisDeviceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeviceRegistry")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(operation: &str) -> ServiceError {
    ServiceError::unavailable(format!("device registry {operation} failed"))
}

impl RedisDeviceRegistry {
    /// The registry on `redis`'s shared connection and key prefix.
    pub fn new(redis: &Redis) -> Self {
        Self {
            connection: redis.connection(),
            prefix: redis.key_prefix().to_owned(),
        }
    }

    /// The key of one device's entries.
    pub fn key(&self, tenant_id: &str, device_id: &str) -> String {
        format!("{}:edge:dev:{{{tenant_id}:{device_id}}}", self.prefix)
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &str,
        pipeline: redis::Pipeline,
    ) -> Result<T, ServiceError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, pipeline.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, operation, "device registry error");
                Err(unavailable(operation))
            }
            Err(_) => Err(unavailable(operation)),
        }
    }
}

fn member(entry: &DeviceEntry) -> String {
    format!("{} {}", entry.pod_id, entry.conn_id)
}

#[async_trait]
impl DeviceRegistry for RedisDeviceRegistry {
    async fn put(&self, entries: &[DeviceEntry], ttl: Duration) -> Result<(), ServiceError> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expiry = now_ms().saturating_add(ttl_ms);
        let mut pipeline = redis::pipe();
        for entry in entries {
            let key = self.key(&entry.tenant_id, &entry.device_id);
            pipeline
                .zadd(&key, member(entry), expiry)
                .ignore()
                .pexpire(&key, ttl_ms)
                .ignore();
        }
        self.query::<()>("put", pipeline).await
    }

    async fn remove(&self, entry: &DeviceEntry) -> Result<(), ServiceError> {
        let mut pipeline = redis::pipe();
        pipeline
            .zrem(self.key(&entry.tenant_id, &entry.device_id), member(entry))
            .ignore();
        self.query::<()>("remove", pipeline).await
    }

    async fn pods(&self, tenant_id: &str, device_id: &str) -> Result<Vec<String>, ServiceError> {
        let key = self.key(tenant_id, device_id);
        let now = now_ms();
        let mut pipeline = redis::pipe();
        pipeline
            .zrembyscore(&key, "-inf", now)
            .ignore()
            .zrangebyscore(&key, now, "+inf");
        let (members,): (Vec<String>,) = self.query("lookup", pipeline).await?;
        let mut pods: Vec<String> = members
            .iter()
            .filter_map(|m| m.split_once(' ').map(|(pod, _)| pod.to_owned()))
            .collect();
        pods.sort();
        pods.dedup();
        Ok(pods)
    }
}

/// The device sockets of this pod, refreshed in the registry while they live.
#[derive(Clone)]
pub struct LocalDevices {
    registry: Arc<dyn DeviceRegistry>,
    entries: Arc<Mutex<HashMap<String, DeviceEntry>>>,
}

impl std::fmt::Debug for LocalDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDevices")
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl LocalDevices {
    /// Starts the refresh loop, which ends once every handle is dropped.
    pub fn start(registry: Arc<dyn DeviceRegistry>) -> Self {
        let local = Self {
            registry,
            entries: Arc::new(Mutex::new(HashMap::new())),
        };
        let registry = local.registry.clone();
        crate::refresh::while_alive(&local.entries, REFRESH_EVERY, move |entries| {
            let all: Vec<DeviceEntry> = entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .values()
                .cloned()
                .collect();
            let registry = registry.clone();
            async move {
                if let Err(err) = registry.put(&all, ENTRY_TTL).await {
                    tracing::warn!(error = %err, "cannot refresh the device registry");
                }
            }
        });
        local
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, DeviceEntry>> {
        lock(&self.entries)
    }

    pub fn registry(&self) -> &Arc<dyn DeviceRegistry> {
        &self.registry
    }

    /// Registers a device socket (before its `hello-ok`).
    pub async fn add(&self, entry: DeviceEntry) -> Result<(), ServiceError> {
        self.registry
            .put(std::slice::from_ref(&entry), ENTRY_TTL)
            .await?;
        self.lock().insert(entry.conn_id.clone(), entry);
        Ok(())
    }

    /// Forgets a closed socket (best effort: its entry expires anyway).
    pub async fn remove(&self, conn_id: &str) {
        let Some(entry) = self.lock().remove(conn_id) else {
            return;
        };
        if let Err(err) = self.registry.remove(&entry).await {
            tracing::debug!(error = %err, "cannot remove a device registry entry");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
