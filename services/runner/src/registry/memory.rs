//! The in-process registry (embedded mode, or a single runner): one mutex over
//! plain maps, so admission is atomic; bounded by `max_active` running and
//! `max_remembered` finished runs, finished runs expire after the dedupe TTL.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use clawgate_proto::runner::RunInfo;

use super::{Admission, RunControl, RunEntry, RunRegistry};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RunKey {
    tenant_id: String,
    user_id: String,
    run_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SessionRef {
    tenant_id: String,
    user_id: String,
    session_key: String,
}

struct Slot {
    entry: RunEntry,
    ended_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    runs: HashMap<RunKey, Slot>,
    active: HashMap<SessionRef, String>,
    /// Finished runs, oldest first (for TTL and size eviction).
    finished: VecDeque<(RunKey, Instant)>,
}

/// The in-process registry.
pub(crate) struct MemoryRegistry {
    state: Mutex<State>,
    ttl: Duration,
    max_active: usize,
    max_remembered: usize,
}

impl MemoryRegistry {
    pub fn new(ttl: Duration, max_active: usize, max_remembered: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ttl,
            max_active: max_active.max(1),
            max_remembered,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic mid-update of plain maps.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn evict(&self, state: &mut State, now: Instant) {
        while let Some((key, ended_at)) = state.finished.front() {
            let expired = now.duration_since(*ended_at) >= self.ttl;
            if !expired && state.finished.len() <= self.max_remembered {
                break;
            }
            // A run id reused after expiry has a newer slot; only drop the old one.
            if state
                .runs
                .get(key)
                .is_some_and(|slot| slot.ended_at == Some(*ended_at))
            {
                state.runs.remove(key);
            }
            state.finished.pop_front();
        }
    }
}

fn run_key(tenant_id: &str, user_id: &str, run_id: &str) -> RunKey {
    RunKey {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        run_id: run_id.to_owned(),
    }
}

fn session_ref(info: &RunInfo) -> SessionRef {
    SessionRef {
        tenant_id: info.tenant_id.clone(),
        user_id: info.user_id.clone(),
        session_key: info.session_key.clone(),
    }
}

#[async_trait]
impl RunRegistry for MemoryRegistry {
    async fn admit(
        &self,
        info: RunInfo,
        control: Arc<RunControl>,
    ) -> Result<Admission, ServiceError> {
        let now = Instant::now();
        let mut state = self.lock();
        self.evict(&mut state, now);
        let key = run_key(&info.tenant_id, &info.user_id, &info.run_id);
        if let Some(slot) = state.runs.get(&key) {
            return Ok(if slot.entry.running {
                Admission::InFlight(slot.entry.info.clone())
            } else {
                Admission::Done(slot.entry.info.clone())
            });
        }
        let session = session_ref(&info);
        if let Some(active_run_id) = state.active.get(&session) {
            return Ok(Admission::Busy {
                active_run_id: active_run_id.clone(),
            });
        }
        if state.active.len() >= self.max_active {
            return Ok(Admission::Full);
        }
        state.active.insert(session, info.run_id.clone());
        let entry = RunEntry {
            info,
            control: Some(control),
            running: true,
            owner: None,
        };
        state.runs.insert(
            key,
            Slot {
                entry,
                ended_at: None,
            },
        );
        Ok(Admission::Accepted)
    }

    async fn release(&self, tenant_id: &str, user_id: &str, run_id: &str) {
        let mut state = self.lock();
        let key = run_key(tenant_id, user_id, run_id);
        if let Some(slot) = state.runs.remove(&key) {
            let session = session_ref(&slot.entry.info);
            if state.active.get(&session) == Some(&key.run_id) {
                state.active.remove(&session);
            }
        }
    }

    async fn claim_end(&self, _info: &RunInfo) -> bool {
        // One process: the run's own task is the only one that ends it.
        true
    }

    async fn finish(&self, info: RunInfo) {
        let now = Instant::now();
        let mut state = self.lock();
        let key = run_key(&info.tenant_id, &info.user_id, &info.run_id);
        let session = session_ref(&info);
        if state.active.get(&session) == Some(&key.run_id) {
            state.active.remove(&session);
        }
        if let Some(slot) = state.runs.get_mut(&key) {
            slot.entry.info = info;
            slot.entry.running = false;
            slot.ended_at = Some(now);
            state.finished.push_back((key, now));
        }
        self.evict(&mut state, now);
    }

    async fn get(
        &self,
        tenant_id: &str,
        user_id: &str,
        run_id: &str,
    ) -> Result<Option<RunEntry>, ServiceError> {
        let mut state = self.lock();
        self.evict(&mut state, Instant::now());
        Ok(state
            .runs
            .get(&run_key(tenant_id, user_id, run_id))
            .map(|slot| slot.entry.clone()))
    }

    async fn active(
        &self,
        tenant_id: &str,
        user_id: &str,
        session_key: &str,
    ) -> Result<Option<RunEntry>, ServiceError> {
        let state = self.lock();
        let session = SessionRef {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            session_key: session_key.to_owned(),
        };
        let Some(run_id) = state.active.get(&session) else {
            return Ok(None);
        };
        Ok(state
            .runs
            .get(&run_key(tenant_id, user_id, run_id))
            .map(|slot| slot.entry.clone()))
    }

    async fn local(&self, tenant_id: &str, user_id: &str, run_id: &str) -> Option<RunEntry> {
        let state = self.lock();
        state
            .runs
            .get(&run_key(tenant_id, user_id, run_id))
            .filter(|slot| slot.entry.running)
            .map(|slot| slot.entry.clone())
    }

    async fn all_active(&self) -> Vec<RunEntry> {
        let state = self.lock();
        state
            .runs
            .values()
            .filter(|slot| slot.entry.running)
            .map(|slot| slot.entry.clone())
            .collect()
    }
}
