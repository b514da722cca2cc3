//! The whole gateway in this process, on the embedded default: SQLite in a
//! temporary directory, the in-process bus, every service wired with local
//! clients, the edge on a free loopback port.

use std::path::PathBuf;

use clawgate::cli::{AuthArgs, CommonArgs, EdgeArgs, UpArgs};

/// Options of a test gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// OpenAI-compatible base URL (e.g. a [`crate::mock_model::MockModel`]).
    pub model_base_url: Option<String>,
    /// Coalescing window of the runner in ms (default 40).
    pub coalesce_ms: Option<u64>,
    /// Edge settings (defaults as in production).
    pub edge: EdgeArgs,
    /// goclaw users that get the `owner` role.
    pub owner_ids: Vec<String>,
    /// Auth and pairing settings (defaults as in production).
    pub auth: AuthOptions,
}

/// Auth and pairing settings of a test gateway; `None` keeps the production default.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// Silent approval of new devices on direct loopback connections
    /// (`--pairing-auto-approve-local`, `CLAWGATE_PAIRING_AUTO_APPROVE_LOCAL`;
    /// production default: on).
    pub auto_approve_local: Option<bool>,
    /// The failed-auth lockout (production default: 10 failures per 60 s ⇒ 5 min,
    /// loopback exempt).
    pub lockout: Option<LockoutOptions>,
}

/// Failed-auth lockout settings.
#[derive(Debug, Clone)]
pub struct LockoutOptions {
    /// `--auth-max-failures`, `CLAWGATE_AUTH_MAX_FAILURES` (10).
    pub max_failures: u32,
    /// `--auth-failure-window-ms`, `CLAWGATE_AUTH_FAILURE_WINDOW_MS` (60000).
    pub window_ms: u64,
    /// `--auth-lockout-ms`, `CLAWGATE_AUTH_LOCKOUT_MS` (300000).
    pub lockout_ms: u64,
    /// Count loopback clients too: `--auth-limit-loopback`,
    /// `CLAWGATE_AUTH_LIMIT_LOOPBACK` (false: loopback exempt, as the reference).
    pub include_loopback: bool,
}

impl AuthOptions {
    /// The binary's auth settings for these options.
    pub fn to_args(&self) -> AuthArgs {
        let mut args = AuthArgs::default();
        if let Some(auto_approve) = self.auto_approve_local {
            args.pairing_auto_approve_local = auto_approve;
        }
        if let Some(lockout) = &self.lockout {
            args.auth_max_failures = lockout.max_failures;
            args.auth_failure_window_ms = lockout.window_ms;
            args.auth_lockout_ms = lockout.lockout_ms;
            args.auth_limit_loopback = lockout.include_loopback;
        }
        args
    }
}

/// A running gateway; stops when dropped.
pub struct TestGateway {
    pub ws_url: String,
    pub gateway_token: String,
    pub data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub const TEST_TOKEN: &str = "test-gateway-token";

impl TestGateway {
    pub async fn start(options: GatewayOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let args = UpArgs {
            common: common_args(&options),
            data_dir: Some(dir.path().to_path_buf()),
        };
        let embedded = clawgate::embedded::prepare(args).await?;
        let addr = embedded.listener.local_addr()?;
        let wired = clawgate::wiring::wire(&embedded.plan).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(clawgate::wiring::run_wired(
            wired,
            Some(embedded.listener),
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            ws_url: format!("ws://{addr}/"),
            gateway_token: TEST_TOKEN.to_owned(),
            data_dir: dir.path().to_path_buf(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        })
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn common_args(options: &GatewayOptions) -> CommonArgs {
    CommonArgs {
        gateway_token: Some(TEST_TOKEN.to_owned()),
        default_tenant: "default".into(),
        default_user: "owner".into(),
        owner_ids: options.owner_ids.clone(),
        model_base_url: options.model_base_url.clone(),
        model: "mock-model".into(),
        model_api_key: Some("test-api-key".into()),
        coalesce_ms: options.coalesce_ms.unwrap_or(40),
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        edge: options.edge.clone(),
        auth: options.auth.to_args(),
    }
}
