//! `clawgate-bench`: the load harness. Drives real WebSocket clients against a
//! process cluster it starts itself (default) or against an existing deployment
//! (`--url … --token …`), and prints a JSON report on stdout (progress goes to
//! stderr). See [`clawgate_tests::bench`] for what each phase measures.
//!
//! ```text
//! cargo build --release -p clawgate --bin clawgate
//! cargo run --release -p clawgate-tests --bin clawgate-bench -- \
//!     --mode all --sockets 10000 --edges 2 --runs 4 --tokens-per-second 100 --duration-s 10
//! ```
//!
//! A local cluster needs PostgreSQL (`CLAWGATE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and Redis (`--redis-url`).
//! 10,000 sockets need an open-file limit above 10,000 (`ulimit -n 65536`).
//!
//! Agent turns with one tool call (the embedded gateway in this process, the
//! mock model at 0 ms; not part of `all`):
//!
//! ```text
//! cargo run --release -p clawgate-tests --bin clawgate-bench -- \
//!     --mode tool-turn --tool-turns 200 --tool-concurrent-runs 500 --tool-sockets 50
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use clawgate_tests::bench::tool_turn::{ToolTarget, ToolTurnOptions};
use clawgate_tests::bench::{self, Config, External, Mode};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Idle,
    Throughput,
    Latency,
    Handshake,
    ToolTurn,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ToolTargetArg {
    Embedded,
    Cluster,
}

/// Load harness for clawgate: idle sockets, delivered frames/s, gateway-added
/// latency, handshakes, agent turns with a tool call.
#[derive(Debug, Parser)]
#[command(name = "clawgate-bench", version)]
struct Args {
    /// Phases to run (`all`: idle, throughput, latency, handshake; `tool-turn` runs alone).
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    /// Idle authenticated sockets to open and hold (idle phase).
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Edge processes of the local cluster.
    #[arg(long, default_value_t = 2)]
    edges: usize,
    /// Sockets (all of one user, spread over the edges) watching the runs (throughput phase).
    #[arg(long, default_value_t = 1000)]
    stream_sockets: usize,
    /// Concurrent runs (throughput phase).
    #[arg(long, default_value_t = 4)]
    runs: usize,
    /// Mock model tokens per second per run (throughput phase).
    #[arg(long, default_value_t = 100.0)]
    tokens_per_second: f64,
    /// Tokens of each run's reply (then the sender starts the next run).
    #[arg(long, default_value_t = 200)]
    tokens_per_run: u32,
    /// Sockets recording latency during the throughput phase.
    #[arg(long, default_value_t = 8)]
    throughput_latency_sockets: usize,
    /// Measuring window of each streaming phase, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Streaming before the window opens, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// How long idle sockets are held after the RSS reading, in seconds.
    #[arg(long, default_value_t = 2.0)]
    hold_s: f64,
    /// Runner coalescing window of the local cluster (idle and throughput phases).
    #[arg(long, default_value_t = 40)]
    coalesce_ms: u64,
    /// How long the local cluster's edges keep a bus topic subscribed after
    /// its last socket closed (`--topic-linger-ms` of the edge; 0 makes every
    /// handshake subscribe its topics anew). Default: the edge's own.
    #[arg(long)]
    topic_linger_ms: Option<u64>,
    /// Coalescing windows of the latency phase, one cluster each (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "5,40")]
    latency_coalesce_ms: Vec<u64>,
    /// Sockets of the latency phase.
    #[arg(long, default_value_t = 20)]
    latency_sockets: usize,
    /// Concurrent runs of the latency phase.
    #[arg(long, default_value_t = 10)]
    latency_runs: usize,
    /// Mock model tokens per second per run (latency phase).
    #[arg(long, default_value_t = 50.0)]
    latency_tokens_per_second: f64,
    /// Handshakes in flight at once (the edge answers 503 beyond its budget of
    /// sockets per address in the handshake, 32 by default; those are retried).
    #[arg(long, default_value_t = 24)]
    connect_concurrency: usize,
    /// Handshakes measured per variant, one at a time (handshake phase).
    #[arg(long, default_value_t = 500)]
    handshakes: usize,
    /// Gateway of the tool-turn scenario: the embedded one in this process, or
    /// the local process cluster (`--edges`, PostgreSQL, Redis).
    #[arg(long, value_enum, default_value = "embedded")]
    tool_target: ToolTargetArg,
    /// Sequential tool turns measured (tool-turn).
    #[arg(long, default_value_t = 200)]
    tool_turns: usize,
    /// Sequential plain (no-tool) turns measured, interleaved with the tool turns.
    #[arg(long, default_value_t = 200)]
    tool_plain_turns: usize,
    /// Unmeasured turns of each kind before the sequential ones.
    #[arg(long, default_value_t = 20)]
    tool_warmup_turns: usize,
    /// Tool turns started at once after the sequential ones (0: none).
    #[arg(long, default_value_t = 500)]
    tool_concurrent_runs: usize,
    /// Sockets the concurrent tool turns are spread over (each its own user).
    #[arg(long, default_value_t = 50)]
    tool_sockets: usize,
    /// Make every concurrent socket the shared-token user (each then receives
    /// every run's events) instead of a user per socket.
    #[arg(long)]
    tool_shared_user: bool,
    /// A tool turn without its terminal event after this long is an error, in seconds.
    #[arg(long, default_value_t = 60.0)]
    tool_run_timeout_s: f64,
    /// Redis of the local cluster.
    #[arg(
        long,
        env = "CLAWGATE_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Edge URL of an existing deployment (repeat or comma separate); no local cluster is started.
    #[arg(long = "url", value_delimiter = ',')]
    urls: Vec<String>,
    /// Gateway token of the deployment.
    #[arg(long, env = "CLAWGATE_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PIDs of the deployment's edge processes on this machine (for RSS and CPU).
    #[arg(long = "edge-pid", value_delimiter = ',')]
    edge_pids: Vec<u32>,
    /// Redis of the deployment (for its CPU use).
    #[arg(long)]
    deployment_redis_url: Option<String>,
    /// Run the mock model on this address so the deployment can use it as its
    /// model (`CLAWGATE_MODEL_BASE_URL=http://<addr>/v1`); needed for latency.
    #[arg(long)]
    mock_listen: Option<SocketAddr>,
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a non-negative number"))
}

