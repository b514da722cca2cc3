//! The measurements: idle sockets (memory) and streaming runs (delivered frames
//! per second and gateway-added latency). Each phase opens its sockets, measures
//! over a bounded window, tells every socket to stop and waits (bounded) for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::client::{self, Counters, SenderPlan, SocketPlan, SocketResult, Ws};
use super::stats::{self, EmissionIndex, Percentiles, round3};
use super::target::{self, MockHost, Target};

/// How long one socket may take to connect and complete the handshake.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(20);
/// How long stopped sockets get to close before they are abandoned.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// Opens `count` sockets (socket `i` to edge `i mod edges`), at most
/// `concurrency` handshakes at a time. Returns the sockets in index order (a
/// failed one is `None`) and the first error.
async fn open_sockets(
    target: &Target,
    count: usize,
    concurrency: usize,
) -> (Vec<Option<Ws>>, usize, Option<String>) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let url = target.urls[index % target.urls.len()].clone();
        let token = target.token.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, client::connect(&url, &token, HANDSHAKE_LIMIT).await)
        });
    }
    let mut sockets: Vec<Option<Ws>> = (0..count).map(|_| None).collect();
    let mut failures = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(ws))) => sockets[index] = Some(ws),
            Ok((_, Err(err))) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{err:#}"));
            }
            Err(err) => {
                failures += 1;
                first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    (sockets, failures, first_error)
}

/// Tells every socket task to stop and collects what they hand back.
async fn stop_all(
    stop: watch::Sender<bool>,
    mut tasks: JoinSet<SocketResult>,
) -> (Vec<SocketResult>, usize) {
    let _ = stop.send(true);
    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + STOP_LIMIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    let abandoned = tasks.len();
    tasks.abort_all();
    (results, abandoned)
}

/// What the idle phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub sockets_requested: usize,
    /// Sockets authenticated and still open at the end of the hold.
    pub sockets_held: usize,
    pub connect_failures: usize,
    pub first_error: Option<String>,
    pub connect_s: f64,
    pub handshakes_per_s: f64,
    pub hold_s: f64,
    pub edge_rss_before_bytes: Option<u64>,
    pub edge_rss_after_bytes: Option<u64>,
    pub edge_rss_per_idle_socket_bytes: Option<f64>,
    /// This tool's own RSS growth per socket (the client side).
    pub client_rss_per_socket_bytes: Option<f64>,
}

/// Opens `count` idle authenticated sockets, measures the edges' RSS before and
/// after, holds them for `hold` and counts how many are still open.
pub async fn idle(target: &Target, count: usize, concurrency: usize, hold: Duration) -> IdleReport {
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let idle_plan = SocketPlan {
        track_latency: false,
        sender: None,
    };
    // One socket per edge first, so per-process and per-user state (the user's
    // bus subscription, gRPC channels) is in the baseline, not in the figure.
    let (warm, _, _) = open_sockets(target, target.urls.len(), concurrency).await;
    for ws in warm.into_iter().flatten() {
        let plan = idle_plan.clone();
        tasks.spawn(client::drive(
            ws,
            plan,
            Arc::new(Counters::default()),
            stop_rx.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edge_before = target::edges_rss(&target.edge_pids);
    let client_before = target::rss_bytes(None);

    let started = Instant::now();
    let (sockets, failures, first_error) = open_sockets(target, count, concurrency).await;
    let connect_s = started.elapsed().as_secs_f64();
    let mut opened: usize = 0;
    for ws in sockets.into_iter().flatten() {
        opened += 1;
        tasks.spawn(client::drive(
            ws,
            idle_plan.clone(),
            counters.clone(),
            stop_rx.clone(),
        ));
    }
    // Let allocations settle (per-socket tasks reach their idle state).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let edge_after = target::edges_rss(&target.edge_pids);
    let client_after = target::rss_bytes(None);
    tokio::time::sleep(hold).await;
    let ended = Counters::get(&counters.ended_early) as usize;
    let held = opened.saturating_sub(ended);
    let (_, _) = stop_all(stop, tasks).await;

    let per_socket = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if opened > 0 => {
            Some(round3((after as f64 - before as f64) / opened as f64))
        }
        _ => None,
    };
    IdleReport {
        sockets_requested: count,
        sockets_held: held,
        connect_failures: failures,
        first_error,
        connect_s: round3(connect_s),
        handshakes_per_s: round3(opened as f64 / connect_s.max(1e-9)),
        hold_s: round3(hold.as_secs_f64()),
        edge_rss_before_bytes: edge_before,
        edge_rss_after_bytes: edge_after,
        edge_rss_per_idle_socket_bytes: per_socket(edge_before, edge_after),
        client_rss_per_socket_bytes: per_socket(client_before, client_after),
    }
}

/// Parameters of a streaming phase.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Sockets that receive every run (all of the same user); the first `runs`
    /// of them also send.
    pub sockets: usize,
    pub runs: usize,
    pub tokens_per_run: u32,
    /// Sockets (the first ones, spread over the edges) that record latency.
    pub latency_sockets: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub connect_concurrency: usize,
    /// Expected model rate, to bound how long one run may take.
    pub tokens_per_second: f64,
    /// The coalescing window in force, if known (reported only).
    pub coalesce_ms: Option<u64>,
}

/// CPU one process used during the measuring window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub cpu_s: f64,
    /// Share of one core over the window, in percent.
    pub core_percent: f64,
    /// CPU time per delivered frame, in µs.
    pub us_per_frame: Option<f64>,
}

