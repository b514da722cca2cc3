//! The `clawgate` binary started as separate OS processes on loopback: one process
//! each for auth and session, one or more runners, and any number of edges,
//! against real PostgreSQL and Redis. Processes are killed when the cluster is
//! dropped; their output goes to log files that are printed if the test fails.
//!
//! [`Cluster::start_with`] takes a [`Scale`]: M runners (named `runner0`…, each
//! with its own `--runner-id`, every edge given the list of all of them) and
//! extra flags per kind of process. [`Cluster::kill`] sends SIGKILL,
//! [`Cluster::terminate`] SIGTERM, [`Cluster::wait_exit`] waits for an exit.
//!
//! Database roles as in production: `clawgate migrate --app-role clawgate_app`
//! runs as the URL's (superuser) role, then session and auth connect as the
//! application role [`TEST_APP_ROLE`] (`NOSUPERUSER NOBYPASSRLS`), so every
//! cluster test runs under row-level security. The auth process gets a fresh
//! `CLAWGATE_ENCRYPTION_KEY` (tenant secrets).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clawgate_auth::keyring::Keyring;
use clawgate_runtime::db::testing::{
    TEST_APP_ROLE, TestDatabase, app_role_url, fresh_postgres_url,
};
use tokio::process::{Child, Command};

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub edges: usize,
    /// PostgreSQL database of this test (already created, not yet migrated), as
    /// a role that may migrate it and create [`TEST_APP_ROLE`] (the test
    /// server's superuser); the services connect as [`TEST_APP_ROLE`].
    pub database_url: String,
    pub redis_url: String,
    pub model_base_url: String,
    /// Extra environment of every process (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub env: Vec<(String, String)>,
}

/// How many runners, and extra flags per kind of process.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Runner processes; one is named `runner`, more are `runner0`, `runner1`, ….
    pub runners: usize,
    /// Extra arguments of every runner (e.g. `--run-lease-ms 1000`).
    pub runner_args: Vec<String>,
    /// Extra arguments of every edge.
    pub edge_args: Vec<String>,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            runners: 1,
            runner_args: Vec::new(),
            edge_args: Vec::new(),
        }
    }
}

/// A running process of the cluster.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

pub struct Cluster {
    /// `ws://` URLs of the edges, in start order.
    pub edge_urls: Vec<String>,
    pub gateway_token: String,
    pub redis_prefix: String,
    /// `CLAWGATE_SIGNING_KEY` shared by every process (signs gRPC call tokens).
    signing_key: String,
    /// `CLAWGATE_ENCRYPTION_KEY` of the auth process (seals tenant secrets).
    encryption_key: String,
    env: Vec<(String, String)>,
    processes: Vec<Process>,
    dir: tempfile::TempDir,
}

pub const CLUSTER_TOKEN: &str = "cluster-gateway-token";

/// Redis of the tests: `CLAWGATE_TEST_REDIS_URL`, else the local server.
pub fn test_redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The `clawgate` binary: `CLAWGATE_BIN`, else the one cargo built next to this
/// test, built first when missing.
pub fn clawgate_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CLAWGATE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    // A binary of this crate (target/<profile>/<bin>) finds it beside itself.
    if let Some(sibling) = exe.parent().map(|dir| dir.join("clawgate"))
        && sibling.is_file()
    {
        return Ok(sibling);
    }
    // target/<profile>/deps/<test> → target/<profile>/clawgate
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot locate the target directory")?;
    let bin = profile_dir.join("clawgate");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "clawgate", "--bin", "clawgate"])
            .status()
            .context("cannot run cargo to build the clawgate binary")?;
        if !status.success() {
            bail!("building the clawgate binary failed");
        }
    }
    Ok(bin)
}

