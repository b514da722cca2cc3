//! `clawgate-bench-nodes`: the `node.invoke` round trip and throughput across
//! two edges of a local process cluster (see `clawgate_tests::bench::node_invoke`).
//! Prints a JSON report. Build and run in release for figures:
//!
//! ```text
//! cargo run --release -p clawgate-tests --bin clawgate-bench-nodes -- \
//!   --sequential 2000 --sockets 8 --in-flight 16 --duration-s 5
//! ```

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use clawgate_tests::bench::node_invoke::{self, NodeBenchOptions};

#[derive(Parser, Debug)]
#[command(about = "node.invoke across two edges: round trip and throughput")]
struct Args {
    /// Sequential calls measured (after a warm-up of 200).
    #[arg(long, default_value_t = 2000)]
    sequential: usize,
    /// Operator sockets of the throughput phase.
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// Calls each socket keeps outstanding.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Throughput window.
    #[arg(long, default_value = "5")]
    duration_s: String,
    /// Redis of the local cluster.
    #[arg(
        long,
        env = "CLAWGATE_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds: f64 = args
        .duration_s
        .parse()
        .context("--duration-s must be a number")?;
    let options = NodeBenchOptions {
        sequential: args.sequential,
        sockets: args.sockets,
        in_flight: args.in_flight,
        duration: Duration::from_secs_f64(seconds.max(0.0)),
        redis_url: args.redis_url,
        ..NodeBenchOptions::default()
    };
    let report = node_invoke::run(&options).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
