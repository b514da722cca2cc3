//! Presence: which connections of a tenant are online, across every edge.
//!
//! A [`PresenceRegistry`] holds per tenant a set of records, each under a key
//! (what the key and the payload mean is its user's business: the edge keys a
//! connection by its device id, else its client instance id, else its
//! connection id, and stores an encoded entry), with the connection that owns
//! it and an expiry. Owners register a record when it comes online, refresh it
//! while it lives (every [`REFRESH_EVERY`], live for [`ENTRY_TTL`]) and remove
//! it when it leaves; a record whose owner died expires by itself. Each tenant
//! has a **version**, starting at 1, that grows with every change of its set
//! (a record registered, removed or expired), so readers can order lists.
//!
//! Two implementations: Redis ([`redis::RedisPresence`], shared by every edge)
//! and in-process ([`memory::MemoryPresence`], for one process, on tokio's
//! clock).
//!
//! Invariants: a record is only refreshed or removed by the connection that owns
//! it (a later connection of the same key takes the record over); a refresh
//! never brings back a record that was removed; a list holds only live records,
//! at most [`MAX_LISTED`], the latest to expire (most recently refreshed) first;
//! every Redis call is bounded by [`COMMAND_TIMEOUT`].

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;

/// How long a record lives without a refresh.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);
/// How often an owner refreshes its records.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Most records one list returns (as the reference's presence).
pub const MAX_LISTED: usize = 200;
/// Bound of one registry round trip.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The registry key under which the edges list a tenant's connections that
/// may answer exec approvals (one record per such connection, its payload `*`
/// for one that may answer every approval of the tenant, else its user id).
/// Kept apart from the tenant's own presence list, which users see.
pub fn approvers_key(tenant_id: &str) -> String {
    format!("approvers.{tenant_id}")
}

/// The approver record payload of a connection of `principal`: `*` when it
/// may answer every approval of its tenant, else its user id.
pub fn approver_payload(principal: &clawgate_proto::Principal) -> Vec<u8> {
    if principal.approves_tenant() {
        b"*".to_vec()
    } else {
        principal.user_id.as_bytes().to_vec()
    }
}

/// Whether an approver record of `payload` may answer an approval of a run
/// of `user_id`.
pub fn approver_answers(payload: &[u8], user_id: &str) -> bool {
    payload == b"*" || payload == user_id.as_bytes()
}

/// One record of a tenant's presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceRecord {
    pub key: String,
    /// The connection that owns the record.
    pub owner: String,
    pub payload: Vec<u8>,
}

/// A record to refresh, with its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub tenant_id: String,
    pub record: PresenceRecord,
}

/// A tenant's live records and its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceList {
    /// Payloads of the live records (at most [`MAX_LISTED`]).
    pub payloads: Vec<Vec<u8>>,
    /// Starts at 1, grows with every change of the tenant's set.
    pub version: u64,
}

/// Who is online, per tenant.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// Adds `record` (or takes over the record of its key), live for `ttl`.
    /// Returns the tenant's list after the change.
    async fn register(
        &self,
        tenant_id: &str,
        record: &PresenceRecord,
        ttl: Duration,
    ) -> Result<PresenceList, ServiceError>;

    /// Extends each record still owned by its owner for `ttl` and replaces its
    /// payload; a record removed, taken over or expired and pruned stays gone.
    async fn refresh(&self, records: &[Refresh], ttl: Duration) -> Result<(), ServiceError>;

    /// Removes the record of `key` if `owner` still owns it. Returns the
    /// tenant's list after the change.
    async fn remove(
        &self,
        tenant_id: &str,
        key: &str,
        owner: &str,
    ) -> Result<PresenceList, ServiceError>;

    /// The tenant's live records.
    async fn list(&self, tenant_id: &str) -> Result<PresenceList, ServiceError>;
}
