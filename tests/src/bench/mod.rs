//! The load harness behind the `clawgate-bench` binary: real WebSocket clients
//! against a clawgate deployment, reporting JSON.
//!
//! By default every phase starts its own process cluster ([`crate::cluster`]:
//! auth, session, one runner and N edges against PostgreSQL and Redis) with the
//! runner pointed at a mock model ([`crate::mock_model`]) that echoes each run's
//! numbered message at a chosen rate; with [`External`] it drives an existing
//! deployment instead. Phases:
//!
//! - **idle**: opens N authenticated OpenClaw sockets, spread over the edges, and
//!   holds them; edge RSS (`VmRSS`) before and after, divided by N;
//! - **throughput**: M sockets of one user (every run reaches every socket, so
//!   the edges fan out) while R runs stream; `agent` + `chat` frames received
//!   per second over the window;
//! - **latency**: a lighter load (about 10,000 frames/s by default), once per
//!   coalescing window; for each token, client receive instant − mock model emit
//!   instant, as p50/p99/max. The runner's coalescing window is part of that
//!   latency, so it is run with a small window (5 ms) as well as the default;
//! - **handshake**: connect → `hello-ok` latency, one connection at a time, for
//!   OpenClaw v3 and v4, token-only and device-signed ([`handshake`]);
//! - **tool-turn** (not part of `all`): agent turns whose model calls one tool,
//!   on the embedded gateway by default, with the mock model at 0 ms: the
//!   gateway overhead of sequential turns (end to end − model time), against a
//!   plain turn, and N concurrent tool-using runs with their errors
//!   ([`tool_turn`]).
//!
//! Everything is bounded: counts are capped by [`Config::validate`], every phase
//! has a fixed window, every handshake and shutdown a time limit.

pub mod client;
pub mod handshake;
pub mod node_invoke;
pub mod phases;
pub mod stats;
pub mod target;
pub mod tool_turn;
pub mod turn_stats;
pub mod turns;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use phases::{IdleReport, StreamOptions, StreamReport};
use target::{LocalOptions, MockHost, Target};
use tool_turn::{ToolTarget, ToolTurnOptions, ToolTurnReport};

/// Budgets of the issue, reported next to the figures.
pub const BUDGET_RSS_PER_IDLE_SOCKET_BYTES: f64 = 8192.0;
pub const BUDGET_DELIVERED_FRAMES_PER_S: f64 = 100_000.0;
pub const BUDGET_LATENCY_P99_MS: f64 = 10.0;
pub const BUDGET_LATENCY_AT_FRAMES_PER_S: f64 = 10_000.0;
/// Connect → `hello-ok` p50, token-only and device-signed, in every version.
pub const BUDGET_HANDSHAKE_TOKEN_P50_MS: f64 = 1.0;
pub const BUDGET_HANDSHAKE_SIGNED_P50_MS: f64 = 2.0;

/// Largest socket count accepted (per phase).
pub const MAX_SOCKETS: usize = 60_000;

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Idle,
    Throughput,
    Latency,
    Handshake,
    /// Runs alone: `all` does not include it.
    ToolTurn,
    /// Idle, throughput, latency and handshake.
    All,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Throughput => "throughput",
            Self::Latency => "latency",
            Self::Handshake => "handshake",
            Self::ToolTurn => "tool-turn",
            Self::All => "all",
        }
    }

    fn runs(self, phase: Self) -> bool {
        self == phase || (self == Self::All && phase != Self::ToolTurn)
    }
}

/// An existing deployment to drive instead of a local cluster.
#[derive(Debug, Clone)]
pub struct External {
    /// `ws://` URLs of its edges; sockets are spread over them.
    pub urls: Vec<String>,
    pub token: String,
    /// Edge processes on this machine, for RSS and CPU (optional).
    pub edge_pids: Vec<u32>,
    /// Its Redis, for Redis CPU (optional).
    pub redis_url: Option<String>,
    /// Where to run the mock model so the deployment can use it as its model
    /// (`CLAWGATE_MODEL_BASE_URL=http://<addr>/v1`); without it no latency is
    /// measured (tokens cannot be matched).
    pub mock_listen: Option<SocketAddr>,
}