/// A loopback address with a free port.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl Cluster {
    /// A cluster of `edges` edges on a fresh PostgreSQL database of its own and
    /// the test Redis, with the model at `model_base_url`. The database is
    /// dropped with the returned guard, so keep it alive as long as the cluster.
    pub async fn start_fresh(
        model_base_url: &str,
        edges: usize,
        scale: Scale,
    ) -> anyhow::Result<(Self, TestDatabase)> {
        let database = fresh_postgres_url().await?;
        let options = ClusterOptions {
            edges,
            database_url: database.url().to_owned(),
            redis_url: test_redis_url(),
            model_base_url: model_base_url.to_owned(),
            env: Vec::new(),
        };
        let cluster = Self::start_with(options, scale).await?;
        Ok((cluster, database))
    }

    pub async fn start(options: ClusterOptions) -> anyhow::Result<Self> {
        Self::start_with(options, Scale::default()).await
    }

    pub async fn start_with(options: ClusterOptions, scale: Scale) -> anyhow::Result<Self> {
        let bin = clawgate_binary()?;
        let dir = tempfile::tempdir()?;
        let redis_prefix = format!("cgtest-{}", uuid::Uuid::new_v4().simple());
        let mut cluster = Self {
            env: options.env.clone(),
            edge_urls: Vec::new(),
            gateway_token: CLUSTER_TOKEN.to_owned(),
            redis_prefix,
            signing_key: clawgate_runtime::internal_token::generate_pem(),
            encryption_key: Keyring::generate_key_hex(),
            processes: Vec::new(),
            dir,
        };

        // Migrate as the superuser and grant the application role, which the
        // services then run as (row-level security applies to it).
        let app_database_url = app_role_url(&options.database_url).await?;
        let migrate = tokio::process::Command::new(&bin)
            .args([
                "migrate",
                "--database-url",
                &options.database_url,
                "--app-role",
                TEST_APP_ROLE,
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .await?;
        if !migrate.status.success() {
            bail!(
                "clawgate migrate failed: {}",
                String::from_utf8_lossy(&migrate.stderr)
            );
        }

        let session = free_addr()?;
        let auth = free_addr()?;
        let encryption_key = cluster.encryption_key.clone();
        let runners = (0..scale.runners.max(1))
            .map(|_| free_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let url = |addr: SocketAddr| format!("http://{addr}");
        let runner_urls = runners
            .iter()
            .map(|a| url(*a))
            .collect::<Vec<_>>()
            .join(",");

        let session_redis_prefix = cluster.redis_prefix.clone();
        cluster
            .spawn(
                &bin,
                "session",
                &[
                    "serve",
                    "--services",
                    "session",
                    "--grpc-listen",
                    &session.to_string(),
                    "--database-url",
                    &app_database_url,
                    // Session changes reach the edges over the bus.
                    "--redis-url",
                    &options.redis_url,
                    "--redis-prefix",
                    &session_redis_prefix,
                ],
                &[],
            )
            .await?;
        cluster
            .spawn(
                &bin,
                "auth",
                &[
                    "serve",
                    "--services",
                    "auth",
                    "--grpc-listen",
                    &auth.to_string(),
                    "--database-url",
                    &app_database_url,
                ],
                &[("CLAWGATE_ENCRYPTION_KEY", encryption_key.as_str())],
            )
            .await?;
        let redis_prefix = cluster.redis_prefix.clone();
        for (index, runner) in runners.iter().enumerate() {
            let name = if runners.len() == 1 {
                "runner".to_owned()
            } else {
                format!("runner{index}")
            };
            let listen = runner.to_string();
            let mut args = vec![
                "serve",
                "--services",
                "runner",
                "--grpc-listen",
                &listen,
                "--runner-id",
                &name,
                "--session-url",
            ];
            let (session_url, auth_url) = (url(session), url(auth));
            args.extend([
                session_url.as_str(),
                "--auth-url",
                auth_url.as_str(),
                "--redis-url",
                &options.redis_url,
                "--redis-prefix",
                &redis_prefix,
                "--model-base-url",
                &options.model_base_url,
            ]);
            args.extend(scale.runner_args.iter().map(String::as_str));
            cluster.spawn(&bin, &name, &args, &[]).await?;
        }
        for addr in [session, auth].iter().chain(&runners) {
            wait_for_port(*addr).await?;
        }
        for index in 0..options.edges {
            let listen = free_addr()?;
            let (listen_arg, auth_url, session_url) = (listen.to_string(), url(auth), url(session));
            let mut args = vec![
                "serve",
                "--services",
                "edge",
                "--listen",
                &listen_arg,
                "--auth-url",
                &auth_url,
                "--runner-url",
                &runner_urls,
                "--session-url",
                &session_url,
                "--redis-url",
                &options.redis_url,
                "--redis-prefix",
                &redis_prefix,
            ];
            args.extend(scale.edge_args.iter().map(String::as_str));
            cluster
                .spawn(&bin, &format!("edge{index}"), &args, &[])
                .await?;
            wait_for_ready(listen).await?;
            cluster.edge_urls.push(format!("ws://{listen}/"));
        }
        Ok(cluster)
    }

    /// Starts a process with the cluster's environment plus `env`.
    async fn spawn(
        &mut self,
        bin: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CLAWGATE_GATEWAY_TOKEN", &self.gateway_token)
            .env("CLAWGATE_SIGNING_KEY", &self.signing_key)
            .env("CLAWGATE_MODEL", "mock-model")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.processes.push(Process {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(())
    }

    /// Kills a process by name (e.g. "edge0", "runner") with SIGKILL.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let process = self
            .processes
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))?;
        process.child.kill().await?;
        Ok(())
    }

    /// Sends SIGTERM to a process by name.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .process(name)?
            .child
            .id()
            .with_context(|| format!("{name} already exited"))?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// Waits (at most `timeout`) for a process to exit; returns its status.
    pub async fn wait_exit(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let process = self.process(name)?;
        tokio::time::timeout(timeout, process.child.wait())
            .await
            .with_context(|| format!("{name} still running after {timeout:?}"))?
            .map_err(Into::into)
    }

    /// Names of the processes that exited (crashed or were stopped).
    pub fn exited(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|p| (!matches!(p.child.try_wait(), Ok(None))).then(|| p.name.clone()))
            .collect()
    }

    fn process(&mut self, name: &str) -> anyhow::Result<&mut Process> {
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))
    }

    /// `(name, pid)` of every process started, in start order ("session",
    /// "auth", "runner", "edge0", …); a process already reaped has no pid.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.child.id()?)))
            .collect()
    }

    /// The output of every process so far.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                format!("===== {} =====\n{text}", p.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("edge {addr} not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