/// What a streaming phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub coalesce_ms: Option<u64>,
    pub sockets: usize,
    pub sockets_connected: usize,
    pub connect_failures: usize,
    pub first_error: Option<String>,
    pub runs: usize,
    pub tokens_per_run: u32,
    pub duration_s: f64,
    /// `agent` + `chat` frames received by all sockets in the window.
    pub delivered_frames: u64,
    pub delivered_frames_per_s: f64,
    pub other_frames: u64,
    pub runs_started: u64,
    pub runs_finished: u64,
    pub run_errors: u64,
    pub sockets_ended_early: u64,
    /// Tokens the mock model emitted per second in the window (all runs).
    pub model_tokens_per_s: Option<f64>,
    /// Mean rate of one run while it streams (tokens/s), i.e. the pace the mock
    /// model actually kept (its per-token sleep rounds up to the timer tick).
    pub model_stream_rate_per_run: Option<f64>,
    pub latency_sockets: usize,
    pub latency_ms: Option<Percentiles>,
    /// Received tokens without an emission record (0 unless the model is not
    /// this tool's mock).
    pub unmatched_tokens: usize,
    pub cpu: BTreeMap<String, CpuUse>,
}

fn cpu_use(used: f64, window_s: f64, delivered: u64) -> CpuUse {
    CpuUse {
        cpu_s: round3(used),
        core_percent: round3(used / window_s.max(1e-9) * 100.0),
        us_per_frame: (delivered > 0).then(|| round3(used * 1e6 / delivered as f64)),
    }
}

async fn cpu_snapshot(target: &Target) -> BTreeMap<String, f64> {
    let mut snapshot = BTreeMap::new();
    for (name, pid) in &target.pids {
        if let Some(seconds) = target::cpu_seconds(Some(*pid)) {
            snapshot.insert(name.clone(), seconds);
        }
    }
    if let Some(seconds) = target::cpu_seconds(None) {
        snapshot.insert("bench-clients-and-mock".to_owned(), seconds);
    }
    if let Some(url) = &target.redis_url
        && let Some(seconds) = target::redis_cpu_seconds(url).await
    {
        snapshot.insert("redis".to_owned(), seconds);
    }
    snapshot
}

