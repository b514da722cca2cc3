//! The clawgate binary as a library: command-line options and the wiring of
//! whichever services one process runs.
//!
//! A service that runs in this process is reached through its local client; one
//! that runs elsewhere through its gRPC client. Callers (the edge, the runner)
//! cannot tell the difference.

pub mod cli;
pub mod database;
pub mod embedded;
pub mod health;
pub mod wiring;

use cli::{Cli, Command};

/// Runs the parsed command until it finishes or the process is asked to stop.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Keygen = cli.command {
        print!("{}", clawgate_runtime::internal_token::generate_pem());
        return Ok(());
    }
    let service_name = match &cli.command {
        Command::Up(_) => "clawgate".to_owned(),
        Command::Serve(args) => {
            let names: Vec<&str> = args.services.iter().map(|s| s.name()).collect();
            format!("clawgate-{}", names.join("-"))
        }
        Command::Migrate(_) | Command::Keygen => "clawgate-migrate".to_owned(),
    };
    let _telemetry = clawgate_runtime::telemetry::init(&service_name)?;
    match cli.command {
        Command::Up(args) => embedded::up(args, shutdown_signal()).await,
        Command::Serve(args) => wiring::serve(args, shutdown_signal()).await,
        Command::Migrate(args) => database::migrate(args).await,
        Command::Keygen => Ok(()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
