//! The tool-turn scenario: what the gateway adds to an agent turn whose model
//! calls one tool, and how many such runs it carries at once.
//!
//! A turn is an OpenClaw `chat.send` on a session of its own. The mock model
//! (no delay) answers by the request body ([`mock_rule`]): a **tool turn**'s
//! first model step calls the built-in `sessions_list` with `{}` (it reads the
//! session service), its second step, whose last message is the tool result,
//! answers [`REPLY`]; a **plain turn** answers [`REPLY`] at once. The clock of
//! a turn runs from the `chat.send` frame written to its terminal `chat` event
//! read (end to end); the model time is the mock's own: for each of the turn's
//! model requests, request parsed → last byte of the answer queued, summed. The
//! **gateway overhead** of a turn is end to end − model time, so it holds the
//! whole gateway path: edge, runner, the transcript writes, the model client's
//! HTTP round trips and stream parsing, the tool call, the bus and the event
//! delivery. With 0 ms model time nothing else is left.
//!
//! - **sequential**: one socket, one turn at a time, tool and plain turns
//!   interleaved (so drifting load hits both alike), after unmeasured warm-up
//!   turns; percentiles of end to end, model time and overhead of each kind,
//!   and what the tool step adds (tool − plain overhead);
//! - **concurrent**: N tool turns started at once, spread over S sockets (each
//!   its own user through an API key, so a socket receives only its own runs'
//!   events; or all the shared-token user), every turn checked: refused,
//!   failed, timed out, a wrong reply, a failed tool result or a model step
//!   count other than two are errors. Throughput over first send → last
//!   terminal event, the peak number of runs in flight, and the percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clawgate_testkit::mock_script::last_user_message;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::client::{self, Ws};
use super::phases::HANDSHAKE_LIMIT;
use super::stats::{Percentiles, round3};
use super::target::{self, MockHost, Target};
use super::turn_stats::{TurnStats, model_sides, turn_stats};
use super::turns::{
    Outcome, TurnRecord, TurnSpec, connect_as, drive_turns, peak_in_flight, user_keys,
};
use crate::mock_model::{Rule, Script};

/// `p50` of the sequential tool turn's gateway overhead, at most (ms).
pub const BUDGET_OVERHEAD_P50_MS: f64 = 5.0;
/// Concurrent tool-using runs without an error, at least.
pub const BUDGET_CONCURRENT_RUNS: usize = 500;

/// The text step of every turn.
pub const REPLY: &str = "You have a few sessions.";
/// The tool the first step of a tool turn calls (built in, about 0 ms: it
/// reads the session service), with [`TOOL_ARGUMENTS`].
pub const TOOL: &str = "sessions_list";
pub const TOOL_ARGUMENTS: &str = "{}";
/// What run ids of plain turns contain (the mock answers them with text).
pub const PLAIN_MARK: &str = "-plain-";
/// Most sockets of the concurrent phase.
pub const MAX_SOCKETS: usize = 20_000;

/// Where the scenario's gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolTarget {
    /// The embedded gateway (`clawgate up`: SQLite, in-process bus), in this
    /// process on a runtime of its own.
    Embedded,
    /// The local process cluster of the other phases (PostgreSQL, Redis).
    Cluster,
}

impl ToolTarget {
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Cluster => "cluster",
        }
    }
}

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct ToolTurnOptions {
    pub target: ToolTarget,
    /// Sequential tool turns measured.
    pub turns: usize,
    /// Sequential plain turns measured (interleaved with the tool turns).
    pub plain_turns: usize,
    /// Unmeasured turns of each kind first.
    pub warmup_turns: usize,
    /// Tool turns started at once in the concurrent phase (0: skip it).
    pub concurrent_runs: usize,
    /// Sockets the concurrent turns are spread over.
    pub sockets: usize,
    /// All sockets of the shared-token user (each receives every run's events)
    /// instead of a user per socket.
    pub shared_user: bool,
    /// A turn without its terminal event after this long is an error.
    pub run_timeout: Duration,
    pub connect_concurrency: usize,
}

impl Default for ToolTurnOptions {
    fn default() -> Self {
        Self {
            target: ToolTarget::Embedded,
            turns: 200,
            plain_turns: 200,
            warmup_turns: 20,
            concurrent_runs: 500,
            sockets: 50,
            shared_user: false,
            run_timeout: Duration::from_secs(60),
            connect_concurrency: 24,
        }
    }
}

