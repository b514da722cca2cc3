//! A tenant's own model providers (`TenantProvider` rows of the session
//! service) as one [`ModelProvider`] that routes each request to the provider
//! serving its model ([`Routed`]), with their API keys read from the tenant's
//! sealed secrets through the auth service (`RevealSecret`, as the runner's
//! own principal).
//!
//! Model names: `<provider id>/<model>` names one provider's model; a bare
//! name is served by the first provider listing it, else by the first
//! provider. A run's candidates are qualified ([`Routed::qualify`]), so
//! failover moves between providers and cooldowns are per provider and
//! model (and per tenant: see `run.rs`).
//!
//! Invariants: a tenant with no provider of its own uses the runner's
//! configured one (the operator's default); a key is revealed only for the
//! tenant whose run needs it, kept in memory at most [`KEY_TTL`] and never
//! logged; a provider whose key secret is missing fails its calls with an
//! authentication error naming the secret (other providers still serve);
//! built clients are reused while a provider's row and key are unchanged (at
//! most [`MAX_CLIENTS`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::auth::{AuthApi as _, AuthClient, RevealSecretRequest};
use clawgate_proto::principal::ROLE_RUNNER;
use clawgate_proto::session::{
    Agent, ListProvidersRequest, SessionApi as _, SessionClient, TenantProvider,
};
use clawgate_proto::{Principal, ServiceError};
use tokio::time::Instant;

use super::{
    AnthropicProvider, ModelProvider, ModelRequest, ModelStream, OpenAiProvider, ProviderError,
    ProviderErrorKind,
};
use crate::config::{ProviderConfig, ProviderKind, ProviderTimeouts};

/// How long a revealed key is reused before it is read again.
pub const KEY_TTL: Duration = Duration::from_secs(30);
/// Most built provider clients kept.
pub const MAX_CLIENTS: usize = 1024;

/// One provider of a tenant, ready to call (or why not).
struct Route {
    id: String,
    models: Vec<String>,
    target: Result<Arc<dyn ModelProvider>, ProviderError>,
}

/// A tenant's providers as one provider.
pub(crate) struct Routed {
    routes: Vec<Route>,
    system: String,
    default_model: String,
}

impl Routed {
    /// `model` as `<provider id>/<model>`.
    pub fn qualify(&self, model: &str) -> String {
        if let Some((id, _)) = model.split_once('/')
            && self.routes.iter().any(|route| route.id == id)
        {
            return model.to_owned();
        }
        let route = self
            .routes
            .iter()
            .find(|route| route.models.iter().any(|known| known == model))
            .or(self.routes.first());
        match route {
            Some(route) => format!("{}/{model}", route.id),
            None => model.to_owned(),
        }
    }
}

#[async_trait]
impl ModelProvider for Routed {
    fn system(&self) -> &str {
        &self.system
    }

    fn model(&self) -> &str {
        &self.default_model
    }

    async fn stream(&self, mut request: ModelRequest) -> Result<ModelStream, ProviderError> {
        let qualified = self.qualify(request.model.as_deref().unwrap_or(&self.default_model));
        let (id, model) = qualified
            .split_once('/')
            .ok_or_else(|| ProviderError::new(ProviderErrorKind::Unknown, "no provider"))?;
        let route = self
            .routes
            .iter()
            .find(|route| route.id == id)
            .ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::Unknown,
                    format!("unknown provider: {id}"),
                )
            })?;
        let target = route.target.as_ref().map_err(Clone::clone)?;
        request.model = Some(model.to_owned());
        target.stream(request).await
    }
}

/// What a run calls: its provider, its agent's models in failover order, and
/// the scope of their cooldowns.
pub(crate) struct Models {
    pub provider: Arc<dyn ModelProvider>,
    /// The agent's model (`None`: the provider's own).
    pub model: Option<String>,
    pub fallbacks: Vec<String>,
    /// Cooldowns of a tenant's own providers are that tenant's alone.
    pub cooldown_scope: String,
}

impl Models {
    /// The models of a run of `agent`: on its tenant's providers when it has
    /// some (`routed`), else on the runner's own provider (`global`).
    pub fn of(
        routed: Option<Arc<Routed>>,
        agent: &Agent,
        global: impl FnOnce() -> Result<Arc<dyn ModelProvider>, ServiceError>,
        tenant_id: &str,
    ) -> Result<Self, ServiceError> {
        let Some(routed) = routed else {
            return Ok(Self {
                provider: global()?,
                model: (!agent.model.is_empty()).then(|| agent.model.clone()),
                fallbacks: agent.fallbacks.clone(),
                cooldown_scope: String::new(),
            });
        };
        let model = match agent.model.as_str() {
            "" => routed.model().to_owned(),
            model => routed.qualify(model),
        };
        Ok(Self {
            model: Some(model),
            fallbacks: agent.fallbacks.iter().map(|f| routed.qualify(f)).collect(),
            cooldown_scope: tenant_id.to_owned(),
            provider: routed,
        })
    }
}

