//! The call layer's deadline on every path: a call that takes longer than the
//! client's timeout fails with `UNAVAILABLE` (retryable) whether the service is
//! in this process or behind a real gRPC server, and a gRPC server adapter
//! enforces its own deadline, whose error reaches the caller unchanged.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::call_auth::{CallSigner, CallVerifier};
use clawgate_proto::runner::{
    AbortRunRequest, AbortRunResponse, ActiveRunsRequest, ActiveRunsResponse, ExecApproval,
    GetApprovalRequest, GetRunRequest, ListApprovalsRequest, ListApprovalsResponse,
    ListModelsRequest, ListModelsResponse, ListToolsRequest, ListToolsResponse,
    ReadRunEventsRequest, ReadRunEventsResponse, ResolveApprovalRequest, ResolveApprovalResponse,
    RunInfo, RunnerApi, RunnerClient, RunnerGrpc, RunnerStatsRequest, RunnerStatsResponse,
    StartRunRequest, StartRunResponse, WaitApprovalRequest,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};

/// A runner whose `get_run` takes a minute; nothing else is called.
struct Slow;

#[async_trait]
impl RunnerApi for Slow {
    async fn start_run(
        &self,
        _principal: &Principal,
        _request: StartRunRequest,
    ) -> Result<StartRunResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn abort_run(
        &self,
        _principal: &Principal,
        _request: AbortRunRequest,
    ) -> Result<AbortRunResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn get_run(
        &self,
        _principal: &Principal,
        request: GetRunRequest,
    ) -> Result<RunInfo, ServiceError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(RunInfo {
            run_id: request.run_id,
            ..Default::default()
        })
    }

    async fn read_run_events(
        &self,
        _principal: &Principal,
        _request: ReadRunEventsRequest,
    ) -> Result<ReadRunEventsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn list_models(
        &self,
        _principal: &Principal,
        _request: ListModelsRequest,
    ) -> Result<ListModelsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn runner_stats(
        &self,
        _principal: &Principal,
        _request: RunnerStatsRequest,
    ) -> Result<RunnerStatsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn active_runs(
        &self,
        _principal: &Principal,
        _request: ActiveRunsRequest,
    ) -> Result<ActiveRunsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn list_approvals(
        &self,
        _principal: &Principal,
        _request: ListApprovalsRequest,
    ) -> Result<ListApprovalsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn get_approval(
        &self,
        _principal: &Principal,
        _request: GetApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn resolve_approval(
        &self,
        _principal: &Principal,
        _request: ResolveApprovalRequest,
    ) -> Result<ResolveApprovalResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn wait_approval(
        &self,
        _principal: &Principal,
        _request: WaitApprovalRequest,
    ) -> Result<ExecApproval, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }

    async fn list_tools(
        &self,
        _principal: &Principal,
        _request: ListToolsRequest,
    ) -> Result<ListToolsResponse, ServiceError> {
        Err(ServiceError::not_found("not in this test"))
    }
}

/// Signs every principal as the same opaque token; the verifier maps it back.
struct FixedToken;

const TOKEN: &str = "test-call-token";

impl CallSigner for FixedToken {
    fn sign(&self, _principal: &Principal) -> Result<String, ServiceError> {
        Ok(TOKEN.to_owned())
    }
}

impl CallVerifier for FixedToken {
    fn verify(&self, token: &str) -> Result<Principal, ServiceError> {
        if token == TOKEN {
            Ok(alice())
        } else {
            Err(ServiceError::unauthorized("bad token"))
        }
    }
}

fn alice() -> Principal {
    Principal {
        tenant_id: "tenant-a".into(),
        user_id: "alice".into(),
        ..Default::default()
    }
}

fn get_run() -> GetRunRequest {
    GetRunRequest {
        run_id: "run-1".into(),
    }
}

/// Serves `adapter` on a loopback port.
async fn serve(adapter: RunnerGrpc) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(adapter.into_server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

fn assert_timed_out(err: &ServiceError, timeout_ms: u64) {
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.retryable, "{err:?}");
    assert_eq!(
        err.message,
        format!("runner.get_run did not answer within {timeout_ms} ms")
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_local_call_fails_with_the_mapped_error() {
    let client = RunnerClient::local(Arc::new(Slow)).with_call_timeout(Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    let err = client.get_run(&alice(), get_run()).await.unwrap_err();
    assert_timed_out(&err, 200);
    assert_eq!(started.elapsed(), Duration::from_millis(200));
}

#[tokio::test]
async fn a_late_grpc_call_fails_with_the_mapped_error() {
    let addr = serve(RunnerGrpc::new(Arc::new(Slow), Arc::new(FixedToken))).await;
    let client = RunnerClient::connect_lazy(&format!("http://{addr}"), Arc::new(FixedToken))
        .unwrap()
        .with_call_timeout(Duration::from_millis(300));
    let err = client.get_run(&alice(), get_run()).await.unwrap_err();
    assert_timed_out(&err, 300);
}

#[tokio::test]
async fn the_server_adapter_enforces_its_own_deadline() {
    let adapter = RunnerGrpc::new(Arc::new(Slow), Arc::new(FixedToken))
        .with_call_timeout(Duration::from_millis(300));
    let addr = serve(adapter).await;
    let client =
        RunnerClient::connect_lazy(&format!("http://{addr}"), Arc::new(FixedToken)).unwrap();
    let err = client.get_run(&alice(), get_run()).await.unwrap_err();
    assert_timed_out(&err, 300);
}
