//! Agent runner contract: start, abort and inspect runs.

pub use crate::pb::common::v1::ExecApproval;
use crate::pb::runner::v1::runner_service_client::RunnerServiceClient as GrpcClient;
use crate::pb::runner::v1::runner_service_server::{
    RunnerService as GrpcService, RunnerServiceServer as GrpcServer,
};
pub use crate::pb::runner::v1::*;

crate::macros::service_bindings! {
    name: "runner",
    trait RunnerApi,
    client RunnerClient,
    adapter RunnerGrpc,
    rpcs {
        /// Accepts a message and starts a run; returns before the model is called.
        authed fn start_run(StartRunRequest) -> StartRunResponse;
        authed fn abort_run(AbortRunRequest) -> AbortRunResponse;
        authed fn get_run(GetRunRequest) -> RunInfo;
        /// A run's events after a seq, from its bounded history (clawgate extension).
        authed fn read_run_events(ReadRunEventsRequest) -> ReadRunEventsResponse;
        /// The models this runner is configured to call (clawgate extension).
        authed fn list_models(ListModelsRequest) -> ListModelsResponse;
        /// The caller's runs executing on this runner (clawgate extension).
        authed fn runner_stats(RunnerStatsRequest) -> RunnerStatsResponse;
        /// Which of the given sessions have a run in flight (clawgate extension).
        authed fn active_runs(ActiveRunsRequest) -> ActiveRunsResponse;
        /// Pending exec approvals the caller may decide.
        authed fn list_approvals(ListApprovalsRequest) -> ListApprovalsResponse;
        authed fn get_approval(GetApprovalRequest) -> ExecApproval;
        /// Applies a decision exactly once, wherever the waiting run is.
        authed fn resolve_approval(ResolveApprovalRequest) -> ResolveApprovalResponse;
        /// Waits until an approval is decided or expires (bounded).
        authed fn wait_approval(WaitApprovalRequest) -> ExecApproval;
        /// The runner's tools and which of them an agent has.
        authed fn list_tools(ListToolsRequest) -> ListToolsResponse;
    }
}
