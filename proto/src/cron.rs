//! Cron service contract: scheduled jobs that wake agents.

use crate::pb::cron::v1::cron_service_client::CronServiceClient as GrpcClient;
use crate::pb::cron::v1::cron_service_server::{
    CronService as GrpcService, CronServiceServer as GrpcServer,
};
pub use crate::pb::cron::v1::*;

crate::macros::service_bindings! {
    name: "cron",
    trait CronApi,
    client CronClient,
    adapter CronGrpc,
    rpcs {
        authed fn create_job(CreateJobRequest) -> CronJob;
        authed fn update_job(UpdateJobRequest) -> CronJob;
        authed fn delete_job(DeleteJobRequest) -> DeleteJobResponse;
        authed fn get_job(GetJobRequest) -> CronJob;
        authed fn list_jobs(ListJobsRequest) -> ListJobsResponse;
        authed fn toggle_job(ToggleJobRequest) -> CronJob;
        authed fn run_job(RunJobRequest) -> RunJobResponse;
        authed fn list_runs(ListRunsRequest) -> ListRunsResponse;
    }
}
