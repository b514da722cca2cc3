//! The `clawgate` command: `up` (everything in one process), `serve` (any set of
//! services), `migrate`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = clawgate::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(clawgate::run(cli))
}
