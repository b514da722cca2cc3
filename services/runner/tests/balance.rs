//! The balanced runner client: two real runner gRPC servers on loopback (each a
//! `RunnerGrpc` adapter over a real `RunnerService`), calls through one
//! `RunnerClient` on a balanced channel land on both, and follow membership
//! changes (an explicit list changed at runtime, and a DNS name whose answer
//! changes) without failing calls when a replica leaves.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::runner::{
    AbortRunRequest, AbortRunResponse, ActiveRunsRequest, ActiveRunsResponse, ExecApproval,
    GetApprovalRequest, GetRunRequest, ListApprovalsRequest, ListApprovalsResponse,
    ListModelsRequest, ListModelsResponse, ListToolsRequest, ListToolsResponse,
    ReadRunEventsRequest, ReadRunEventsResponse, ResolveApprovalRequest, ResolveApprovalResponse,
    RunInfo, RunnerApi, RunnerClient, RunnerGrpc, RunnerStatsRequest, RunnerStatsResponse,
    StartRunRequest, StartRunResponse, StartStatus, WaitApprovalRequest,
};
use clawgate_proto::session::SessionClient;
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runner::{ProviderConfig, RunnerConfig, RunnerService};
use clawgate_runtime::balance::{BalanceOptions, Resolve, balanced_channel, balanced_channel_with};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::internal_token::KeySet;
use clawgate_session::SessionService;
use common::{MockModel, Script, principal, start};

/// A runner that counts the calls it serves.
struct Counting {
    runner: RunnerService,
    calls: AtomicUsize,
}

#[async_trait]
impl RunnerApi for Counting {
    async fn start_run(
        &self,
        principal: &Principal,
        request: StartRunRequest,
    ) -> Result<StartRunResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.start_run(principal, request).await
    }

    async fn get_run(
        &self,
        principal: &Principal,
        request: GetRunRequest,
    ) -> Result<RunInfo, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.get_run(principal, request).await
    }

    async fn abort_run(
        &self,
        principal: &Principal,
        request: AbortRunRequest,
    ) -> Result<AbortRunResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.abort_run(principal, request).await
    }

    async fn read_run_events(
        &self,
        principal: &Principal,
        request: ReadRunEventsRequest,
    ) -> Result<ReadRunEventsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.read_run_events(principal, request).await
    }

    async fn list_models(
        &self,
        principal: &Principal,
        request: ListModelsRequest,
    ) -> Result<ListModelsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.list_models(principal, request).await
    }

    async fn runner_stats(
        &self,
        principal: &Principal,
        request: RunnerStatsRequest,
    ) -> Result<RunnerStatsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.runner_stats(principal, request).await
    }

    async fn active_runs(
        &self,
        principal: &Principal,
        request: ActiveRunsRequest,
    ) -> Result<ActiveRunsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.active_runs(principal, request).await
    }

    async fn list_approvals(
        &self,
        principal: &Principal,
        request: ListApprovalsRequest,
    ) -> Result<ListApprovalsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.list_approvals(principal, request).await
    }

    async fn get_approval(
        &self,
        principal: &Principal,
        request: GetApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.get_approval(principal, request).await
    }

    async fn resolve_approval(
        &self,
        principal: &Principal,
        request: ResolveApprovalRequest,
    ) -> Result<ResolveApprovalResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.resolve_approval(principal, request).await
    }

    async fn wait_approval(
        &self,
        principal: &Principal,
        request: WaitApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.wait_approval(principal, request).await
    }

    async fn list_tools(
        &self,
        principal: &Principal,
        request: ListToolsRequest,
    ) -> Result<ListToolsResponse, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.runner.list_tools(principal, request).await
    }
}

struct Replica {
    addr: SocketAddr,
    service: Arc<Counting>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> usize {
        self.service.calls.load(Ordering::SeqCst)
    }

    /// Stops serving (graceful: calls in flight finish) and waits for it.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

struct Fleet {
    replicas: Vec<Replica>,
    keys: KeySet,
    _model: MockModel,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn start(count: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("session.db").display()
        );
        let sessions = SessionService::connect(&url).await.unwrap();
        sessions.migrate().await.unwrap();
        let session = SessionClient::local(Arc::new(sessions));
        let model = MockModel::start(Script::tokens(["ok"])).await.unwrap();
        let keys = KeySet::generate();
        let mut replicas = Vec::new();
        for _ in 0..count {
            let config = RunnerConfig {
                provider: Some(ProviderConfig::new(model.base_url(), "mock")),
                ..RunnerConfig::default()
            };
            let runner = RunnerService::new(config, session.clone(), Arc::new(MemoryBus::new()));
            let service = Arc::new(Counting {
                runner,
                calls: AtomicUsize::new(0),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tonic::transport::Server::builder()
                .add_service(RunnerGrpc::new(service.clone(), keys.verifier()).into_server())
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                );
            let task = tokio::spawn(async move {
                let _ = server.await;
            });
            replicas.push(Replica {
                addr,
                service,
                stop: Some(stop),
                task,
            });
        }
        Self {
            replicas,
            keys,
            _model: model,
            _dir: dir,
        }
    }

