//! `clawgate up`: every service in one process on the embedded default.
//!
//! SQLite files, the gateway token and the encryption key live in the data
//! directory. The token is created on first start (random, 32 bytes, base64url)
//! and kept with mode 0600; it is printed once, when created, together with the
//! URL to connect to. The key sealing tenant secrets (`encryption-key`, 32
//! random bytes in hex, mode 0600) is created on first start too and used
//! whenever no `CLAWGATE_ENCRYPTION_KEY` is configured; it is never printed.
//! Losing that file makes the stored secrets unreadable.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use clawgate_auth::GatewayToken;
use clawgate_auth::keyring::Keyring;
use clawgate_runtime::bus::memory::MemoryBus;
use tokio::net::TcpListener;

use crate::cli::{SecretArg, Service, UpArgs};
use crate::wiring::{Plan, run_wired, wire};

const TOKEN_FILE: &str = "gateway-token";
/// The file holding the key that seals tenant secrets, in the data directory.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";

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

/// Reads the secret kept in `file` of `data_dir`, creating it with `create` on
/// first start. Returns the secret and whether it was created now.
fn load_or_create_secret(
    data_dir: &Path,
    file: &str,
    create: impl FnOnce() -> String,
) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok((secret.trim().to_owned(), false)),
        // An empty file (e.g. a crash between create and write) is replaced.
        Ok(_) => std::fs::remove_file(&path)
            .with_context(|| format!("cannot replace the empty {}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = create();
    write_private(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((secret, true))
}

/// Reads the persisted gateway token, creating it on first start.
pub fn load_or_create_token(data_dir: &Path) -> anyhow::Result<(GatewayToken, bool)> {
    let (token, created) = load_or_create_secret(data_dir, TOKEN_FILE, || {
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    })?;
    Ok((GatewayToken::new(token), created))
}

/// Reads the persisted key sealing tenant secrets, creating it on first start.
pub fn load_or_create_encryption_key(data_dir: &Path) -> anyhow::Result<(SecretArg, bool)> {
    let (key, created) =
        load_or_create_secret(data_dir, ENCRYPTION_KEY_FILE, Keyring::generate_key_hex)?;
    Ok((SecretArg::new(key), created))
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
pub async fn prepare(mut args: UpArgs) -> anyhow::Result<Embedded> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (token, token_created) = match &args.common.gateway_token {
        Some(token) => (GatewayToken::new(token.clone()), false),
        None => load_or_create_token(&data_dir)?,
    };
    if args
        .common
        .encryption_key
        .as_ref()
        .is_none_or(|key| key.expose().trim().is_empty())
    {
        let (key, created) = load_or_create_encryption_key(&data_dir)?;
        if created {
            tracing::info!(
                file = ENCRYPTION_KEY_FILE,
                "created the key sealing tenant secrets in the data directory"
            );
        }
        args.common.encryption_key = Some(key);
    }
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
        services: vec![
            Service::Session,
            Service::Auth,
            Service::Runner,
            Service::Edge,
        ],
        database_url: Some(database_url),
        bus: Arc::new(MemoryBus::new()),
        auth_url: None,
        runner_url: None,
        session_url: None,
        gateway_token: Some(token.clone()),
        migrate: true,
        // Every service is in this process: no gRPC hop, a throwaway key will do.
        signing_keys: None,
        // One process: the rate limits, runs and devices live in it.
        redis: None,
        presence: crate::wiring::presence_registry(None),
        nodes: crate::wiring::node_registry(None),
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

/// Prints the start-up banner to standard output. A closed or broken standard
/// output (the reader went away) is no reason for the gateway to stop:
/// write errors are ignored (`println!` would panic on them).
fn print_banner(lines: &[String]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

/// `clawgate up`.
pub async fn up(
    args: UpArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let embedded = prepare(args).await?;
    let wired = wire(&embedded.plan).await?;
    let addr = embedded.listener.local_addr()?;
    let mut banner = vec![format!("clawgate is listening on ws://{addr}")];
    if embedded.token_created {
        banner.push(format!(
            "gateway token (created now, kept in the data directory): {}",
            embedded.token.expose()
        ));
    } else {
        banner.push(format!(
            "gateway token: the one in the data directory (file {TOKEN_FILE})"
        ));
    }
    if embedded.plan.common.model_base_url.is_none() {
        banner.push(
            "no model provider configured yet: set CLAWGATE_MODEL_BASE_URL (and CLAWGATE_MODEL, CLAWGATE_MODEL_API_KEY)"
                .to_owned(),
        );
    }
    print_banner(&banner);
    run_wired(wired, Some(embedded.listener), None, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encryption_key_is_created_once_private_and_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, created) = load_or_create_encryption_key(dir.path()).expect("create");
        assert!(created);
        assert!(Keyring::from_config(key.expose()).is_ok());
        let (again, created) = load_or_create_encryption_key(dir.path()).expect("load");
        assert!(!created);
        assert_eq!(again, key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(ENCRYPTION_KEY_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
