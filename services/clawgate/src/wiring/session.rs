//! Wiring of the session service: here, with its own database pool, the
//! retention purge and its gRPC server; elsewhere, a lazily connecting client.
//!
//! Invariant: the purge task lives exactly as long as the process holds the
//! returned guard (0 retention days: no purge, sessions are kept forever).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clawgate_proto::session::{SessionApi, SessionClient, SessionGrpc};
use clawgate_session::SessionService;
use tokio_util::sync::CancellationToken;

use super::wired::{Context, GrpcService, Wired, here_or_there};
use crate::cli::Service;
use crate::database;
use crate::health::Dependency;

/// How often a session process purges sessions whose retention has passed.
const RETENTION_PURGE_EVERY: Duration = Duration::from_secs(60 * 60);
const GRPC_NAME: &str = "clawgate.session.v1.SessionService";

pub async fn wire(cx: &Context<'_>) -> anyhow::Result<Wired<SessionClient>> {
    here_or_there(
        cx,
        Service::Session,
        async || here(cx).await,
        |url| Ok(SessionClient::connect_lazy(url, cx.signer.clone())?),
    )
    .await
}

async fn here(cx: &Context<'_>) -> anyhow::Result<Wired<SessionClient>> {
    let plan = cx.plan;
    let url = plan
        .database_url
        .as_deref()
        .context("the session service needs --database-url (CLAWGATE_DATABASE_URL)")?;
    let db = database::open(url, Service::Session).await?;
    let retention_days = plan.common.session_retention_days;
    let mut service = SessionService::from_database(db.clone()).with_bus(plan.bus.clone());
    if retention_days > 0 {
        service = service.with_retention(Duration::from_secs(retention_days * 86_400));
    }
    if plan.migrate {
        service.migrate().await?;
    }
    // Soft-deleted sessions are purged once their retention has passed.
    let guard = (retention_days > 0).then(|| {
        let stop = CancellationToken::new();
        service.spawn_retention(RETENTION_PURGE_EVERY, stop.clone());
        stop.drop_guard()
    });
    let service: Arc<dyn SessionApi> = Arc::new(service);
    let server = SessionGrpc::new(service.clone(), cx.verifier.clone()).into_server();
    let grpc = GrpcService::new(GRPC_NAME, vec![Dependency::Database(db)], move |routes| {
        routes.add_service(server);
    });
    Ok(Wired {
        guard,
        ..Wired::serving(SessionClient::local(service), grpc)
    })
}
