//! `clawgate up`: every service in one process on the embedded default.
//!
//! SQLite files and the gateway token live in the data directory. The token is
//! created on first start (random, 32 bytes, base64url) and kept with mode 0600;
//! it is printed once, when created, together with the URL to connect to.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use clawgate_auth::GatewayToken;
use clawgate_runtime::bus::memory::MemoryBus;
use tokio::net::TcpListener;

use crate::cli::UpArgs;
use crate::wiring::{Plan, run_wired, wire};

const TOKEN_FILE: &str = "gateway-token";

/// A gateway running in this process.
pub struct Embedded {
    pub plan: Plan,
    pub listener: TcpListener,
    pub token: GatewayToken,
    /// Whether the token was created by this start.
    pub token_created: bool,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".clawgate"))
        .unwrap_or_else(|| PathBuf::from(".clawgate"))
}

/// Reads the persisted gateway token, creating it on first start.
pub fn load_or_create_token(data_dir: &Path) -> anyhow::Result<(GatewayToken, bool)> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            return Ok((GatewayToken::new(token.trim()), false));
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((GatewayToken::new(token), true))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Prepares an embedded gateway: data directory, token, listener.
pub async fn prepare(args: UpArgs) -> anyhow::Result<Embedded> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (token, token_created) = match &args.common.gateway_token {
        Some(token) => (GatewayToken::new(token.clone()), false),
        None => load_or_create_token(&data_dir)?,
    };
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("clawgate.sqlite").display()
    );
    let listener = TcpListener::bind(args.common.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.common.listen))?;
    // In one process the runs get as long as the sockets to end.
    let runner_shutdown_grace = std::time::Duration::from_millis(args.common.edge.drain_timeout_ms);
    let plan = Plan {
        common: args.common,
        services: ["session", "auth", "runner", "edge"]
            .map(str::to_owned)
            .to_vec(),
        database_url: Some(database_url),
        bus: Arc::new(MemoryBus::new()),
        auth_url: None,
        runner_url: None,
        session_url: None,
        gateway_token: Some(token.clone()),
        migrate: true,
        // Every service is in this process: no gRPC hop, a throwaway key will do.
        signing_keys: None,
        // One process: the rate limits live in it.
        redis: None,
        redis_bus: None,
        runner_cluster: clawgate_runner::ClusterOptions::default(),
        runner_shutdown_grace,
    };
    Ok(Embedded {
        plan,
        listener,
        token,
        token_created,
    })
}

/// `clawgate up`.
pub async fn up(
    args: UpArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let embedded = prepare(args).await?;
    let wired = wire(&embedded.plan).await?;
    let addr = embedded.listener.local_addr()?;
    println!("clawgate is listening on ws://{addr}");
    if embedded.token_created {
        println!(
            "gateway token (created now, kept in the data directory): {}",
            embedded.token.expose()
        );
    } else {
        println!("gateway token: the one in the data directory (file {TOKEN_FILE})");
    }
    if embedded.plan.common.model_base_url.is_none() {
        println!(
            "no model provider configured yet: set CLAWGATE_MODEL_BASE_URL (and CLAWGATE_MODEL, CLAWGATE_MODEL_API_KEY)"
        );
    }
    run_wired(wired, Some(embedded.listener), None, shutdown).await
}