/// Everything the harness needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Idle sockets.
    pub sockets: usize,
    /// Edges of a local cluster.
    pub edges: usize,
    /// Sockets that watch the runs in the throughput phase.
    pub stream_sockets: usize,
    /// Concurrent runs in the throughput phase.
    pub runs: usize,
    /// Model rate per run in the throughput phase.
    pub tokens_per_second: f64,
    pub tokens_per_run: u32,
    /// Sockets recording latency during the throughput phase.
    pub throughput_latency_sockets: usize,
    /// Measuring window of each streaming phase.
    pub duration: Duration,
    /// Streaming before the window opens.
    pub warmup: Duration,
    /// How long idle sockets are held after they are measured.
    pub hold: Duration,
    /// Runner coalescing window of the idle and throughput phases.
    pub coalesce_ms: u64,
    /// Topic linger time of the local cluster's edges (`None`: their default).
    pub topic_linger_ms: Option<u64>,
    /// Coalescing windows of the latency phase (one run each).
    pub latency_coalesce_ms: Vec<u64>,
    pub latency_sockets: usize,
    pub latency_runs: usize,
    pub latency_tokens_per_second: f64,
    pub connect_concurrency: usize,
    /// Handshakes measured per variant (handshake phase).
    pub handshakes: usize,
    /// The tool-turn scenario (its gateway's coalescing window is `coalesce_ms`).
    pub tool_turn: ToolTurnOptions,
    /// Redis of a local cluster.
    pub redis_url: String,
    pub external: Option<External>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::All,
            sockets: 1000,
            edges: 2,
            stream_sockets: 1000,
            runs: 4,
            tokens_per_second: 100.0,
            tokens_per_run: 200,
            throughput_latency_sockets: 8,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            hold: Duration::from_secs(2),
            coalesce_ms: 40,
            topic_linger_ms: None,
            latency_coalesce_ms: vec![5, 40],
            latency_sockets: 20,
            latency_runs: 10,
            latency_tokens_per_second: 50.0,
            connect_concurrency: 24,
            handshakes: 500,
            tool_turn: ToolTurnOptions::default(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            external: None,
        }
    }
}

impl Config {
    /// Refuses counts and times outside the harness's bounds.
    pub fn validate(&self) -> anyhow::Result<()> {
        let sockets_ok = |n: usize| (1..=MAX_SOCKETS).contains(&n);
        ensure!(
            sockets_ok(self.sockets),
            "--sockets must be 1..={MAX_SOCKETS}"
        );
        ensure!(
            sockets_ok(self.stream_sockets),
            "--stream-sockets must be 1..={MAX_SOCKETS}"
        );
        ensure!(
            sockets_ok(self.latency_sockets),
            "--latency-sockets must be 1..={MAX_SOCKETS}"
        );
        ensure!((1..=16).contains(&self.edges), "--edges must be 1..=16");
        for (name, runs, sockets) in [
            ("--runs", self.runs, self.stream_sockets),
            ("--latency-runs", self.latency_runs, self.latency_sockets),
        ] {
            ensure!((1..=1000).contains(&runs), "{name} must be 1..=1000");
            ensure!(
                runs <= sockets,
                "{name} must not exceed its socket count (senders are sockets)"
            );
        }
        for (name, rate) in [
            ("--tokens-per-second", self.tokens_per_second),
            (
                "--latency-tokens-per-second",
                self.latency_tokens_per_second,
            ),
        ] {
            ensure!(
                (0.1..=10_000.0).contains(&rate),
                "{name} must be 0.1..=10000"
            );
        }
        ensure!(
            (1..=100_000).contains(&self.tokens_per_run),
            "--tokens-per-run must be 1..=100000"
        );
        ensure!(
            self.duration >= Duration::from_millis(500)
                && self.duration <= Duration::from_secs(600),
            "--duration-s must be 0.5..=600"
        );
        ensure!(
            self.warmup <= Duration::from_secs(60),
            "--warmup-s must be at most 60"
        );
        ensure!(
            self.hold <= Duration::from_secs(600),
            "--hold-s must be at most 600"
        );
        ensure!(
            self.coalesce_ms <= 10_000,
            "--coalesce-ms must be at most 10000"
        );
        ensure!(
            !self.latency_coalesce_ms.is_empty()
                && self.latency_coalesce_ms.len() <= 8
                && self.latency_coalesce_ms.iter().all(|ms| *ms <= 10_000),
            "--latency-coalesce-ms must list 1 to 8 windows of at most 10000 ms"
        );
        ensure!(
            (1..=4096).contains(&self.connect_concurrency),
            "--connect-concurrency must be 1..=4096"
        );
        ensure!(
            (1..=100_000).contains(&self.handshakes),
            "--handshakes must be 1..=100000"
        );
        if self.mode == Mode::ToolTurn {
            self.tool_turn.validate()?;
        }
        if let Some(external) = &self.external {
            ensure!(
                self.mode != Mode::ToolTurn || external.mock_listen.is_some(),
                "tool-turn against a deployment needs --mock-listen (its model must be the mock)"
            );
            ensure!(
                !external.urls.is_empty(),
                "--url needs at least one edge URL"
            );
            ensure!(!external.token.is_empty(), "--token is required with --url");
        }
        Ok(())
    }

