//! The run registry: which runs exist, which run is active in each session, and
//! what finished runs returned (for idempotent resends and `GetRun`).
//!
//! Invariants (both implementations):
//! - at most one active run per session (tenant, user, session key) — per
//!   process for [`MemoryRegistry`], across every runner sharing one Redis for
//!   [`RedisRegistry`] (a lease per session);
//! - a run is known by (tenant, user, run id), so one user never sees another's run;
//! - admission is one atomic step: the idempotency check, the busy check and the
//!   insertion cannot interleave with another admission;
//! - a run's end is claimed once ([`RunRegistry::claim_end`]): only the claimer
//!   writes its last transcript row and publishes its terminal event;
//! - memory is bounded: at most `max_active` running runs per process and, in
//!   memory, `max_remembered` finished runs; finished runs are forgotten after
//!   the dedupe TTL.

mod memory;
mod redis;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use clawgate_proto::runner::RunInfo;
use tokio_util::sync::CancellationToken;

pub(crate) use memory::MemoryRegistry;
pub(crate) use redis::RedisRegistry;

/// How a run is told to stop, and how others learn it has ended.
#[derive(Debug, Default)]
pub(crate) struct RunControl {
    cancel: CancellationToken,
    ended: CancellationToken,
    stop_reason: Mutex<Option<String>>,
}

impl RunControl {
    /// Asks the run to stop; the first reason given wins.
    pub fn abort(&self, reason: &str) {
        {
            let mut slot = self
                .stop_reason
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slot.get_or_insert_with(|| reason.to_owned());
        }
        self.cancel.cancel();
    }

    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn stop_reason(&self) -> String {
        self.stop_reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_else(|| "rpc".to_owned())
    }

    /// Marks the run as ended (its transcript row is written).
    pub fn mark_ended(&self) {
        self.ended.cancel();
    }

    /// Waits until the run has ended, at most `limit`. Returns whether it ended.
    pub async fn wait_ended(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.ended.cancelled())
            .await
            .is_ok()
    }
}

/// A run as the registry knows it.
#[derive(Clone, Debug)]
pub(crate) struct RunEntry {
    pub info: RunInfo,
    /// Set when this process executes the run.
    pub control: Option<Arc<RunControl>>,
    pub running: bool,
    /// The runner executing (or that executed) the run, when it is another process.
    pub owner: Option<String>,
}

/// The outcome of asking to start a run.
#[derive(Debug)]
pub(crate) enum Admission {
    Accepted,
    /// The same run id is still running.
    InFlight(RunInfo),
    /// The same run id already finished.
    Done(RunInfo),
    /// Another run is active in the session.
    Busy {
        active_run_id: String,
    },
    /// This process runs as many runs as it may.
    Full,
}

#[async_trait]
pub(crate) trait RunRegistry: Send + Sync + 'static {
    /// Admits `info` (tenant, user, session key and run id set) as a running run
    /// executed by this process.
    async fn admit(
        &self,
        info: RunInfo,
        control: Arc<RunControl>,
    ) -> Result<Admission, ServiceError>;
    /// Forgets a run that was admitted but never started.
    async fn release(&self, tenant_id: &str, user_id: &str, run_id: &str);
    /// Claims the right to write the run's last transcript row and publish its
    /// terminal event. `false`: another process did or does (the run lost its
    /// lease and was ended by a reaper); the registry then forgets the run
    /// locally and the caller only marks it ended.
    async fn claim_end(&self, info: &RunInfo) -> bool;
    /// Records a run's result and frees its session.
    async fn finish(&self, info: RunInfo);
    async fn get(
        &self,
        tenant_id: &str,
        user_id: &str,
        run_id: &str,
    ) -> Result<Option<RunEntry>, ServiceError>;
    async fn active(
        &self,
        tenant_id: &str,
        user_id: &str,
        session_key: &str,
    ) -> Result<Option<RunEntry>, ServiceError>;
    /// A running run this process executes.
    async fn local(&self, tenant_id: &str, user_id: &str, run_id: &str) -> Option<RunEntry>;
    /// Every running run this process executes (for shutdown).
    async fn all_active(&self) -> Vec<RunEntry>;
}

#[cfg(test)]
mod tests;
