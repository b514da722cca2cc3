//! What wiring one service gives the process ([`Wired`]), and the one rule for
//! reaching a service: local here, gRPC there ([`here_or_there`]).
//!
//! Invariants: a service the plan runs is always built here (never reached
//! over gRPC, even when its URL is set); one it does not run is reached over
//! gRPC only when a service of this process calls it, and then its URL is
//! required (the error names the flag and the variable).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use clawgate_runtime::internal_token::{InternalTokenSigner, InternalTokenVerifier};
use tokio_util::sync::DropGuard;
use tonic::service::RoutesBuilder;

use super::Plan;
use crate::cli::Service;
use crate::health::{Dependency, Health};

/// Work the process runs on shutdown, before its gRPC server stops.
pub type Drain = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A gRPC service this process serves, and what its health depends on.
pub struct GrpcService {
    /// The gRPC service name, as health checks report it.
    pub name: &'static str,
    pub dependencies: Vec<Dependency>,
    add: Box<dyn FnOnce(&mut RoutesBuilder) + Send>,
}

impl GrpcService {
    /// `add` puts the service's server on the process's routes.
    pub fn new(
        name: &'static str,
        dependencies: Vec<Dependency>,
        add: impl FnOnce(&mut RoutesBuilder) + Send + 'static,
    ) -> Self {
        Self {
            name,
            dependencies,
            add: Box::new(add),
        }
    }

    pub fn add_to(self, routes: &mut RoutesBuilder) {
        (self.add)(routes);
    }
}

/// What one service gives the process.
pub struct Wired<H> {
    /// What the rest of the process uses: the service's client (local or
    /// gRPC), or for the edge its server; `None` when nothing here needs it.
    pub handle: Option<H>,
    /// Its gRPC server, when it runs here.
    pub grpc: Option<GrpcService>,
    /// Run on shutdown while gRPC still serves (a runner finishing its runs).
    pub drain: Option<Drain>,
    /// Stops the service's background tasks when the process drops it.
    pub guard: Option<DropGuard>,
}

impl<H> Wired<H> {
    /// Nothing: the service is neither here nor called from here.
    pub fn absent() -> Self {
        Self {
            handle: None,
            grpc: None,
            drain: None,
            guard: None,
        }
    }

    /// Only a handle (a gRPC client, or the edge).
    pub fn handle(handle: H) -> Self {
        Self {
            handle: Some(handle),
            ..Self::absent()
        }
    }

    /// A service running here: its local client and its gRPC server.
    pub fn serving(handle: H, grpc: GrpcService) -> Self {
        Self {
            handle: Some(handle),
            grpc: Some(grpc),
            ..Self::absent()
        }
    }

    /// The handle, which `caller` needs (present whenever the plan runs it).
    pub fn needed_by(&self, caller: Service) -> anyhow::Result<H>
    where
        H: Clone,
    {
        self.handle
            .clone()
            .with_context(|| format!("{caller} needs a client it was not given"))
    }
}

/// What every wiring function may use.
pub struct Context<'a> {
    pub plan: &'a Plan,
    /// Signs the call token of every gRPC call this process makes.
    pub signer: Arc<InternalTokenSigner>,
    /// Verifies the call token of every gRPC call this process serves.
    pub verifier: Arc<InternalTokenVerifier>,
    /// Health of the gRPC services of this process.
    pub health: Health,
}

impl Context<'_> {
    /// Whether a service of this process calls `service`.
    fn called(&self, service: Service) -> bool {
        self.plan
            .services
            .iter()
            .any(|caller| caller.calls().contains(&service))
    }

    /// The URL of `service` when it is not in this process.
    fn url(&self, service: Service) -> anyhow::Result<&str> {
        self.plan.url(service).with_context(|| {
            format!(
                "the {service} service is not in this process: set --{service}-url (CLAWGATE_{}_URL)",
                service.name().to_uppercase()
            )
        })
    }
}

/// Wires `service`: built by `here` when the plan runs it, else reached by
/// `there` (a gRPC client for its URL) when a service of this process calls
/// it, else absent.
pub async fn here_or_there<H, F>(
    cx: &Context<'_>,
    service: Service,
    here: F,
    there: impl FnOnce(&str) -> anyhow::Result<H>,
) -> anyhow::Result<Wired<H>>
where
    F: AsyncFnOnce() -> anyhow::Result<Wired<H>>,
{
    if cx.plan.runs(service) {
        return here().await;
    }
    if !cx.called(service) {
        return Ok(Wired::absent());
    }
    Ok(Wired::handle(there(cx.url(service)?)?))
}
