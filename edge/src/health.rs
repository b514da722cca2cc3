//! The edge's cached health snapshot: what this process knows about itself
//! and the services it calls, refreshed in the background and shared by
//! `hello-ok.snapshot.health`, the `health` event and the `health` method.
//!
//! A refresh ([`refresh`]) asks each service client whether its service
//! answers (in this process it does; over gRPC, the standard health check
//! within [`PROBE_TIMEOUT`]), reads the event bus's last readiness probe and
//! the tokio scheduling delay this process measured (sampled every 500 ms on
//! a task of its own), and builds the process part of OpenClaw's
//! `HealthSummary`. Refreshes run every [`REFRESH_INTERVAL`]
//! ([`DEGRADED_REFRESH_INTERVAL`] while not ok) and when a `health` call asks
//! for a probe (at most one per [`MIN_PROBE_GAP`]; a younger snapshot already
//! is a fresh one). The snapshot is kept in [`crate::health_cache`]. Each one
//! publishes a new snapshot with the next version (`stateVersion.health`) on
//! a `watch` channel every OpenClaw connection observes, which then sends it
//! as a `health` event (all but the first, which only replaces the empty one
//! right after start).
//!
//! Invariants: the snapshot holds nothing of any tenant or user (it goes to
//! every connection): session counts are added per caller by the `health`
//! method only; reading it never waits (connect stays fast); versions start at
//! 1 (the empty snapshot before the first refresh) and only grow; a refresh
//! takes at most about [`PROBE_TIMEOUT`] (the probes run concurrently) and
//! refreshes never overlap.

use std::sync::{Arc, Weak};
use std::time::Duration;

use clawgate_proto::reach::Reachability;
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::health_cache::LAG_PERIOD;
pub use crate::health_cache::{Snapshot, event};
use crate::state::EdgeState;

/// How often the snapshot is refreshed (and a `health` event sent).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// How often the snapshot is refreshed while something is not ok (e.g. the
/// services of an edge that started first).
pub const DEGRADED_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Bound of one service's health check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A snapshot younger than this is what a probe would find.
pub const MIN_PROBE_GAP: Duration = Duration::from_secs(1);
/// The snapshot `hello-ok.snapshot.health` carries, and its version.
pub fn health_snapshot(state: &EdgeState) -> (Value, u64) {
    let snapshot = state.health.current();
    (snapshot.payload.clone(), snapshot.version)
}

/// A fresh snapshot: refreshes unless the current one is younger than
/// [`MIN_PROBE_GAP`] (or another refresh just finished).
pub async fn probe(state: &EdgeState) -> Arc<Snapshot> {
    let asked = Instant::now();
    let _running = state.health.lock_refresh().await;
    let current = state.health.current();
    if current.version > 1 && asked.saturating_duration_since(current.taken) < MIN_PROBE_GAP {
        return current;
    }
    refresh_locked(state).await
}

/// Refreshes now (waiting for a running refresh first).
pub async fn refresh(state: &EdgeState) -> Arc<Snapshot> {
    let _running = state.health.lock_refresh().await;
    refresh_locked(state).await
}

async fn refresh_locked(state: &EdgeState) -> Arc<Snapshot> {
    let started = Instant::now();
    let services = &state.services;
    let (auth, runner, session) = tokio::join!(
        services.auth.reachability(PROBE_TIMEOUT),
        services.runner.reachability(PROBE_TIMEOUT),
        services.session.reachability(PROBE_TIMEOUT),
    );
    let bus_ok = state.bus_ok.load(std::sync::atomic::Ordering::Acquire);
    let ok = auth.ok() && runner.ok() && session.ok() && bus_ok;
    let agent = &state.config.default_agent_id;
    let mut payload = json!({
        "ok": ok,
        "ts": now_ms(),
        "durationMs": millis(started.elapsed()),
        // No chat channels exist, and no heartbeats run.
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "heartbeatSeconds": 0,
        "defaultAgentId": agent,
        "agents": [{
            "agentId": agent,
            "isDefault": true,
            "heartbeat": { "enabled": false, "every": "disabled", "everyMs": null },
        }],
        "version": state.config.version,
        "uptimeMs": state.uptime_ms(),
        "services": {
            "auth": service(&auth),
            "runner": service(&runner),
            "session": service(&session),
            "bus": { "ok": bus_ok },
        },
    });
    if let Some(event_loop) = state.health.event_loop() {
        payload["eventLoop"] = event_loop;
    }
    let version = state.health.current().version + 1;
    let snapshot = Arc::new(Snapshot {
        version,
        payload,
        taken: Instant::now(),
    });
    // The first snapshot replaces the empty one without an event: the
    // sockets already open got the empty one only because the edge had just
    // started.
    let announce = version > 2;
    state.health.publish(snapshot.clone(), announce);
    snapshot
}

fn service(reach: &Reachability) -> Value {
    let mut entry = json!({ "ok": reach.ok(), "status": reach.name() });
    if let Reachability::Unreachable(why) = reach {
        entry["error"] = json!(why);
    }
    entry
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Refreshes the snapshot at once and then every [`REFRESH_INTERVAL`] (or
/// [`DEGRADED_REFRESH_INTERVAL`]), and samples the scheduling delay on a task
/// of its own, until the edge is gone or shuts down.
pub async fn run(state: Weak<EdgeState>) {
    let Some(strong) = state.upgrade() else {
        return;
    };
    let shutdown = strong.shutdown.clone();
    drop(strong);
    tokio::spawn(sample_lag(state.clone(), shutdown.clone()));
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        let snapshot = refresh(&strong).await;
        drop(strong);
        let wait = if snapshot.payload["ok"].as_bool().unwrap_or(false) {
            REFRESH_INTERVAL
        } else {
            DEGRADED_REFRESH_INTERVAL
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Records how late a periodic timer fires: time the runtime could not run
/// this task.
async fn sample_lag(state: Weak<EdgeState>, shutdown: tokio_util::sync::CancellationToken) {
    let mut sample_at = tokio::time::interval(LAG_PERIOD);
    sample_at.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            () = shutdown.cancelled() => return,
            due = sample_at.tick() => due,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        let late = Instant::now().saturating_duration_since(due);
        state.health.record_lag(millis(late), now_ms());
    }
}
