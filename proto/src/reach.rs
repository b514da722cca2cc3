//! Whether a service answers, as the standard gRPC health checking protocol
//! (which every process serving a service runs) reports it.
//!
//! Invariant: a check never takes longer than its timeout and never fails:
//! whatever goes wrong is a [`Reachability`].

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What a health check of a service found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// The service runs in this process (no network between).
    InProcess,
    /// Its process answered `SERVING`.
    Serving,
    /// Its process answered, but not `SERVING` (a dependency is down, or it is
    /// stopping).
    NotServing,
    /// No answer within the timeout, or the call failed; why.
    Unreachable(String),
}

impl Reachability {
    /// Whether calls can be expected to succeed.
    pub fn ok(&self) -> bool {
        matches!(self, Self::InProcess | Self::Serving)
    }

    /// A short name: `in_process`, `serving`, `not_serving`, `unreachable`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InProcess => "in_process",
            Self::Serving => "serving",
            Self::NotServing => "not_serving",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

/// Asks the health service on `channel` about `service`, within `timeout`.
pub async fn check(
    channel: tonic::transport::Channel,
    service: &str,
    timeout: Duration,
) -> Reachability {
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Reachability::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(status)) => Reachability::Unreachable(status.code().to_string()),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Reachability::Serving,
            _ => Reachability::NotServing,
        },
    }
}
