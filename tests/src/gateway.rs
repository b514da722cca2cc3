//! The whole gateway in this process, on the embedded default: SQLite in a
//! temporary directory, the in-process bus, every service wired with local
//! clients, the edge on a free loopback port.
//!
//! [`GatewayOptions::database`] swaps SQLite for PostgreSQL as in production:
//! migrated as the URL's (superuser) role with the grants of the application
//! role [`TEST_APP_ROLE`], the services then connected as that role, so
//! row-level security applies (the same tests can run on both backends).

use std::path::PathBuf;

use clawgate::cli::{AuthArgs, CommonArgs, EdgeArgs, MigrateArgs, SecretArg, UpArgs};
use clawgate_runtime::db::testing::{
    TEST_APP_ROLE, TestDatabase, app_role_url, fresh_postgres_url,
};

/// Where a test gateway keeps its data.
#[derive(Debug, Clone, Default)]
pub enum GatewayDatabase {
    /// SQLite files in the gateway's temporary data directory (the embedded
    /// default).
    #[default]
    Sqlite,
    /// A fresh PostgreSQL database of its own on the test server
    /// (`CLAWGATE_TEST_POSTGRES_URL`), dropped with the gateway.
    FreshPostgres,
    /// This PostgreSQL database, as a role that may migrate it and create
    /// [`TEST_APP_ROLE`]; migrated (again, which is a no-op when current).
    Postgres(String),
}

/// Options of a test gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// OpenAI-compatible base URL (e.g. a [`crate::mock_model::MockModel`]),
    /// or an Anthropic one with `model_provider`.
    pub model_base_url: Option<String>,
    /// `--model-provider`: `None` for `openai`, or `anthropic`.
    pub model_provider: Option<String>,
    /// Coalescing window of the runner in ms (default 40).
    pub coalesce_ms: Option<u64>,
    /// Edge settings (defaults as in production).
    pub edge: EdgeArgs,
    /// goclaw users that get the `owner` role.
    pub owner_ids: Vec<String>,
    /// Auth and pairing settings (defaults as in production).
    pub auth: AuthOptions,
    /// SQLite (default) or PostgreSQL under the application role.
    pub database: GatewayDatabase,
    /// `CLAWGATE_ENCRYPTION_KEY`; `None`: the key the embedded gateway creates
    /// in its data directory.
    pub encryption_key: Option<String>,
    /// `--exec-workspace`: agents get the `exec` tool, gated by approvals.
    pub exec_workspace: Option<std::path::PathBuf>,
    /// `--approval-timeout-ms` (default 30 minutes).
    pub approval_timeout_ms: Option<u64>,
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
    /// The PostgreSQL URL the services use (as [`TEST_APP_ROLE`]), when on
    /// PostgreSQL.
    pub database_url: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    /// A database made for this gateway, dropped after it.
    _database: Option<TestDatabase>,
}

/// Migrates the PostgreSQL database at `url` as its role, grants
/// [`TEST_APP_ROLE`] and returns the URL connecting as that role.
pub async fn migrate_for_app_role(url: &str) -> anyhow::Result<String> {
    let app_url = app_role_url(url).await?;
    clawgate::database::migrate(MigrateArgs {
        database_url: url.to_owned(),
        app_role: Some(TEST_APP_ROLE.to_owned()),
    })
    .await?;
    Ok(app_url)
}

pub const TEST_TOKEN: &str = "test-gateway-token";

impl TestGateway {
    pub async fn start(options: GatewayOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (fresh, database_url) = match &options.database {
            GatewayDatabase::Sqlite => (None, None),
            GatewayDatabase::FreshPostgres => {
                let database = fresh_postgres_url().await?;
                let url = migrate_for_app_role(database.url()).await?;
                (Some(database), Some(url))
            }
            GatewayDatabase::Postgres(url) => (None, Some(migrate_for_app_role(url).await?)),
        };
        let args = UpArgs {
            common: common_args(&options),
            data_dir: Some(dir.path().to_path_buf()),
        };
        let mut embedded = clawgate::embedded::prepare(args).await?;
        if let Some(url) = &database_url {
            // Already migrated by the superuser: the app role may not run DDL.
            embedded.plan.database_url = Some(url.clone());
            embedded.plan.migrate = false;
        }
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
            database_url,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            _database: fresh,
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
        model_provider: options
            .model_provider
            .clone()
            .unwrap_or_else(|| "openai".into()),
        model: "mock-model".into(),
        model_api_key: Some("test-api-key".into()),
        coalesce_ms: options.coalesce_ms.unwrap_or(40),
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        encryption_key: options.encryption_key.clone().map(SecretArg::new),
        session_retention_days: 30,
        exec_workspace: options.exec_workspace.clone(),
        approval_timeout_ms: options.approval_timeout_ms.unwrap_or(1_800_000),
        edge: options.edge.clone(),
        auth: options.auth.to_args(),
    }
}
