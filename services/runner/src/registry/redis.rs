//! The cluster registry: run leases and records in Redis
//! ([`clawgate_runtime::lease`], each record carrying the run's [`RunInfo`]),
//! plus the runs this process executes.
//!
//! What it owns: the local table of runs this runner executes (their
//! [`RunControl`] and lease token). Everything other runners must see — which
//! run holds a session, what a run id returned — lives in Redis, so an
//! idempotent resend or an abort reaching another runner finds the run.
//!
//! Invariants:
//! - a run is in the local table from admission until `finish`, `release` or a
//!   lost `claim_end`; while there, [`RedisRegistry::renew`] keeps its lease;
//! - a run whose lease is found lost is aborted locally (stop reason
//!   `lease_lost`); a reaper ends it for its watchers, so its own end claim fails
//!   and it writes nothing;
//! - Redis being unreachable makes admission and lookups fail with
//!   `UNAVAILABLE`; it never panics or blocks past the command timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use clawgate_proto::runner::RunInfo;
use clawgate_runtime::lease::{HeldLease, LeaseAdmission, LeaseRecord, RedisRunLeases};
use clawgate_runtime::replay::RunRef;

use super::{Admission, RunControl, RunEntry, RunRegistry};

/// Run leases whose records hold the run's [`RunInfo`].
pub(crate) type RunLeases = RedisRunLeases<RunInfo>;

/// Attempts at recording a run's end (or its end claim) before giving up.
const WRITE_ATTEMPTS: u32 = 3;

struct Owned {
    info: RunInfo,
    control: Arc<RunControl>,
    token: String,
}

impl Owned {
    fn entry(&self) -> RunEntry {
        RunEntry {
            info: self.info.clone(),
            control: Some(self.control.clone()),
            running: true,
            owner: None,
        }
    }

    fn held(&self, run: &RunRef) -> HeldLease {
        HeldLease {
            run: run.clone(),
            session_key: self.info.session_key.clone(),
            token: self.token.clone(),
        }
    }
}

/// Run leases in Redis plus this runner's own runs.
pub(crate) struct RedisRegistry {
    leases: RunLeases,
    runner_id: String,
    max_active: usize,
    local: Mutex<HashMap<RunRef, Owned>>,
}

fn run_ref(info: &RunInfo) -> RunRef {
    RunRef::new(&info.tenant_id, &info.user_id, &info.run_id)
}

impl RedisRegistry {
    pub fn new(leases: RunLeases, runner_id: String, max_active: usize) -> Self {
        Self {
            leases,
            runner_id,
            max_active: max_active.max(1),
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn leases(&self) -> &RunLeases {
        &self.leases
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunRef, Owned>> {
        // A poisoned lock only means a panic mid-update of a plain map.
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remote(&self, record: LeaseRecord<RunInfo>) -> RunEntry {
        RunEntry {
            info: record.info,
            control: None,
            running: record.running,
            owner: Some(record.owner),
        }
    }

    /// Extends the leases of every local run, in one round trip, and aborts the
    /// local runs whose lease is gone. Redis errors are logged; the next tick
    /// retries (a lease outlives two missed renewals).
    pub async fn renew(&self) {
        let held: Vec<(HeldLease, Arc<RunControl>)> = self
            .lock()
            .iter()
            .map(|(run, owned)| (owned.held(run), owned.control.clone()))
            .collect();
        if held.is_empty() {
            return;
        }
        let leases: Vec<HeldLease> = held.iter().map(|(lease, _)| lease.clone()).collect();
        match self.leases.renew(&leases).await {
            Ok(still_held) => {
                for ((lease, control), held) in held.iter().zip(still_held) {
                    if !held {
                        tracing::warn!(run_id = %lease.run.run_id, "run lease lost; stopping the run");
                        control.abort("lease_lost");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, runs = held.len(), "run lease renewal failed"),
        }
    }
}

#[async_trait]
impl RunRegistry for RedisRegistry {
    async fn admit(
        &self,
        info: RunInfo,
        control: Arc<RunControl>,
    ) -> Result<Admission, ServiceError> {
        let run = run_ref(&info);
        {
            let local = self.lock();
            if let Some(owned) = local.get(&run) {
                return Ok(Admission::InFlight(owned.info.clone()));
            }
            if local.len() >= self.max_active {
                return Ok(Admission::Full);
            }
        }
        let admission = self
            .leases
            .admit(&run, &info.session_key, &info, &self.runner_id)
            .await?;
        match admission {
            LeaseAdmission::Granted { token } => {
                self.lock().insert(
                    run,
                    Owned {
                        info,
                        control,
                        token,
                    },
                );
                Ok(Admission::Accepted)
            }
            LeaseAdmission::Existing(record) if record.running => {
                Ok(Admission::InFlight(record.info))
            }
            LeaseAdmission::Existing(record) => Ok(Admission::Done(record.info)),
            LeaseAdmission::Busy { active_run_id } => Ok(Admission::Busy { active_run_id }),
        }
    }

    async fn release(&self, tenant_id: &str, user_id: &str, run_id: &str) {
        let run = RunRef::new(tenant_id, user_id, run_id);
        let Some(owned) = self.lock().remove(&run) else {
            return;
        };
        if let Err(err) = self.leases.release(&owned.held(&run)).await {
            tracing::warn!(error = %err, %run_id, "could not release a run lease; it expires by itself");
        }
    }

    async fn claim_end(&self, info: &RunInfo) -> bool {
        let run = run_ref(info);
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.leases.claim_end(&run, &self.runner_id).await {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(run_id = %info.run_id, "run already ended by another runner");
                    self.lock().remove(&run);
                    return false;
                }
                Err(err) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "run end claim failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                }
                Err(err) => {
                    // Better a rare duplicate row than a lost reply.
                    tracing::error!(error = %err, "run end claim failed; ending the run anyway");
                }
            }
        }
        true
    }

    async fn finish(&self, info: RunInfo) {
        let run = run_ref(&info);
        let Some(owned) = self.lock().remove(&run) else {
            return;
        };
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.leases.finish(&owned.held(&run), &info).await {
                Ok(()) => return,
                Err(err) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, "run end record failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                }
                Err(err) => {
                    tracing::error!(error = %err, run_id = %info.run_id, "run end not recorded; its lease expires by itself");
                }
            }
        }
    }

    async fn get(
        &self,
        tenant_id: &str,
        user_id: &str,
        run_id: &str,
    ) -> Result<Option<RunEntry>, ServiceError> {
        let run = RunRef::new(tenant_id, user_id, run_id);
        if let Some(owned) = self.lock().get(&run) {
            return Ok(Some(owned.entry()));
        }
        Ok(self
            .leases
            .get(&run)
            .await?
            .map(|record| self.remote(record)))
    }

    async fn active(
        &self,
        tenant_id: &str,
        user_id: &str,
        session_key: &str,
    ) -> Result<Option<RunEntry>, ServiceError> {
        let Some(record) = self.leases.active(tenant_id, user_id, session_key).await? else {
            return Ok(None);
        };
        if let Some(owned) = self.lock().get(&run_ref(&record.info)) {
            return Ok(Some(owned.entry()));
        }
        Ok(Some(self.remote(record)))
    }

    async fn local(&self, tenant_id: &str, user_id: &str, run_id: &str) -> Option<RunEntry> {
        self.lock()
            .get(&RunRef::new(tenant_id, user_id, run_id))
            .map(Owned::entry)
    }

    async fn all_active(&self) -> Vec<RunEntry> {
        self.lock().values().map(Owned::entry).collect()
    }
}
