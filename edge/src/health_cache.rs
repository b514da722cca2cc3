//! The cached health snapshot itself ([`HealthCache`]): the current
//! [`Snapshot`] on a `watch` channel, the lock that keeps refreshes from
//! overlapping, and the scheduling-delay meter. What goes into a snapshot and
//! when it is refreshed is [`crate::health`]'s.
//!
//! Invariants: reading the snapshot never waits; versions start at 1 (the
//! empty snapshot) and only grow; the meter keeps at most one minute of
//! samples.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::out::EventOut;

/// Period of the scheduling-delay sampler.
pub(crate) const LAG_PERIOD: Duration = Duration::from_millis(500);
/// Samples kept (one minute).
const LAG_SAMPLES: usize = 120;
/// A p99 scheduling delay above this marks the event loop degraded.
const LAG_DEGRADED_MS: u64 = 200;

/// One published snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `stateVersion.health`.
    pub version: u64,
    /// The process part of `HealthSummary`; `{}` before the first refresh.
    pub payload: Value,
    /// When it was taken.
    pub taken: Instant,
}

/// The snapshot and its refreshes.
pub struct HealthCache {
    tx: watch::Sender<Arc<Snapshot>>,
    /// Held while a refresh runs, so refreshes never overlap.
    refreshing: tokio::sync::Mutex<()>,
    lag: LagMeter,
}

impl std::fmt::Debug for HealthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCache")
            .field("version", &self.tx.borrow().version)
            .finish_non_exhaustive()
    }
}

impl Default for HealthCache {
    fn default() -> Self {
        let (tx, _) = watch::channel(Arc::new(Snapshot {
            version: 1,
            payload: json!({}),
            taken: Instant::now(),
        }));
        Self {
            tx,
            refreshing: tokio::sync::Mutex::new(()),
            lag: LagMeter::default(),
        }
    }
}

impl HealthCache {
    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Held while a refresh runs.
    pub(crate) async fn lock_refresh(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refreshing.lock().await
    }

    /// Replaces the snapshot; wakes the receivers when `announce`.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>, announce: bool) {
        self.tx.send_if_modified(|current| {
            *current = snapshot;
            announce
        });
    }

    /// Records one scheduling-delay sample.
    pub(crate) fn record_lag(&self, late_ms: u64, now_ms: i64) {
        self.lag.record(late_ms, now_ms);
    }

    /// `eventLoop` of `HealthSummary`; `None` before any sample.
    pub(crate) fn event_loop(&self) -> Option<Value> {
        self.lag.summary()
    }
}

/// The OpenClaw `health` event of `snapshot` (broadcast, never dropped, with
/// `stateVersion`; presence never changes here, so its version stays 1).
pub fn event(snapshot: &Snapshot) -> EventOut {
    EventOut::broadcast("health", snapshot.payload.clone())
        .with_state_version(json!({ "presence": 1, "health": snapshot.version }))
}

/// The tokio scheduling delay of this process over the last minute: how late
/// a periodic timer fires.
#[derive(Debug, Default)]
struct LagMeter {
    inner: Mutex<Lag>,
}

#[derive(Debug, Default)]
struct Lag {
    samples: VecDeque<u64>,
    degraded_since_ms: Option<i64>,
}

impl LagMeter {
    fn record(&self, late_ms: u64, now_ms: i64) {
        let mut lag = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if lag.samples.len() >= LAG_SAMPLES {
            lag.samples.pop_front();
        }
        lag.samples.push_back(late_ms);
        let degraded = p99(&lag.samples) > LAG_DEGRADED_MS;
        match (degraded, lag.degraded_since_ms) {
            (true, None) => lag.degraded_since_ms = Some(now_ms),
            (false, Some(_)) => lag.degraded_since_ms = None,
            _ => {}
        }
    }

    /// `eventLoop` of `HealthSummary`; `None` before any sample.
    fn summary(&self) -> Option<Value> {
        let lag = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if lag.samples.is_empty() {
            return None;
        }
        let p99 = p99(&lag.samples);
        let max = lag.samples.iter().copied().max().unwrap_or(0);
        let degraded = lag.degraded_since_ms.is_some();
        let reasons: Vec<&str> = if degraded {
            vec!["event_loop_delay"]
        } else {
            Vec::new()
        };
        Some(json!({
            "degraded": degraded,
            "degradedSinceMs": lag.degraded_since_ms,
            "reasons": reasons,
            "intervalMs": u64::try_from(LAG_PERIOD.as_millis()).unwrap_or(u64::MAX),
            "delayP99Ms": p99,
            "delayMaxMs": max,
        }))
    }
}

fn p99(samples: &VecDeque<u64>) -> u64 {
    let mut sorted: Vec<u64> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let at = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
    sorted.get(at).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_meter_reports_delay_and_degradation() {
        let meter = LagMeter::default();
        assert!(meter.summary().is_none(), "nothing measured yet");
        for _ in 0..50 {
            meter.record(2, 1_000);
        }
        let calm = meter.summary().expect("measured");
        assert_eq!(calm["degraded"], false);
        assert_eq!(calm["reasons"], json!([]));
        assert_eq!(calm["delayP99Ms"], 2);
        for _ in 0..10 {
            meter.record(900, 2_000);
        }
        let busy = meter.summary().expect("measured");
        assert_eq!(busy["degraded"], true);
        assert_eq!(busy["degradedSinceMs"], 2_000);
        assert_eq!(busy["reasons"], json!(["event_loop_delay"]));
        assert_eq!(busy["delayMaxMs"], 900);
    }

    #[test]
    fn p99_of_samples() {
        let samples: VecDeque<u64> = (1..=100).collect();
        assert_eq!(p99(&samples), 99);
        assert_eq!(p99(&VecDeque::from([5])), 5);
    }
}
