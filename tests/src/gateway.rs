//! The whole gateway in this process, on the embedded default: SQLite in a
//! temporary directory, the in-process bus, every service wired with local
//! clients, the edge on a free loopback port.

use std::path::PathBuf;

use clawgate::cli::{CommonArgs, UpArgs};

/// Options of a test gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// OpenAI-compatible base URL (e.g. a [`crate::mock_model::MockModel`]).
    pub model_base_url: Option<String>,
    /// Coalescing window of the runner in ms (default 40).
    pub coalesce_ms: Option<u64>,
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
        owner_ids: Vec::new(),
        model_base_url: options.model_base_url.clone(),
        model: "mock-model".into(),
        model_api_key: Some("test-api-key".into()),
        coalesce_ms: options.coalesce_ms.unwrap_or(40),
        listen: "127.0.0.1:0".parse().expect("loopback address"),
    }
}
