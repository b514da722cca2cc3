//! Nodes across edges: which edge pod holds each node's socket, what the node
//! declared, and how a call reaches it from any process.
//!
//! **Registry** ([`NodeRegistry`], Redis: [`redis::RedisNodeRegistry`],
//! in-process: [`memory::MemoryNodeRegistry`]): per tenant one record per node
//! id ([`NodeRecord`]): the socket holding it (pod and connection), what it
//! declared at connect (caps, commands, permissions, versions) and the commands
//! it may run ([`NodeRecord::allowed_commands`]). The edge holding the socket
//! writes the record before `hello-ok`, rewrites it every [`REFRESH_EVERY`]
//! (its lease: [`NodeRecord::expires_at_ms`], [`ENTRY_TTL`] ahead) and marks it
//! disconnected when the socket closes, only if the record still names that
//! socket (a node that reconnected elsewhere keeps its new record). A pod that
//! dies stops refreshing: its records read as disconnected once their lease
//! passed, and at once for callers that check the pod's inbox has listeners
//! ([`crate::bus::EventBus::listeners`]; a dead process's subscriptions go with
//! its connection). Disconnected records stay (with `lastSeenAtMs`) for
//! [`SEEN_RETENTION`].
//!
//! **Invocation** ([`invoker::Invoker`]): a call is published on the holding
//! pod's inbox topic and answered on the caller's reply topic.
//!
//! Invariants: a record names exactly one socket; every registry call is
//! bounded; a record never leaves its tenant (keys and lookups are per tenant).

pub mod invoker;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;

/// How long a node's record stays connected without a refresh.
pub const ENTRY_TTL: Duration = Duration::from_secs(15);
/// How often the holding edge refreshes its nodes' records.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long a disconnected node's record (its last-seen facts) is kept.
pub const SEEN_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Bound of one registry round trip.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Commands a caller may never invoke through `node.invoke` (the node's own
/// approval policy is edited with its own methods, not invoked).
pub const FORBIDDEN_PREFIXES: [&str; 1] = ["system.execApprovals."];

/// Commands that run programs on the node: approving them needs an admin,
/// and agents reach them only through `exec` with its approvals.
pub const EXEC_COMMANDS: [&str; 3] = ["system.run", "system.run.prepare", "system.which"];

/// One node as the registry knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRecord {
    pub tenant_id: String,
    pub node_id: String,
    /// The user whose device the node is.
    pub user_id: String,
    pub pod_id: String,
    pub conn_id: String,
    pub display_name: String,
    pub platform: String,
    pub version: String,
    pub core_version: String,
    pub ui_version: String,
    pub client_id: String,
    pub client_mode: String,
    pub device_family: String,
    pub model_identifier: String,
    pub remote_ip: String,
    pub path_env: String,
    /// Sorted, as declared.
    pub caps: Vec<String>,
    /// Sorted, as declared (claims).
    pub commands: Vec<String>,
    /// Sorted: the declared commands its pairing approved.
    pub allowed_commands: Vec<String>,
    /// The permissions it declared (`{name: bool}`).
    pub permissions: serde_json::Map<String, serde_json::Value>,
    pub paired: bool,
    pub approved_at_ms: i64,
    pub connected: bool,
    pub connected_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub last_seen_reason: String,
    /// The lease of a connected record (epoch ms).
    pub expires_at_ms: i64,
}

impl NodeRecord {
    /// Connected, and its lease has not run out at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.connected && self.expires_at_ms > now_ms
    }

    /// This record as seen at `now`: a lapsed lease reads as disconnected.
    pub fn observed(mut self, now: i64) -> Self {
        if self.connected && self.expires_at_ms <= now {
            self.connected = false;
            self.last_seen_reason = "lease expired".to_owned();
        }
        self
    }

    /// Whether `command` may be invoked on this node: the node declared it,
    /// its pairing approved it, and it is not reserved.
    pub fn allows(&self, command: &str) -> bool {
        !FORBIDDEN_PREFIXES.iter().any(|p| command.starts_with(p))
            && self.allowed_commands.iter().any(|c| c == command)
    }

    /// The record marked disconnected at `at_ms` for `reason`.
    pub fn disconnected(mut self, at_ms: i64, reason: &str) -> Self {
        self.connected = false;
        self.last_seen_at_ms = at_ms;
        self.last_seen_reason = reason.to_owned();
        self
    }

    /// The record renewed for another [`ENTRY_TTL`] from now.
    pub fn renewed(mut self) -> Self {
        let now = now_ms();
        self.last_seen_at_ms = now;
        self.expires_at_ms = now.saturating_add(ttl_ms(ENTRY_TTL));
        self
    }
}

pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Where nodes are and what they declared.
#[async_trait]
pub trait NodeRegistry: Send + Sync + 'static {
    /// Writes (or refreshes) connected records.
    async fn put(&self, records: &[NodeRecord]) -> Result<(), ServiceError>;
    /// Marks the node disconnected if its record still names `conn_id`.
    async fn disconnect(
        &self,
        tenant_id: &str,
        node_id: &str,
        conn_id: &str,
        reason: &str,
    ) -> Result<(), ServiceError>;
    /// Every node record of the tenant (connected or last seen).
    async fn list(&self, tenant_id: &str) -> Result<Vec<NodeRecord>, ServiceError>;
    async fn get(&self, tenant_id: &str, node_id: &str)
    -> Result<Option<NodeRecord>, ServiceError>;
    /// Forgets a node (its pairing was removed).
    async fn forget(&self, tenant_id: &str, node_id: &str) -> Result<(), ServiceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapsed_lease_reads_disconnected_and_reserved_commands_are_refused() {
        let record = NodeRecord {
            connected: true,
            expires_at_ms: 100,
            allowed_commands: vec!["camera.snap".into(), "system.execApprovals.get".into()],
            ..NodeRecord::default()
        };
        assert!(record.is_live(99));
        assert!(!record.is_live(100));
        assert!(!record.clone().observed(100).connected);
        assert!(record.clone().observed(99).connected);
        assert!(record.allows("camera.snap"));
        assert!(!record.allows("camera.clip"));
        assert!(!record.allows("system.execApprovals.get"));
    }
}
