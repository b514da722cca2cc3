//! The model providers of a tenant: the rules of their settings and the calls
//! behind [`SessionApi`](clawgate_proto::session::SessionApi)'s provider RPCs.
//!
//! They live here beside the agents whose models they serve, so a runner reads
//! both through the one client it already has. A provider names the tenant
//! secret holding its API key; the key itself stays sealed in the auth
//! service, which reveals it to runners only.
//!
//! Invariants:
//! - Any member of a tenant reads its providers (runs need them); only
//!   tenant-wide access (admins, owners) changes them. Nothing crosses tenants.
//! - A stored provider satisfies [`check`]: an id of `[a-z0-9][a-z0-9_-]*`
//!   (≤ 64), kind `openai` or `anthropic`, an http(s) base URL without user
//!   info, query or fragment, 1 to [`MAX_MODELS`] distinct model names without
//!   whitespace or `/`, and a secret name of `[A-Za-z0-9_.-]{1,64}` or none.

use clawgate_proto::session::{
    DeleteProviderRequest, DeleteProviderResponse, ListProvidersResponse, PutProviderRequest,
    TenantProvider,
};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;

use crate::agents::agent_id;
use crate::store::Store;

/// Most models one provider lists.
pub const MAX_MODELS: usize = 32;
/// Most providers one tenant has.
pub const MAX_PROVIDERS: usize = 16;
const MAX_URL_CHARS: usize = 2048;
const MAX_MODEL_CHARS: usize = 256;
const MAX_SECRET_NAME: usize = 64;

/// NOT_FOUND for a provider the tenant does not have.
fn unknown_provider(id: &str) -> ServiceError {
    ServiceError::not_found(format!("unknown provider: {id}"))
}

fn managed_tenant(principal: &Principal) -> Result<&str, ServiceError> {
    principal.require()?;
    if !principal.sees_tenant() {
        return Err(ServiceError::forbidden(
            "changing providers needs admin access",
        ));
    }
    Ok(&principal.tenant_id)
}

fn base_url(url: &str) -> Result<(), ServiceError> {
    let bad = |why: &str| ServiceError::invalid(format!("invalid baseUrl: {why}"));
    if url.len() > MAX_URL_CHARS {
        return Err(bad("too long"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("expected an http(s) URL"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(bad("expected an http(s) URL"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("user info is not allowed (put the key in a secret)"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no query, fragment or whitespace"));
    }
    Ok(())
}

/// Checks a provider's settings.
pub fn check(provider: &TenantProvider) -> Result<(), ServiceError> {
    agent_id(&provider.provider_id).map_err(|_| {
        ServiceError::invalid(
            "invalid provider id: expected [a-z0-9][a-z0-9_-]*, at most 64 characters",
        )
    })?;
    if !matches!(provider.kind.as_str(), "openai" | "anthropic") {
        return Err(ServiceError::invalid(
            "invalid kind: expected openai or anthropic",
        ));
    }
    base_url(&provider.base_url)?;
    if provider.models.is_empty() || provider.models.len() > MAX_MODELS {
        return Err(ServiceError::invalid(format!(
            "models: expected 1 to {MAX_MODELS} model names"
        )));
    }
    for (index, model) in provider.models.iter().enumerate() {
        let ok = !model.is_empty()
            && model.chars().count() <= MAX_MODEL_CHARS
            && !model.contains('/')
            && !model.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ServiceError::invalid(format!(
                "invalid model name {model:?}: no whitespace or '/', at most {MAX_MODEL_CHARS} characters"
            )));
        }
        if provider.models[..index].contains(model) {
            return Err(ServiceError::invalid(format!(
                "model {model:?} is listed twice"
            )));
        }
    }
    let secret = &provider.api_key_secret;
    let secret_ok = secret.is_empty()
        || (secret.len() <= MAX_SECRET_NAME
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
    if !secret_ok {
        return Err(ServiceError::invalid(
            "invalid apiKeySecret: expected a secret name [A-Za-z0-9_.-]{1,64}",
        ));
    }
    Ok(())
}

pub(crate) async fn list(
    store: &Store,
    principal: &Principal,
) -> Result<ListProvidersResponse, ServiceError> {
    principal.require()?;
    let providers = store.list_providers(&principal.tenant_id).await?;
    Ok(ListProvidersResponse { providers })
}

pub(crate) async fn put(
    store: &Store,
    principal: &Principal,
    request: PutProviderRequest,
) -> Result<TenantProvider, ServiceError> {
    let tenant = managed_tenant(principal)?;
    let mut provider = request
        .provider
        .ok_or_else(|| ServiceError::invalid("a provider is required"))?;
    provider.tenant_id = tenant.to_owned();
    provider.base_url = provider.base_url.trim().trim_end_matches('/').to_owned();
    check(&provider)?;
    let existing = store.list_providers(tenant).await?;
    let replaces = existing
        .iter()
        .any(|known| known.provider_id == provider.provider_id);
    if !replaces && existing.len() >= MAX_PROVIDERS {
        return Err(ServiceError::invalid(format!(
            "a tenant has at most {MAX_PROVIDERS} providers"
        )));
    }
    let now = now_ms();
    provider.created_at_ms = now;
    provider.updated_at_ms = now;
    store.put_provider(&provider).await
}

pub(crate) async fn delete(
    store: &Store,
    principal: &Principal,
    request: DeleteProviderRequest,
) -> Result<DeleteProviderResponse, ServiceError> {
    let tenant = managed_tenant(principal)?;
    if store.delete_provider(tenant, &request.provider_id).await? {
        Ok(DeleteProviderResponse { deleted: true })
    } else {
        Err(unknown_provider(&request.provider_id))
    }
}
