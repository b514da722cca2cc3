//! The approval store: pending human decisions (exec approvals) shared by every
//! runner, so an approval created by one runner can be listed and decided
//! through any other.
//!
//! A record is an opaque payload (the runner's encoded approval) under a tenant
//! and an id, with an expiry; a decision is an opaque payload too, set **at most
//! once** ([`ApprovalStore::decide`]: the first decision wins, later ones get
//! the winner back). Listing returns a tenant's records that are neither
//! decided nor expired, oldest first.
//!
//! Two implementations: Redis ([`redis::RedisApprovals`], shared by every
//! runner; one script per decision so two concurrent decisions cannot both
//! apply) and in-process ([`memory::MemoryApprovals`]).
//!
//! Invariants: a record and its decision live at most until
//! `expires_at_ms + `[`KEEP_AFTER_EXPIRY`] (then they are gone: unknown); a
//! decision on an unknown record is refused ([`Decide::Unknown`]); every Redis
//! call is bounded by [`COMMAND_TIMEOUT`].

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;

/// How long a record (and its decision) stays readable after it expired, so a
/// late `get` or wait still learns how it ended.
pub const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(300);
/// Most records one list returns.
pub const MAX_LISTED: usize = 500;
/// Bound of one store round trip.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// One stored approval.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredApproval {
    pub id: String,
    pub payload: Vec<u8>,
    pub expires_at_ms: i64,
    /// The decision, once one was applied.
    pub decision: Option<Vec<u8>>,
}

/// What [`ApprovalStore::decide`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decide {
    /// This call's decision was applied.
    Applied,
    /// Another decision was applied first; it is returned.
    Already(Vec<u8>),
    /// No such record (never created, or gone).
    Unknown,
}

/// Pending approvals of every tenant.
#[async_trait]
pub trait ApprovalStore: Send + Sync + 'static {
    /// Stores a new record (an existing id is replaced).
    async fn create(
        &self,
        tenant_id: &str,
        id: &str,
        payload: &[u8],
        expires_at_ms: i64,
    ) -> Result<(), ServiceError>;

    /// The record of `id`, with its decision if any.
    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<StoredApproval>, ServiceError>;

    /// The tenant's undecided records not expired at `now_ms`, oldest first
    /// (at most [`MAX_LISTED`]).
    async fn list(&self, tenant_id: &str, now_ms: i64)
    -> Result<Vec<StoredApproval>, ServiceError>;

    /// Sets the decision of `id` unless one is set already.
    async fn decide(
        &self,
        tenant_id: &str,
        id: &str,
        decision: &[u8],
    ) -> Result<Decide, ServiceError>;
}

/// Milliseconds a record lives in the store from `now_ms`.
pub(crate) fn keep_ms(expires_at_ms: i64, now_ms: i64) -> i64 {
    let keep = i64::try_from(KEEP_AFTER_EXPIRY.as_millis()).unwrap_or(i64::MAX);
    expires_at_ms
        .saturating_sub(now_ms)
        .max(0)
        .saturating_add(keep)
}
