//! The run registry: which runs exist, which run is active in each session, and
//! what finished runs returned (for idempotent resends and `GetRun`).
//!
//! Invariants:
//! - at most one active run per session (tenant, user, session key);
//! - a run is known by (tenant, user, run id), so one user never sees another's run;
//! - admission is one atomic step: the idempotency check, the busy check and the
//!   insertion cannot interleave with another admission;
//! - memory is bounded: at most `max_active` running and `max_remembered` finished
//!   runs; finished runs are forgotten after the dedupe TTL.
//!
//! [`RunRegistry`] is the seam for a cluster-wide lease later; [`MemoryRegistry`]
//! serves one process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clawgate_proto::runner::RunInfo;
use tokio_util::sync::CancellationToken;

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
    pub control: Arc<RunControl>,
    pub running: bool,
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
    /// Admits `info` (tenant, user, session key and run id set) as a running run.
    async fn admit(&self, info: RunInfo, control: Arc<RunControl>) -> Admission;
    /// Forgets a run that was admitted but never started.
    async fn release(&self, tenant_id: &str, user_id: &str, run_id: &str);
    /// Records a run's result and frees its session.
    async fn finish(&self, info: RunInfo);
    async fn get(&self, tenant_id: &str, user_id: &str, run_id: &str) -> Option<RunEntry>;
    async fn active(&self, tenant_id: &str, user_id: &str, session_key: &str) -> Option<RunEntry>;
    /// Every running run (for shutdown).
    async fn all_active(&self) -> Vec<RunEntry>;
}

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
    async fn admit(&self, info: RunInfo, control: Arc<RunControl>) -> Admission {
        let now = Instant::now();
        let mut state = self.lock();
        self.evict(&mut state, now);
        let key = run_key(&info.tenant_id, &info.user_id, &info.run_id);
        if let Some(slot) = state.runs.get(&key) {
            return if slot.entry.running {
                Admission::InFlight(slot.entry.info.clone())
            } else {
                Admission::Done(slot.entry.info.clone())
            };
        }
        let session = session_ref(&info);
        if let Some(active_run_id) = state.active.get(&session) {
            return Admission::Busy {
                active_run_id: active_run_id.clone(),
            };
        }
        if state.active.len() >= self.max_active {
            return Admission::Full;
        }
        state.active.insert(session, info.run_id.clone());
        let entry = RunEntry {
            info,
            control,
            running: true,
        };
        state.runs.insert(
            key,
            Slot {
                entry,
                ended_at: None,
            },
        );
        Admission::Accepted
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

    async fn get(&self, tenant_id: &str, user_id: &str, run_id: &str) -> Option<RunEntry> {
        let mut state = self.lock();
        self.evict(&mut state, Instant::now());
        state
            .runs
            .get(&run_key(tenant_id, user_id, run_id))
            .map(|slot| slot.entry.clone())
    }

    async fn active(&self, tenant_id: &str, user_id: &str, session_key: &str) -> Option<RunEntry> {
        let state = self.lock();
        let session = SessionRef {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            session_key: session_key.to_owned(),
        };
        let run_id = state.active.get(&session)?;
        state
            .runs
            .get(&run_key(tenant_id, user_id, run_id))
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

#[cfg(test)]
mod tests {
    use clawgate_proto::runner::RunState;

    use super::*;

    fn info(user: &str, session: &str, run: &str) -> RunInfo {
        RunInfo {
            tenant_id: "t".into(),
            user_id: user.into(),
            session_key: session.into(),
            run_id: run.into(),
            state: RunState::Running as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn one_active_run_per_session_and_idempotent_ids() {
        let registry = MemoryRegistry::new(Duration::from_secs(60), 10, 10);
        let control = Arc::new(RunControl::default());
        assert!(matches!(
            registry.admit(info("u", "s", "r1"), control.clone()).await,
            Admission::Accepted
        ));
        assert!(matches!(
            registry.admit(info("u", "s", "r1"), control.clone()).await,
            Admission::InFlight(_)
        ));
        assert!(matches!(
            registry.admit(info("u", "s", "r2"), control.clone()).await,
            Admission::Busy { active_run_id } if active_run_id == "r1"
        ));
        // Another user's session with the same key and run id is independent.
        assert!(matches!(
            registry.admit(info("v", "s", "r1"), control.clone()).await,
            Admission::Accepted
        ));
        assert!(registry.get("t", "v", "r1").await.is_some());

        let mut done = info("u", "s", "r1");
        done.state = RunState::Completed as i32;
        registry.finish(done).await;
        assert!(
            matches!(registry.admit(info("u", "s", "r1"), control.clone()).await, Admission::Done(i) if i.state == RunState::Completed as i32)
        );
        assert!(registry.active("t", "u", "s").await.is_none());
        assert!(matches!(
            registry.admit(info("u", "s", "r2"), control).await,
            Admission::Accepted
        ));
    }

    #[tokio::test]
    async fn finished_runs_expire_and_are_bounded() {
        let registry = MemoryRegistry::new(Duration::from_millis(20), 10, 2);
        for run in ["a", "b", "c"] {
            let control = Arc::new(RunControl::default());
            assert!(matches!(
                registry.admit(info("u", run, run), control).await,
                Admission::Accepted
            ));
            registry.finish(info("u", run, run)).await;
        }
        assert!(
            registry.get("t", "u", "a").await.is_none(),
            "oldest evicted by size"
        );
        assert!(registry.get("t", "u", "c").await.is_some());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            registry.get("t", "u", "c").await.is_none(),
            "expired by ttl"
        );
    }

    #[tokio::test]
    async fn full_and_release() {
        let registry = MemoryRegistry::new(Duration::from_secs(60), 1, 10);
        let control = Arc::new(RunControl::default());
        assert!(matches!(
            registry.admit(info("u", "s1", "r1"), control.clone()).await,
            Admission::Accepted
        ));
        assert!(matches!(
            registry.admit(info("u", "s2", "r2"), control.clone()).await,
            Admission::Full
        ));
        registry.release("t", "u", "r1").await;
        assert!(registry.get("t", "u", "r1").await.is_none());
        assert!(matches!(
            registry.admit(info("u", "s2", "r2"), control).await,
            Admission::Accepted
        ));
    }

    #[tokio::test]
    async fn abort_keeps_the_first_reason() {
        let control = RunControl::default();
        assert_eq!(control.stop_reason(), "rpc");
        control.abort("stop-command");
        control.abort("rpc");
        assert!(control.cancelled().is_cancelled());
        assert_eq!(control.stop_reason(), "stop-command");
        assert!(!control.wait_ended(Duration::from_millis(1)).await);
        control.mark_ended();
        assert!(control.wait_ended(Duration::from_millis(1)).await);
    }
}