    fn client(&self, channel: tonic::transport::Channel) -> RunnerClient {
        RunnerClient::grpc(channel, self.keys.signer())
    }

    fn calls(&self) -> Vec<usize> {
        self.replicas.iter().map(Replica::calls).collect()
    }
}

/// `count` calls that each must succeed (a started run, or a clean NOT_FOUND).
async fn call_many(client: &RunnerClient, count: usize, tag: &str) {
    for i in 0..count {
        let key = format!("{tag}-{i}");
        if i % 2 == 0 {
            let response = client
                .start_run(&principal("alice"), start(&key, "hi", &key))
                .await
                .unwrap();
            assert_eq!(response.status, StartStatus::Started as i32);
        } else {
            let err = client
                .get_run(&principal("alice"), GetRunRequest { run_id: key })
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_a_list_and_follow_its_changes() {
    let mut fleet = Fleet::start(2).await;
    let spec = format!("{},{}", fleet.replicas[0].url(), fleet.replicas[1].url());
    // The plain entry point works ...
    let plain = fleet.client(balanced_channel(&spec).unwrap());
    call_many(&plain, 4, "plain").await;
    // ... and the handle changes membership at runtime.
    let (channel, endpoints) =
        balanced_channel_with(&spec, BalanceOptions::default(), Arc::new(NoDns)).unwrap();
    let client = fleet.client(channel);
    call_many(&client, 40, "spread").await;
    let calls = fleet.calls();
    assert!(
        calls.iter().all(|&n| n > 0),
        "both replicas served: {calls:?}"
    );

    endpoints.set([fleet.replicas[0].url()]).await.unwrap();
    // Give the balancer a moment to drop the removed endpoint, then stop it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    fleet.replicas[1].stop().await;
    let before = fleet.calls();
    call_many(&client, 20, "one-left").await;
    let after = fleet.calls();
    assert_eq!(after[1], before[1], "the removed replica got no calls");
    assert_eq!(after[0], before[0] + 20);
}

struct NoDns;

#[async_trait]
impl Resolve for NoDns {
    async fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        Err(io::Error::other("no dns in this test"))
    }
}

/// A DNS stand-in whose answer the test changes.
#[derive(Default)]
struct FakeDns {
    answers: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl FakeDns {
    fn set(&self, host: &str, addrs: Vec<SocketAddr>) {
        self.answers.lock().unwrap().insert(host.into(), addrs);
    }
}

#[async_trait]
impl Resolve for FakeDns {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let addrs = self
            .answers
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or_default();
        // The fake answers with the servers' real ports, whatever was asked.
        let _ = port;
        Ok(addrs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_is_followed_as_replicas_come_and_go() {
    let mut fleet = Fleet::start(2).await;
    let dns = Arc::new(FakeDns::default());
    dns.set("runner-headless.ns.svc", vec![fleet.replicas[0].addr]);
    let options = BalanceOptions {
        refresh: Duration::from_millis(50),
        ..BalanceOptions::default()
    };
    let (channel, endpoints) =
        balanced_channel_with("dns://runner-headless.ns.svc:50051", options, dns.clone()).unwrap();
    let client = fleet.client(channel);
    call_many(&client, 6, "first").await;
    assert_eq!(fleet.calls(), [6, 0]);

    // A replica appears.
    dns.set(
        "runner-headless.ns.svc",
        vec![fleet.replicas[0].addr, fleet.replicas[1].addr],
    );
    wait_for_endpoints(&endpoints, 2).await;
    call_many(&client, 40, "both").await;
    let calls = fleet.calls();
    assert!(calls[1] > 0, "the new replica served: {calls:?}");

    // A replica goes away; an empty answer (a DNS hiccup) changes nothing.
    dns.set("runner-headless.ns.svc", vec![fleet.replicas[1].addr]);
    wait_for_endpoints(&endpoints, 1).await;
    dns.set("runner-headless.ns.svc", vec![]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(endpoints.urls().await, [fleet.replicas[1].url()]);
    fleet.replicas[0].stop().await;
    let before = fleet.calls();
    call_many(&client, 20, "after").await;
    let after = fleet.calls();
    assert_eq!(after[0], before[0], "the departed replica got no calls");
    assert_eq!(after[1], before[1] + 20);
}

async fn wait_for_endpoints(endpoints: &clawgate_runtime::balance::EndpointSet, count: usize) {
    for _ in 0..100 {
        if endpoints.urls().await.len() == count {
            // Let the balancer pick up the change.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("endpoint set never reached {count}");
}