impl ToolTurnOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=100_000).contains(&self.turns),
            "--tool-turns must be 1..=100000"
        );
        ensure!(
            self.plain_turns <= 100_000,
            "--tool-plain-turns must be at most 100000"
        );
        ensure!(
            self.warmup_turns <= 10_000,
            "--tool-warmup-turns must be at most 10000"
        );
        ensure!(
            self.concurrent_runs <= 20_000,
            "--tool-concurrent-runs must be at most 20000"
        );
        ensure!(
            (1..=MAX_SOCKETS).contains(&self.sockets),
            "--tool-sockets must be 1..={MAX_SOCKETS}"
        );
        ensure!(
            self.run_timeout >= Duration::from_secs(1)
                && self.run_timeout <= Duration::from_secs(600),
            "--tool-run-timeout-s must be 1..=600"
        );
        ensure!(
            (1..=4096).contains(&self.connect_concurrency),
            "--connect-concurrency must be 1..=4096"
        );
        Ok(())
    }

    /// Sockets of the concurrent phase (never more than its runs).
    pub fn concurrent_sockets(&self) -> usize {
        self.sockets.min(self.concurrent_runs).max(1)
    }

    /// File descriptors the scenario needs at its peak (embedded: both ends
    /// of every socket and of every model request in flight, besides the
    /// databases).
    pub fn descriptors_needed(&self) -> usize {
        2 * self.concurrent_sockets() + 2 * self.concurrent_runs + 64
    }
}

/// The mock's script when no rule applies (never, for this scenario's turns).
pub fn mock_script() -> Script {
    Script::text(REPLY)
}

/// Tool turns: a call of [`TOOL`], then [`REPLY`] after the tool result;
/// plain turns ([`PLAIN_MARK`] in the message): [`REPLY`]. Decided by each
/// request's body, so any number of turns may run at once.
pub fn mock_rule() -> Rule {
    let tool_loop = Rule::tool_then_text(
        Script::default().with_tool_call("call_1", TOOL, TOOL_ARGUMENTS),
        Script::text(REPLY),
    );
    Rule::new(move |body| {
        if last_user_message(body).is_some_and(|m| m.contains(PLAIN_MARK)) {
            Some(Script::text(REPLY))
        } else {
            tool_loop.choose(body)
        }
    })
}

/// What the sequential phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct SequentialReport {
    pub tool: TurnStats,
    pub plain: TurnStats,
    /// Tool-turn overhead − plain-turn overhead at p50 and p99 (ms): the cost
    /// of the tool step (a model round trip, the tool call, its transcript rows).
    pub tool_step_added_p50_ms: Option<f64>,
    pub tool_step_added_p99_ms: Option<f64>,
    pub warmup_turns: usize,
    /// This process's CPU per turn, warm-up included (µs): with the embedded
    /// target the gateway, the mock model and the client together.
    pub process_cpu_us_per_turn: Option<f64>,
    pub duration_s: f64,
}

/// What the concurrent phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConcurrentReport {
    pub runs: usize,
    pub sockets: usize,
    pub sockets_connected: usize,
    pub connect_failures: usize,
    pub first_error: Option<String>,
    /// Sessions (runs) per socket, at most.
    pub runs_per_socket: usize,
    /// Users the sockets are (1: the shared-token user).
    pub users: usize,
    pub stats: TurnStats,
    /// Most runs between their `chat.send` and their terminal event at once.
    pub peak_in_flight: usize,
    /// First `chat.send` → last terminal event.
    pub wall_s: f64,
    pub runs_per_s: f64,
    pub sockets_ended_early: usize,
    /// This process's CPU over the phase (embedded: gateway, mock and clients).
    pub process_cpu_s: Option<f64>,
}

/// What the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ToolTurnReport {
    pub target: &'static str,
    pub sequential: SequentialReport,
    pub concurrent: Option<ConcurrentReport>,
}

fn p(stats: &TurnStats, pick: fn(&Percentiles) -> f64) -> Option<f64> {
    stats.overhead_ms.as_ref().map(pick)
}

fn difference(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(round3(a? - b?))
}

