//! What the load goes to: a process cluster started here, the embedded gateway
//! in this process (on a thread and runtime of its own), or an existing
//! deployment given by its edge URLs. Also the mock model (on a thread and runtime
//! of its own, so client load does not delay its token timestamps) and readings
//! of process memory and CPU from `/proc`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::cluster::{Cluster, ClusterOptions};
use crate::gateway::{GatewayOptions, TestGateway};
use crate::mock_model::{AnswerEnd, MockModel, RecordedRequest, Rule, Script, TokenEmission};

/// The mock model server, running on its own thread.
pub struct MockHost {
    model: Option<MockModel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockHost {
    /// Starts a mock model that echoes each run's message at `tokens_per_second`.
    pub fn start(addr: SocketAddr, tokens_per_second: f64) -> anyhow::Result<Self> {
        let delay = Duration::from_secs_f64(1.0 / tokens_per_second.max(0.001));
        let script = Script::echo().with_delay(delay).with_steady_rate();
        Self::start_with(addr, script, None)
    }

    /// Starts a mock model answering with `script`, or as `rule` chooses.
    pub fn start_with(
        addr: SocketAddr,
        script: Script,
        rule: Option<Rule>,
    ) -> anyhow::Result<Self> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mock-model".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(anyhow::Error::from(err)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = MockModel::start_on(addr, script)
                        .await
                        .with_context(|| format!("cannot start the mock model on {addr}"));
                    if ready_tx.send(started).is_ok() {
                        let _ = stop_rx.await;
                    }
                });
            })?;
        let model = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the mock model did not start")??;
        if let Some(rule) = rule {
            model.set_rule(rule);
        }
        Ok(Self {
            model: Some(model),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn base_url(&self) -> String {
        self.model
            .as_ref()
            .map(MockModel::base_url)
            .unwrap_or_default()
    }

    pub fn emissions(&self) -> Vec<TokenEmission> {
        self.model
            .as_ref()
            .map(MockModel::emissions)
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.model
            .as_ref()
            .map(MockModel::requests)
            .unwrap_or_default()
    }

    pub fn answer_ends(&self) -> Vec<AnswerEnd> {
        self.model
            .as_ref()
            .map(MockModel::answer_ends)
            .unwrap_or_default()
    }
}

/// The embedded gateway ([`TestGateway`]: SQLite, the in-process bus, every
/// service in one process) on a thread with a runtime of its own, so the
/// clients' tasks do not run on its workers.
struct EmbeddedHost {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedHost {
    /// Starts it; its WebSocket URL and gateway token.
    fn start(options: GatewayOptions) -> anyhow::Result<(Self, String, String)> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let thread = std::thread::Builder::new()
            .name("gateway".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("gateway-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(anyhow::Error::from(err)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let gateway = match TestGateway::start(options).await {
                        Ok(gateway) => gateway,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let ready = (gateway.ws_url.clone(), gateway.gateway_token.clone());
                    if ready_tx.send(Ok(ready)).is_ok() {
                        let _ = stop_rx.await;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(10), gateway.stop()).await;
                });
            })?;
        let (url, token) = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .context("the embedded gateway did not start")??;
        let host = Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        Ok((host, url, token))
    }
}

impl Drop for EmbeddedHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockHost {
    fn drop(&mut self) {
        self.model = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where clients connect, and which processes to watch.
pub struct Target {
    pub urls: Vec<String>,
    pub token: String,
    /// Edge processes whose RSS and CPU are read (known for a local cluster, or
    /// given for a deployment).
    pub edge_pids: Vec<u32>,
    /// Every process to report CPU of, by name.
    pub pids: Vec<(String, u32)>,
    pub redis_url: Option<String>,
    pub local: bool,
    // Dropped in this order: cluster processes first, then their database.
    _cluster: Option<Cluster>,
    _database: Option<clawgate_runtime::db::testing::TestDatabase>,
    _embedded: Option<EmbeddedHost>,
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub edges: usize,
    pub redis_url: String,
    pub coalesce_ms: u64,
    /// `CLAWGATE_TOPIC_LINGER_MS` of the edges (`None`: their default).
    pub topic_linger_ms: Option<u64>,
}

impl Target {
    /// Starts auth, session, one runner and `edges` edges as processes, on a
    /// fresh PostgreSQL database, with the runner pointed at `model_base_url`.
    pub async fn local(options: &LocalOptions, model_base_url: String) -> anyhow::Result<Self> {
        let database = clawgate_runtime::db::testing::fresh_postgres_url()
            .await
            .context("cannot create a PostgreSQL database (CLAWGATE_TEST_POSTGRES_URL)")?;
        let cluster = Cluster::start(ClusterOptions {
            edges: options.edges,
            database_url: database.url().to_owned(),
            redis_url: options.redis_url.clone(),
            model_base_url,
            env: [
                Some(("CLAWGATE_COALESCE_MS", options.coalesce_ms)),
                options
                    .topic_linger_ms
                    .map(|ms| ("CLAWGATE_TOPIC_LINGER_MS", ms)),
            ]
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.to_owned(), value.to_string()))
            .collect(),
        })
        .await?;
        let pids = cluster.pids();
        let edge_pids = pids
            .iter()
            .filter(|(name, _)| name.starts_with("edge"))
            .map(|(_, pid)| *pid)
            .collect();
        Ok(Self {
            urls: cluster.edge_urls.clone(),
            token: cluster.gateway_token.clone(),
            edge_pids,
            pids,
            redis_url: Some(options.redis_url.clone()),
            local: true,
            _cluster: Some(cluster),
            _database: Some(database),
            _embedded: None,
        })
    }

    /// Starts the embedded gateway in this process (SQLite in a temporary
    /// directory), with the model at `model_base_url` and the runner's
    /// coalescing window `coalesce_ms`. Its CPU is this process's.
    pub fn embedded(model_base_url: String, coalesce_ms: u64) -> anyhow::Result<Self> {
        let (host, url, token) = EmbeddedHost::start(GatewayOptions {
            model_base_url: Some(model_base_url),
            coalesce_ms: Some(coalesce_ms),
            ..GatewayOptions::default()
        })?;
        Ok(Self {
            urls: vec![url],
            token,
            edge_pids: Vec::new(),
            pids: Vec::new(),
            redis_url: None,
            local: true,
            _cluster: None,
            _database: None,
            _embedded: Some(host),
        })
    }

    /// An existing deployment.
    pub fn external(
        urls: Vec<String>,
        token: String,
        edge_pids: Vec<u32>,
        redis_url: Option<String>,
    ) -> Self {
        let pids = edge_pids
            .iter()
            .enumerate()
            .map(|(index, pid)| (format!("edge{index}"), *pid))
            .collect();
        Self {
            urls,
            token,
            edge_pids,
            pids,
            redis_url,
            local: false,
            _cluster: None,
            _database: None,
            _embedded: None,
        }
    }
}

/// Resident set size of a process in bytes (`VmRSS`); `None` when unreadable.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sum of the edges' RSS; `None` unless every edge could be read.
pub fn edges_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| rss_bytes(Some(*pid))).sum()
}

/// User + system CPU time of a process in seconds (`/proc/<pid>/stat`, assuming
/// the usual 100 clock ticks per second).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds Redis has used (`INFO cpu`), also for a Redis that is not a
/// child of this process.
pub async fn redis_cpu_seconds(url: &str) -> Option<f64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .ok()?;
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some(field("used_cpu_user")? + field("used_cpu_sys")?)
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The soft limit of open files of this process.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