/// A secret as last revealed (when, and its value; `None`: not set).
type Revealed = (Instant, Option<String>);

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    tenant_id: String,
    provider_id: String,
    updated_at_ms: i64,
    /// Part of the key so a rotated secret gets a new client; memory only.
    api_key: Option<String>,
}

/// Builds and caches the providers of tenants.
pub(crate) struct TenantProviders {
    auth: Option<AuthClient>,
    timeouts: ProviderTimeouts,
    clients: Mutex<HashMap<ClientKey, Arc<dyn ModelProvider>>>,
    keys: Mutex<HashMap<(String, String), Revealed>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TenantProviders {
    pub fn new(auth: Option<AuthClient>, timeouts: ProviderTimeouts) -> Self {
        Self {
            auth,
            timeouts,
            clients: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's configured providers (empty: it has none).
    pub async fn list(
        session: &SessionClient,
        principal: &Principal,
    ) -> Result<Vec<TenantProvider>, ServiceError> {
        Ok(session
            .list_providers(principal, ListProvidersRequest {})
            .await?
            .providers)
    }

    /// The providers of `principal`'s tenant as one, or `None` when it has
    /// none of its own.
    pub async fn for_run(
        &self,
        session: &SessionClient,
        principal: &Principal,
    ) -> Result<Option<Arc<Routed>>, ServiceError> {
        let providers = Self::list(session, principal).await?;
        if providers.is_empty() {
            return Ok(None);
        }
        let mut routes = Vec::with_capacity(providers.len());
        for provider in &providers {
            let target = self.target(&principal.tenant_id, provider).await;
            routes.push(Route {
                id: provider.provider_id.clone(),
                models: provider.models.clone(),
                target,
            });
        }
        let first = &providers[0];
        let system = match first.kind.as_str() {
            "anthropic" => "anthropic",
            _ => "openai",
        };
        Ok(Some(Arc::new(Routed {
            default_model: format!(
                "{}/{}",
                first.provider_id,
                first.models.first().cloned().unwrap_or_default()
            ),
            system: system.to_owned(),
            routes,
        })))
    }

    async fn target(
        &self,
        tenant_id: &str,
        provider: &TenantProvider,
    ) -> Result<Arc<dyn ModelProvider>, ProviderError> {
        let api_key = if provider.api_key_secret.is_empty() {
            None
        } else {
            let key = self.key(tenant_id, &provider.api_key_secret).await?;
            Some(key.ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::Auth,
                    format!(
                        "provider {}: its API key secret {} is not set",
                        provider.provider_id, provider.api_key_secret
                    ),
                )
            })?)
        };
        let cache_key = ClientKey {
            tenant_id: tenant_id.to_owned(),
            provider_id: provider.provider_id.clone(),
            updated_at_ms: provider.updated_at_ms,
            api_key: api_key.clone(),
        };
        if let Some(client) = lock(&self.clients).get(&cache_key) {
            return Ok(client.clone());
        }
        let kind = ProviderKind::parse(&provider.kind).unwrap_or_default();
        let config = ProviderConfig {
            kind,
            base_url: provider.base_url.clone(),
            api_key,
            model: provider.models.first().cloned().unwrap_or_default(),
        };
        let client: Arc<dyn ModelProvider> = match kind {
            ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(config, self.timeouts)?),
            ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(config, self.timeouts)?),
        };
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(cache_key, client.clone());
        Ok(client)
    }

    /// The value of secret `name` of `tenant_id` (`None`: not set).
    async fn key(&self, tenant_id: &str, name: &str) -> Result<Option<String>, ProviderError> {
        let slot = (tenant_id.to_owned(), name.to_owned());
        if let Some((at, value)) = lock(&self.keys).get(&slot)
            && at.elapsed() < KEY_TTL
        {
            return Ok(value.clone());
        }
        let Some(auth) = &self.auth else {
            return Err(ProviderError::new(
                ProviderErrorKind::Auth,
                "this runner cannot read tenant secrets (no auth service configured)",
            ));
        };
        let runner = Principal {
            tenant_id: tenant_id.to_owned(),
            user_id: "runner".to_owned(),
            role: ROLE_RUNNER.to_owned(),
            ..Principal::default()
        };
        let revealed = auth
            .reveal_secret(
                &runner,
                RevealSecretRequest {
                    name: name.to_owned(),
                },
            )
            .await
            .map_err(|err| {
                ProviderError::new(
                    ProviderErrorKind::Auth,
                    format!("the API key secret {name} cannot be read: {}", err.message),
                )
            })?;
        let value = revealed.found.then_some(revealed.value);
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_CLIENTS {
            keys.clear();
        }
        keys.insert(slot, (Instant::now(), value.clone()));
        Ok(value)
    }
}