/// Runs the scenario against `target`, whose model is `mock` (serving
/// [`mock_rule`]).
pub async fn run(
    target: &Target,
    mock: &MockHost,
    options: &ToolTurnOptions,
) -> anyhow::Result<ToolTurnReport> {
    let url = target.urls.first().context("no edge to connect to")?;
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let sequential = sequential(url, &target.token, mock, options, &nonce).await?;
    let concurrent = if options.concurrent_runs > 0 {
        Some(concurrent(target, mock, options, &nonce).await?)
    } else {
        None
    };
    Ok(ToolTurnReport {
        target: if target.local {
            options.target.name()
        } else {
            "deployment"
        },
        sequential,
        concurrent,
    })
}

fn spec(nonce: &str, phase: &str, tool: bool, index: usize) -> TurnSpec {
    let kind = if tool { "-tool-" } else { PLAIN_MARK };
    let run_id = format!("tt-{nonce}-{phase}{kind}{index}");
    TurnSpec {
        session_key: format!("bench-{run_id}"),
        run_id,
        tool,
    }
}

async fn sequential(
    url: &str,
    token: &str,
    mock: &MockHost,
    options: &ToolTurnOptions,
    nonce: &str,
) -> anyhow::Result<SequentialReport> {
    let mut turns = Vec::new();
    for index in 0..options.warmup_turns {
        turns.push(spec(nonce, "warm", true, index));
        turns.push(spec(nonce, "warm", false, index));
    }
    for index in 0..options.turns.max(options.plain_turns) {
        if index < options.turns {
            turns.push(spec(nonce, "seq", true, index));
        }
        if index < options.plain_turns {
            turns.push(spec(nonce, "seq", false, index));
        }
    }
    let ws = client::connect(url, token, HANDSHAKE_LIMIT).await?;
    let cpu_before = target::cpu_seconds(None);
    let started = Instant::now();
    let (records, ended) = drive_turns(ws, turns, 1, options.run_timeout, None).await;
    let duration_s = started.elapsed().as_secs_f64();
    let cpu_after = target::cpu_seconds(None);
    if let Some(why) = ended {
        tracing::warn!(%why, "the sequential socket ended early");
    }
    let sides = model_sides(mock);
    let measured: Vec<&TurnRecord> = records
        .iter()
        .filter(|r| r.spec.run_id.contains("-seq-"))
        .collect();
    let of_kind = |tool: bool| -> Vec<&TurnRecord> {
        measured
            .iter()
            .copied()
            .filter(|r| r.spec.tool == tool)
            .collect()
    };
    let tool = turn_stats(&of_kind(true), &sides, REPLY);
    let plain = turn_stats(&of_kind(false), &sides, REPLY);
    let process_cpu_us_per_turn = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if !records.is_empty() => {
            Some(round3((after - before) * 1e6 / records.len() as f64))
        }
        _ => None,
    };
    Ok(SequentialReport {
        tool_step_added_p50_ms: difference(p(&tool, |p| p.p50), p(&plain, |p| p.p50)),
        tool_step_added_p99_ms: difference(p(&tool, |p| p.p99), p(&plain, |p| p.p99)),
        tool,
        plain,
        warmup_turns: options.warmup_turns,
        process_cpu_us_per_turn,
        duration_s: round3(duration_s),
    })
}