    /// File descriptors this process needs at its peak (local edges inherit the limit).
    fn descriptors_needed(&self) -> usize {
        let peak = match self.mode {
            Mode::Idle => self.sockets,
            Mode::Throughput => self.stream_sockets,
            Mode::Latency => self.latency_sockets,
            Mode::Handshake => 1,
            Mode::ToolTurn => self.tool_turn.descriptors_needed(),
            Mode::All => self
                .sockets
                .max(self.stream_sockets)
                .max(self.latency_sockets),
        };
        peak + self.edges + 256
    }
}

/// A target and the mock model it streams from, for one phase.
async fn setup(
    config: &Config,
    coalesce_ms: u64,
    tokens_per_second: f64,
) -> anyhow::Result<(Target, Option<MockHost>)> {
    match &config.external {
        None => {
            let mock = MockHost::start(SocketAddr::from(([127, 0, 0, 1], 0)), tokens_per_second)?;
            let options = LocalOptions {
                edges: config.edges,
                redis_url: config.redis_url.clone(),
                coalesce_ms,
                topic_linger_ms: config.topic_linger_ms,
            };
            let target = Target::local(&options, mock.base_url())
                .await
                .context("cannot start the local cluster")?;
            Ok((target, Some(mock)))
        }
        Some(external) => {
            let mock = match external.mock_listen {
                Some(addr) => Some(MockHost::start(addr, tokens_per_second)?),
                None => None,
            };
            let target = Target::external(
                external.urls.clone(),
                external.token.clone(),
                external.edge_pids.clone(),
                external.redis_url.clone(),
            );
            Ok((target, mock))
        }
    }
}

