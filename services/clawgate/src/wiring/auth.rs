//! Wiring of the auth service: here, with its database, the gateway token,
//! the keyring sealing tenant secrets and the failed-auth lockout (shared
//! through Redis when the process has it); elsewhere, a lazily connecting
//! client.
//!
//! Invariants: the auth service never starts without a gateway token or a
//! database (devices, tokens and API keys must outlive the process and be
//! shared by every replica); the encryption key never appears in logs or
//! errors (a bad key is named by its position).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clawgate_auth::keyring::Keyring;
use clawgate_auth::{AuthConfig, AuthService};
use clawgate_proto::auth::{AuthApi, AuthClient, AuthGrpc};
use clawgate_runtime::limits::memory::MemoryAuthLimiter;
use clawgate_runtime::limits::redis::{RedisAuthLimiter, RedisLimits};
use clawgate_runtime::limits::{AuthLimitConfig, AuthLimiter};

use super::Plan;
use super::wired::{Context, GrpcService, Wired, here_or_there};
use crate::cli::{CommonArgs, Service};
use crate::database;
use crate::health::Dependency;

const GRPC_NAME: &str = "clawgate.auth.v1.AuthService";

pub async fn wire(cx: &Context<'_>) -> anyhow::Result<Wired<AuthClient>> {
    here_or_there(
        cx,
        Service::Auth,
        async || here(cx).await,
        |url| Ok(AuthClient::connect_lazy(url, cx.signer.clone())?),
    )
    .await
}

async fn here(cx: &Context<'_>) -> anyhow::Result<Wired<AuthClient>> {
    let plan = cx.plan;
    let Some(token) = plan.gateway_token.clone() else {
        bail!(
            "the auth service needs a gateway token: set --gateway-token (CLAWGATE_GATEWAY_TOKEN)"
        );
    };
    let keyring = keyring(&plan.common)?;
    if keyring.is_none() {
        tracing::warn!(
            "no CLAWGATE_ENCRYPTION_KEY: tenant secrets cannot be stored (secrets.set fails)"
        );
    }
    let config = AuthConfig {
        gateway_token: token,
        default_tenant_id: plan.common.default_tenant.clone(),
        default_user_id: plan.common.default_user.clone(),
        owner_ids: plan.common.owner_ids.clone(),
        auto_approve_local: plan.common.auth.pairing_auto_approve_local,
        keyring,
    };
    let url = plan
        .database_url
        .as_deref()
        .context("the auth service needs --database-url (CLAWGATE_DATABASE_URL)")?;
    let db = database::open(url, Service::Auth).await?;
    let dependencies = vec![Dependency::Database(db.clone())];
    let service = AuthService::from_database(db, config);
    if plan.migrate {
        service.migrate().await?;
    }
    let service: Arc<dyn AuthApi> = Arc::new(service.with_limiter(auth_limiter(plan)));
    let server = AuthGrpc::new(service.clone(), cx.verifier.clone()).into_server();
    let grpc = GrpcService::new(GRPC_NAME, dependencies, move |routes| {
        routes.add_service(server);
    });
    Ok(Wired::serving(AuthClient::local(service), grpc))
}

/// The failed-auth lockout from the flags: in Redis when the process has it.
fn auth_limiter(plan: &Plan) -> Arc<dyn AuthLimiter> {
    let flags = &plan.common.auth;
    let config = AuthLimitConfig {
        max_failures: flags.auth_max_failures,
        window: Duration::from_millis(flags.auth_failure_window_ms),
        lockout: Duration::from_millis(flags.auth_lockout_ms),
        exempt_loopback: !flags.auth_limit_loopback,
        ..AuthLimitConfig::default()
    };
    match &plan.redis {
        Some(redis) => Arc::new(RedisAuthLimiter::new(RedisLimits::new(redis), config)),
        None => Arc::new(MemoryAuthLimiter::new(config)),
    }
}

/// The keyring of `CLAWGATE_ENCRYPTION_KEY`, if one is configured. The error
/// names the position of a bad key, never a key.
fn keyring(common: &CommonArgs) -> anyhow::Result<Option<Keyring>> {
    let Some(spec) = common
        .encryption_key
        .as_ref()
        .filter(|key| !key.expose().trim().is_empty())
    else {
        return Ok(None);
    };
    let keyring = Keyring::from_config(spec.expose())
        .context("invalid CLAWGATE_ENCRYPTION_KEY (--encryption-key)")?;
    tracing::info!(key_id = %keyring.active_key_id(), "tenant secrets sealed with the configured key");
    Ok(Some(keyring))
}
