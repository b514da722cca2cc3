//! Retention of soft-deleted sessions: how long they are kept, purging them,
//! and the background task that purges periodically.
//!
//! Invariants:
//! - Only sessions soft-deleted longer ago than the retention are removed, each
//!   together with its whole transcript; live sessions and recent deletions are
//!   never touched. This is the only path that deletes rows, and the schema
//!   refuses any other (see the store's retention module for how).
//! - The purge spans all tenants and runs in batches of [`PURGE_BATCH`]
//!   sessions, one transaction each, so it never holds locks for long; on
//!   PostgreSQL several replicas may purge at once (they skip each other's rows).
//! - The background task never stops on a database error: it logs and tries
//!   again at the next tick, and it ends only when its shutdown token fires.

use std::time::Duration;

use clawgate_proto::ServiceError;
use clawgate_runtime::clock::now_ms;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::SessionService;
use crate::store::Purged;

/// How long a soft-deleted session is kept unless [`SessionService::with_retention`]
/// says otherwise: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Most sessions one purge transaction removes.
pub const PURGE_BATCH: u64 = 500;

impl SessionService {
    /// Keeps soft-deleted sessions for `retention` before
    /// [`purge_expired`](Self::purge_expired) removes them (default
    /// [`DEFAULT_RETENTION`]).
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The retention in effect.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Hard-deletes every session soft-deleted longer ago than the retention,
    /// with its messages, across all tenants; returns how many sessions it removed.
    pub async fn purge_expired(&self) -> Result<u64, ServiceError> {
        let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(retention_ms);
        let batch = i64::try_from(PURGE_BATCH).unwrap_or(i64::MAX);
        let mut purged = Purged::default();
        loop {
            let done = self.store.purge_batch(before, batch).await?;
            purged += done;
            if done.sessions < PURGE_BATCH {
                break;
            }
        }
        if purged.sessions > 0 {
            tracing::info!(
                sessions = purged.sessions,
                messages = purged.messages,
                "purged sessions deleted longer ago than the retention"
            );
        }
        Ok(purged.sessions)
    }

    /// Runs [`purge_expired`](Self::purge_expired) now and then every `every`
    /// until `shutdown` is cancelled (a purge in progress is abandoned and rolls
    /// back). Errors are logged, never fatal.
    pub fn spawn_retention(&self, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    result = service.purge_expired() => match result {
                        Ok(sessions) => tracing::debug!(sessions, "retention purge done"),
                        Err(err) => tracing::warn!(error = %err, "retention purge failed; retrying later"),
                    },
                }
            }
            tracing::debug!("retention task stopped");
        })
    }
}
