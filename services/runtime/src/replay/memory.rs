//! In-process replay log for the embedded mode: histories in a map, events
//! published on any [`EventBus`].
//!
//! Invariant: memory is bounded by `max_runs × max_events_per_run` events; a
//! history is dropped `retention` after its last event, or earlier (least
//! recently appended first) when more than `max_runs` runs are remembered.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::{ReplayError, ReplayEvent, ReplayLog, ReplayOptions, RunRef};
use crate::bus::{BusError, EventBus, Topic};

struct History {
    /// (seq, payload), oldest first.
    events: VecDeque<(u64, Bytes)>,
    touched: Instant,
    /// Order of the latest append among all runs: tells apart appends that
    /// land at the same instant (a coarse or paused clock).
    order: u64,
}

/// The in-process [`ReplayLog`]. Cheap to clone.
#[derive(Clone)]
pub struct MemoryReplayLog {
    bus: Arc<dyn EventBus>,
    options: ReplayOptions,
    runs: Arc<Mutex<HashMap<RunRef, History>>>,
    appends: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryReplayLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayLog")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MemoryReplayLog {
    /// Keeps histories in memory and publishes on `bus`.
    pub fn new(bus: Arc<dyn EventBus>, options: ReplayOptions) -> Self {
        Self {
            bus,
            options,
            runs: Arc::new(Mutex::new(HashMap::new())),
            appends: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunRef, History>> {
        // A poisoned lock only means a panic mid-update of a plain map.
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops expired histories, then the least recently appended ones while more
    /// than `keep` remain. Runs only when a new run is added.
    fn evict(&self, runs: &mut HashMap<RunRef, History>, now: Instant, keep: usize) {
        let retention = self.options.retention;
        runs.retain(|_, history| now.duration_since(history.touched) < retention);
        while runs.len() > keep {
            let oldest = runs
                .iter()
                .min_by_key(|(_, history)| (history.touched, history.order))
                .map(|(run, _)| run.clone());
            match oldest {
                Some(run) => runs.remove(&run),
                None => break,
            };
        }
    }

    fn append(&self, event: &ReplayEvent) {
        let now = Instant::now();
        let order = self.appends.fetch_add(1, Ordering::Relaxed);
        let run = event.run.clone();
        let max_events = self.options.max_events_per_run.max(1);
        let mut runs = self.lock();
        if !runs.contains_key(&run) {
            let keep = self.options.max_runs.max(1) - 1;
            self.evict(&mut runs, now, keep);
        }
        let history = runs.entry(run).or_insert_with(|| History {
            events: VecDeque::new(),
            touched: now,
            order,
        });
        history.touched = now;
        history.order = order;
        history.events.push_back((event.seq, event.payload.clone()));
        while history.events.len() > max_events {
            history.events.pop_front();
        }
    }
}

#[async_trait]
impl ReplayLog for MemoryReplayLog {
    async fn append_and_publish(
        &self,
        topics: &[Topic],
        event: &ReplayEvent,
    ) -> Result<(), ReplayError> {
        self.append(event);
        let messages = topics
            .iter()
            .map(|topic| (topic.clone(), event.payload.clone()))
            .collect();
        self.bus
            .publish_many(messages)
            .await
            .map_err(|err| match err {
                BusError::Unavailable(reason) => ReplayError::Unavailable(reason),
                BusError::Closed => ReplayError::Unavailable("event bus closed".into()),
            })
    }

    async fn read_from(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Bytes>, ReplayError> {
        let limit = match limit {
            0 => self.options.max_events_per_run,
            limit => limit.min(self.options.max_events_per_run),
        };
        let runs = self.lock();
        let Some(history) = runs.get(run) else {
            return Ok(Vec::new());
        };
        if history.touched.elapsed() >= self.options.retention {
            return Ok(Vec::new());
        }
        Ok(history
            .events
            .iter()
            .filter(|(seq, _)| *seq > after_seq)
            .take(limit)
            .map(|(_, payload)| payload.clone())
            .collect())
    }
}