impl Args {
    fn config(self) -> anyhow::Result<Config> {
        let external = if self.urls.is_empty() {
            None
        } else {
            Some(External {
                urls: self.urls,
                token: self
                    .token
                    .context("--token (or CLAWGATE_GATEWAY_TOKEN) is required with --url")?,
                edge_pids: self.edge_pids,
                redis_url: self.deployment_redis_url,
                mock_listen: self.mock_listen,
            })
        };
        Ok(Config {
            mode: match self.mode {
                ModeArg::Idle => Mode::Idle,
                ModeArg::Throughput => Mode::Throughput,
                ModeArg::Latency => Mode::Latency,
                ModeArg::Handshake => Mode::Handshake,
                ModeArg::ToolTurn => Mode::ToolTurn,
                ModeArg::All => Mode::All,
            },
            sockets: self.sockets,
            edges: self.edges,
            stream_sockets: self.stream_sockets,
            runs: self.runs,
            tokens_per_second: self.tokens_per_second,
            tokens_per_run: self.tokens_per_run,
            throughput_latency_sockets: self.throughput_latency_sockets,
            duration: seconds(self.duration_s, "duration-s")?,
            warmup: seconds(self.warmup_s, "warmup-s")?,
            hold: seconds(self.hold_s, "hold-s")?,
            coalesce_ms: self.coalesce_ms,
            topic_linger_ms: self.topic_linger_ms,
            latency_coalesce_ms: self.latency_coalesce_ms,
            latency_sockets: self.latency_sockets,
            latency_runs: self.latency_runs,
            latency_tokens_per_second: self.latency_tokens_per_second,
            connect_concurrency: self.connect_concurrency,
            handshakes: self.handshakes,
            tool_turn: ToolTurnOptions {
                target: match self.tool_target {
                    ToolTargetArg::Embedded => ToolTarget::Embedded,
                    ToolTargetArg::Cluster => ToolTarget::Cluster,
                },
                turns: self.tool_turns,
                plain_turns: self.tool_plain_turns,
                warmup_turns: self.tool_warmup_turns,
                concurrent_runs: self.tool_concurrent_runs,
                sockets: self.tool_sockets,
                shared_user: self.tool_shared_user,
                run_timeout: seconds(self.tool_run_timeout_s, "tool-run-timeout-s")?,
                connect_concurrency: self.connect_concurrency,
            },
            redis_url: self.redis_url,
            external,
        })
    }
}

/// Makes sure the `clawgate` binary the local cluster starts exists beside this
/// one (the test kit looks there), building it with the same profile if not.
fn ensure_clawgate_binary() -> anyhow::Result<()> {
    if std::env::var_os("CLAWGATE_BIN").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let sibling: PathBuf = exe
        .parent()
        .context("no directory of this binary")?
        .join("clawgate");
    if sibling.is_file() {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-p", "clawgate", "--bin", "clawgate"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("clawgate-bench: building the clawgate binary");
    if !command.status().context("cannot run cargo")?.success() {
        bail!("building the clawgate binary failed");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().config()?;
    let in_process =
        config.mode == Mode::ToolTurn && config.tool_turn.target == ToolTarget::Embedded;
    if config.external.is_none() && !in_process {
        ensure_clawgate_binary()?;
    }
    let report = bench::run(&config).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