/// Streams runs to many sockets of one user and measures delivery and latency.
pub async fn stream(
    target: &Target,
    mock: Option<&MockHost>,
    options: &StreamOptions,
) -> StreamReport {
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = watch::channel(false);
    let (sockets, failures, first_error) =
        open_sockets(target, options.sockets, options.connect_concurrency).await;
    let sockets_connected = sockets.iter().filter(|s| s.is_some()).count();

    let started = Instant::now();
    let window_start = started + options.warmup;
    let window_end = window_start + options.duration;
    let run_s = f64::from(options.tokens_per_run) / options.tokens_per_second.max(0.001);
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut tasks = JoinSet::new();
    for (index, ws) in sockets.into_iter().enumerate() {
        let Some(ws) = ws else { continue };
        let sender = (index < options.runs).then(|| SenderPlan {
            nonce: nonce.clone(),
            slot: index,
            tokens_per_run: options.tokens_per_run,
            stop_sending_at: window_end,
            run_timeout: Duration::from_secs_f64(run_s * 3.0 + 10.0),
        });
        let plan = SocketPlan {
            track_latency: index < options.latency_sockets,
            sender,
        };
        tasks.spawn(client::drive(ws, plan, counters.clone(), stop_rx.clone()));
    }

    tokio::time::sleep_until(window_start.into()).await;
    let frames_0 = Counters::get(&counters.event_frames);
    let other_0 = Counters::get(&counters.other_frames);
    let cpu_0 = cpu_snapshot(target).await;
    let measured_from = Instant::now();
    tokio::time::sleep_until(window_end.into()).await;
    let frames_1 = Counters::get(&counters.event_frames);
    let other_1 = Counters::get(&counters.other_frames);
    let measured_to = Instant::now();
    let cpu_1 = cpu_snapshot(target).await;
    let window_s = measured_to.duration_since(measured_from).as_secs_f64();
    let (results, _) = stop_all(stop, tasks).await;

    let delivered = frames_1.saturating_sub(frames_0);
    let mut cpu = BTreeMap::new();
    for (name, after) in &cpu_1 {
        if let Some(before) = cpu_0.get(name) {
            let used = (after - before).max(0.0);
            cpu.insert(name.clone(), cpu_use(used, window_s, delivered));
        }
    }

    // All edges together.
    let edges: Vec<&CpuUse> = cpu
        .iter()
        .filter(|(name, _)| name.starts_with("edge"))
        .map(|(_, used)| used)
        .collect();
    if !edges.is_empty() {
        let used: f64 = edges.iter().map(|e| e.cpu_s).sum();
        cpu.insert("edges-total".to_owned(), cpu_use(used, window_s, delivered));
    }

    let emissions = mock.map(MockHost::emissions).unwrap_or_default();
    let in_window: Vec<_> = emissions
        .iter()
        .filter(|e| e.index > 0 && e.at >= measured_from && e.at <= measured_to)
        .collect();
    let model_tokens_per_s =
        (!emissions.is_empty()).then(|| round3(in_window.len() as f64 / window_s.max(1e-9)));
    let model_stream_rate_per_run = stats::stream_rate(&in_window).map(round3);
    let index = EmissionIndex::new(&emissions);
    let receipts: Vec<_> = results
        .iter()
        .flat_map(|r| r.receipts.iter().cloned())
        .collect();
    let (latencies, unmatched) = if index.is_empty() {
        (Vec::new(), 0)
    } else {
        stats::token_latencies(&receipts, &index, measured_from, measured_to)
    };

    StreamReport {
        coalesce_ms: options.coalesce_ms,
        sockets: options.sockets,
        sockets_connected,
        connect_failures: failures,
        first_error,
        runs: options.runs,
        tokens_per_run: options.tokens_per_run,
        duration_s: round3(window_s),
        delivered_frames: delivered,
        delivered_frames_per_s: round3(delivered as f64 / window_s.max(1e-9)),
        other_frames: other_1.saturating_sub(other_0),
        runs_started: Counters::get(&counters.runs_started),
        runs_finished: Counters::get(&counters.runs_finished),
        run_errors: Counters::get(&counters.run_errors),
        sockets_ended_early: Counters::get(&counters.ended_early),
        model_tokens_per_s,
        model_stream_rate_per_run,
        latency_sockets: options.latency_sockets.min(sockets_connected),
        latency_ms: stats::percentiles(latencies),
        unmatched_tokens: unmatched,
        cpu,
    }
}