async fn concurrent(
    target: &Target,
    mock: &MockHost,
    options: &ToolTurnOptions,
    nonce: &str,
) -> anyhow::Result<ConcurrentReport> {
    let sockets = options.concurrent_sockets();
    let runs = options.concurrent_runs;
    let url = target.urls.first().context("no edge to connect to")?;
    let tokens: Vec<String> = if options.shared_user {
        vec![target.token.clone(); sockets]
    } else {
        let users: Vec<String> = (0..sockets)
            .map(|index| format!("bench-{nonce}-u{index}"))
            .collect();
        user_keys(url, &target.token, &users)
            .await
            .context("cannot make the users' API keys")?
    };
    // Socket `i` to edge `i mod edges`, at most `connect_concurrency` at once.
    let permits = Arc::new(tokio::sync::Semaphore::new(options.connect_concurrency));
    let mut connecting = JoinSet::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let url = target.urls[index % target.urls.len()].clone();
        let permits = permits.clone();
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let scopes = ["operator.read", "operator.write"];
            (index, connect_as(&url, &token, &scopes).await)
        });
    }
    let mut connected: Vec<(usize, Ws)> = Vec::new();
    let (mut connect_failures, mut first_error) = (0, None);
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok((index, Ok(ws))) => connected.push((index, ws)),
            Ok((_, Err(err))) => {
                connect_failures += 1;
                first_error.get_or_insert_with(|| format!("{err:#}"));
            }
            Err(err) => {
                connect_failures += 1;
                first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    connected.sort_by_key(|(index, _)| *index);
    let sockets_connected = connected.len();
    ensure!(
        sockets_connected > 0,
        "no socket connected: {first_error:?}"
    );

    // Runs spread evenly over the sockets that connected.
    let per_socket = runs.div_ceil(sockets_connected);
    let start = Arc::new(Barrier::new(sockets_connected + 1));
    let mut tasks = JoinSet::new();
    let mut next_run = 0;
    for (slot, (_, ws)) in connected.into_iter().enumerate() {
        let share = runs / sockets_connected + usize::from(slot < runs % sockets_connected);
        let turns: Vec<TurnSpec> = (next_run..next_run + share)
            .map(|index| spec(nonce, "conc", true, index))
            .collect();
        next_run += share;
        tasks.spawn(drive_turns(
            ws,
            turns,
            share.max(1),
            options.run_timeout,
            Some(start.clone()),
        ));
    }
    let cpu_before = target::cpu_seconds(None);
    start.wait().await;
    let mut records = Vec::with_capacity(runs);
    let mut ended_early = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((socket_records, ended)) = joined {
            records.extend(socket_records);
            ended_early += usize::from(ended.is_some());
        }
    }
    let cpu_after = target::cpu_seconds(None);
    let first_sent = records.iter().map(|r| r.sent_at).min();
    let last_ended = records
        .iter()
        .filter(|r| r.outcome == Outcome::Final)
        .map(|r| r.ended_at)
        .max();
    let wall_s = match (first_sent, last_ended) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let sides = model_sides(mock);
    let all: Vec<&TurnRecord> = records.iter().collect();
    let stats = turn_stats(&all, &sides, REPLY);
    Ok(ConcurrentReport {
        runs,
        sockets,
        sockets_connected,
        connect_failures,
        first_error,
        runs_per_socket: per_socket,
        users: if options.shared_user { 1 } else { sockets },
        runs_per_s: round3(stats.ok as f64 / wall_s.max(1e-9)),
        peak_in_flight: peak_in_flight(&records),
        wall_s: round3(wall_s),
        stats,
        sockets_ended_early: ended_early,
        process_cpu_s: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| round3(after - before)),
    })
}

/// The scenario's budgets: gateway overhead p50 of a sequential tool turn,
/// and concurrent tool-using runs without an error.
pub fn budgets(report: Option<&ToolTurnReport>) -> Value {
    let p50 = report.and_then(|r| p(&r.sequential.tool, |p| p.p50));
    let concurrent = report.and_then(|r| r.concurrent.as_ref());
    let runs_ok = concurrent.map(|c| c.stats.ok);
    let errors = concurrent.map(|c| c.stats.errors + c.connect_failures);
    json!({
        "tool_turn_overhead_p50_ms": {
            "limit": BUDGET_OVERHEAD_P50_MS,
            "measured": p50,
            "met": p50.map(|p50| p50 <= BUDGET_OVERHEAD_P50_MS),
        },
        "tool_turn_concurrent_runs": {
            "limit": BUDGET_CONCURRENT_RUNS,
            "measured": runs_ok,
            "errors": errors,
            "met": runs_ok.zip(errors).map(|(ok, errors)| ok >= BUDGET_CONCURRENT_RUNS && errors == 0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_calls_the_tool_once_and_plain_turns_never() {
        let rule = mock_rule();
        let user = |text: &str| json!({"messages": [{"role": "user", "content": text}]});
        let first = rule.choose(&user("tt-x-seq-tool-1")).expect("script");
        assert_eq!(first.tool_calls.len(), 1);
        assert_eq!(first.tool_calls[0].name, TOOL);
        let plain = rule.choose(&user("tt-x-seq-plain-1")).expect("script");
        assert!(plain.tool_calls.is_empty());
        let after = json!({"messages": [
            {"role": "user", "content": "tt-x-seq-tool-1"},
            {"role": "assistant", "tool_calls": [{"id": "call_1"}]},
            {"role": "tool", "content": "{\"sessions\":[]}"},
        ]});
        assert!(rule.choose(&after).expect("script").tool_calls.is_empty());
        assert!(spec("x", "seq", false, 1).run_id.contains(PLAIN_MARK));
        assert!(!spec("x", "seq", true, 1).run_id.contains(PLAIN_MARK));
    }
}