/// The target of the tool-turn scenario and its mock model, which serves
/// [`tool_turn::mock_rule`] at 0 ms.
async fn setup_tool_turn(config: &Config) -> anyhow::Result<(Target, MockHost)> {
    let listen = config
        .external
        .as_ref()
        .and_then(|e| e.mock_listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let mock = MockHost::start_with(
        listen,
        tool_turn::mock_script(),
        Some(tool_turn::mock_rule()),
    )?;
    let target = match (&config.external, config.tool_turn.target) {
        (Some(external), _) => Target::external(
            external.urls.clone(),
            external.token.clone(),
            external.edge_pids.clone(),
            external.redis_url.clone(),
        ),
        (None, ToolTarget::Embedded) => Target::embedded(mock.base_url(), config.coalesce_ms)
            .context("cannot start the embedded gateway")?,
        (None, ToolTarget::Cluster) => {
            let options = LocalOptions {
                edges: config.edges,
                redis_url: config.redis_url.clone(),
                coalesce_ms: config.coalesce_ms,
                topic_linger_ms: config.topic_linger_ms,
            };
            Target::local(&options, mock.base_url())
                .await
                .context("cannot start the local cluster")?
        }
    };
    Ok((target, mock))
}

fn log(message: &str) {
    eprintln!("clawgate-bench: {message}");
}

/// Runs the phases of `config.mode` and returns the report.
pub async fn run(config: &Config) -> anyhow::Result<Value> {
    config.validate()?;
    let limit = target::open_file_limit();
    if let Some(limit) = limit
        && (limit as usize) < config.descriptors_needed()
    {
        bail!(
            "the open-file limit is {limit}, this run needs about {}: raise it first (e.g. `ulimit -n 65536`)",
            config.descriptors_needed()
        );
    }
    let started = Instant::now();
    let load_before = target::load_average();
    let local = config.external.is_none();
    let known_coalesce = |ms: u64| local.then_some(ms);

    let mut idle: Option<IdleReport> = None;
    if config.mode.runs(Mode::Idle) {
        log(&format!("idle: {} sockets", config.sockets));
        let (target, _mock) = setup(config, config.coalesce_ms, config.tokens_per_second).await?;
        idle = Some(
            phases::idle(
                &target,
                config.sockets,
                config.connect_concurrency,
                config.hold,
            )
            .await,
        );
    }

    let mut throughput: Option<StreamReport> = None;
    if config.mode.runs(Mode::Throughput) {
        log(&format!(
            "throughput: {} sockets, {} runs",
            config.stream_sockets, config.runs
        ));
        let (target, mock) = setup(config, config.coalesce_ms, config.tokens_per_second).await?;
        let options = StreamOptions {
            sockets: config.stream_sockets,
            runs: config.runs,
            tokens_per_run: config.tokens_per_run,
            latency_sockets: config.throughput_latency_sockets,
            warmup: config.warmup,
            duration: config.duration,
            connect_concurrency: config.connect_concurrency,
            tokens_per_second: config.tokens_per_second,
            coalesce_ms: known_coalesce(config.coalesce_ms),
        };
        throughput = Some(phases::stream(&target, mock.as_ref(), &options).await);
    }

    let mut latency: Vec<StreamReport> = Vec::new();
    if config.mode.runs(Mode::Latency) {
        let windows = if local {
            config.latency_coalesce_ms.clone()
        } else {
            vec![config.coalesce_ms]
        };
        for window in windows {
            log(&format!(
                "latency: {} sockets, {} runs, coalescing {window} ms",
                config.latency_sockets, config.latency_runs
            ));
            let (target, mock) = setup(config, window, config.latency_tokens_per_second).await?;
            let options = StreamOptions {
                sockets: config.latency_sockets,
                runs: config.latency_runs,
                tokens_per_run: config.tokens_per_run,
                latency_sockets: config.latency_sockets,
                warmup: config.warmup,
                duration: config.duration,
                connect_concurrency: config.connect_concurrency,
                tokens_per_second: config.latency_tokens_per_second,
                coalesce_ms: known_coalesce(window),
            };
            latency.push(phases::stream(&target, mock.as_ref(), &options).await);
        }
    }

    let mut handshakes: Option<Vec<handshake::VariantReport>> = None;
    if config.mode.runs(Mode::Handshake) {
        log(&format!(
            "handshake: {} connects per variant",
            config.handshakes
        ));
        let (target, _mock) = setup(config, config.coalesce_ms, config.tokens_per_second).await?;
        let url = target.urls.first().context("no edge to connect to")?;
        handshakes = Some(handshake::run(url, &target.token, config.handshakes).await);
    }

    let mut tool_turn: Option<ToolTurnReport> = None;
    if config.mode.runs(Mode::ToolTurn) {
        let options = &config.tool_turn;
        log(&format!(
            "tool-turn ({}): {} tool and {} plain turns one at a time, then {} concurrent runs over {} sockets",
            options.target.name(),
            options.turns,
            options.plain_turns,
            options.concurrent_runs,
            options.concurrent_sockets(),
        ));
        let (target, mock) = setup_tool_turn(config).await?;
        tool_turn = Some(tool_turn::run(&target, &mock, options).await?);
    }

    Ok(report(
        config,
        limit,
        load_before,
        started,
        Phases {
            idle,
            throughput,
            latency,
            handshakes,
            tool_turn,
        },
    ))
}

/// What the phases measured.
struct Phases {
    idle: Option<IdleReport>,
    throughput: Option<StreamReport>,
    latency: Vec<StreamReport>,
    handshakes: Option<Vec<handshake::VariantReport>>,
    tool_turn: Option<ToolTurnReport>,
}

/// The worst p50 among the handshake variants that are (or are not) signed.
fn handshake_p50(handshakes: Option<&Vec<handshake::VariantReport>>, signed: bool) -> Option<f64> {
    let p50s: Vec<f64> = handshakes?
        .iter()
        .filter(|v| v.device_signed == signed)
        .map(|v| v.latency_ms.map(|l| l.p50))
        .collect::<Option<Vec<f64>>>()?;
    p50s.into_iter().reduce(f64::max)
}

fn tool_turn_parameters(options: &ToolTurnOptions) -> Value {
    json!({
        "target": options.target.name(),
        "turns": options.turns,
        "plain_turns": options.plain_turns,
        "warmup_turns": options.warmup_turns,
        "concurrent_runs": options.concurrent_runs,
        "sockets": options.sockets,
        "shared_user": options.shared_user,
        "run_timeout_s": options.run_timeout.as_secs_f64(),
        "model_delay_ms": 0,
        "tool": tool_turn::TOOL,
    })
}

fn budget(limit: f64, measured: Option<f64>, at_most: bool) -> Value {
    let met = measured.map(|m| if at_most { m <= limit } else { m >= limit });
    json!({"limit": limit, "measured": measured, "met": met})
}

fn report(
    config: &Config,
    open_file_limit: Option<u64>,
    load_before: Option<[f64; 3]>,
    started: Instant,
    phases: Phases,
) -> Value {
    let Phases {
        idle,
        throughput,
        latency,
        handshakes,
        tool_turn,
    } = phases;
    let token_p50 = handshake_p50(handshakes.as_ref(), false);
    let signed_p50 = handshake_p50(handshakes.as_ref(), true);
    // The headline latency is the one with the smallest coalescing window.
    let best_latency = latency
        .iter()
        .min_by_key(|r| r.coalesce_ms.unwrap_or(u64::MAX));
    let latency_p99 = best_latency.and_then(|r| r.latency_ms).map(|p| p.p99);
    let latency_fps = best_latency.map(|r| r.delivered_frames_per_s);
    let (target, urls) = match &config.external {
        None if config.mode == Mode::ToolTurn => (config.tool_turn.target.name(), Value::Null),
        None => ("local-cluster", Value::Null),
        Some(external) => ("deployment", json!(external.urls)),
    };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let tool_budgets = tool_turn::budgets(tool_turn.as_ref());
    json!({
        "tool": "clawgate-bench",
        "mode": config.mode.name(),
        "target": target,
        "urls": urls,
        "machine": {
            "cores": cores,
            "load_average_before": load_before,
            "load_average_after": target::load_average(),
            "open_file_limit": open_file_limit,
        },
        "parameters": {
            "sockets": config.sockets,
            "edges": if config.external.is_some() { config.external.as_ref().map_or(0, |e| e.urls.len()) } else { config.edges },
            "stream_sockets": config.stream_sockets,
            "runs": config.runs,
            "tokens_per_second": config.tokens_per_second,
            "tokens_per_run": config.tokens_per_run,
            "throughput_latency_sockets": config.throughput_latency_sockets,
            "duration_s": config.duration.as_secs_f64(),
            "warmup_s": config.warmup.as_secs_f64(),
            "hold_s": config.hold.as_secs_f64(),
            "coalesce_ms": config.external.is_none().then_some(config.coalesce_ms),
            "latency_coalesce_ms": config.external.is_none().then(|| config.latency_coalesce_ms.clone()),
            "latency_sockets": config.latency_sockets,
            "latency_runs": config.latency_runs,
            "latency_tokens_per_second": config.latency_tokens_per_second,
            "connect_concurrency": config.connect_concurrency,
            "handshakes": config.handshakes,
            "tool_turn": (config.mode == Mode::ToolTurn).then(|| tool_turn_parameters(&config.tool_turn)),
        },
        "sockets_held": idle.as_ref().map(|r| r.sockets_held),
        "edge_rss_per_idle_socket_bytes": idle.as_ref().and_then(|r| r.edge_rss_per_idle_socket_bytes),
        "delivered_frames_per_s": throughput.as_ref().map(|r| r.delivered_frames_per_s),
        "coalesce_ms": throughput.as_ref().and_then(|r| r.coalesce_ms),
        "latency_ms": best_latency.and_then(|r| r.latency_ms),
        "latency_coalesce_ms": best_latency.and_then(|r| r.coalesce_ms),
        "latency_delivered_frames_per_s": latency_fps,
        "budgets": {
            "edge_rss_per_idle_socket_bytes": budget(
                BUDGET_RSS_PER_IDLE_SOCKET_BYTES,
                idle.as_ref().and_then(|r| r.edge_rss_per_idle_socket_bytes),
                true,
            ),
            "delivered_frames_per_s": budget(
                BUDGET_DELIVERED_FRAMES_PER_S,
                throughput.as_ref().map(|r| r.delivered_frames_per_s),
                false,
            ),
            "latency_p99_ms": budget(BUDGET_LATENCY_P99_MS, latency_p99, true),
            "latency_load_frames_per_s": budget(BUDGET_LATENCY_AT_FRAMES_PER_S, latency_fps, false),
            "handshake_token_p50_ms": budget(BUDGET_HANDSHAKE_TOKEN_P50_MS, token_p50, true),
            "handshake_device_signed_p50_ms": budget(BUDGET_HANDSHAKE_SIGNED_P50_MS, signed_p50, true),
            "tool_turn_overhead_p50_ms": tool_budgets["tool_turn_overhead_p50_ms"],
            "tool_turn_concurrent_runs": tool_budgets["tool_turn_concurrent_runs"],
        },
        "phases": {
            "idle": idle,
            "throughput": throughput,
            "latency": latency,
            "handshake": handshakes,
            "tool_turn": tool_turn,
        },
        "elapsed_s": stats::round3(started.elapsed().as_secs_f64()),
    })
}
