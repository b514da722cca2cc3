//! A tenant's own model providers, for both dialects (clawgate extensions):
//! `providers.list`, `providers.set {id, kind, baseUrl, models, apiKeySecret?}`
//! (goclaw: `id, kind, base_url, models, api_key_secret`) and
//! `providers.delete {id}`. The session service keeps them and checks them;
//! runs of the tenant's agents then call these providers (a model named
//! `<id>/<model>`, or a bare name one of them lists) instead of the
//! gateway's configured one, and `models.list` shows their models.
//!
//! Answers: a provider is `{id, kind, baseUrl, models, apiKeySecret,
//! createdAtMs, updatedAtMs}` (goclaw snake_case); the list is `{providers:
//! [...]}`; delete answers `{deleted, id}`.
//!
//! Invariants: the API key is never a param nor in an answer (only the name
//! of the tenant secret holding it, set with `secrets.set`); every method is
//! for admins; OpenClaw params are closed objects, goclaw ones lenient.

use clawgate_proto::session::{
    DeleteProviderRequest, ListProvidersRequest, PutProviderRequest, SessionApi as _,
    TenantProvider,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::params::{Obj, Style};
use crate::state::EdgeState;

const MAX_ID_CHARS: usize = 64;
const MAX_URL_CHARS: usize = 2048;
const MAX_SECRET_CHARS: usize = 64;

pub const METHODS: &[Method] = &[
    Method::call(
        "providers.list",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "providers.set",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "providers.delete",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
];

/// A validated call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    List,
    Set(TenantProvider),
    Delete { id: String },
}

fn name(style: Style, camel: &'static str, snake: &'static str) -> &'static str {
    match style {
        Style::Camel => camel,
        Style::Snake => snake,
    }
}

/// Validates `params` of `method`; `Ok(None)` when it is not a provider method.
pub fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| ServiceError::invalid(format!("invalid {method} params: {why}"));
    let obj = Obj::new(params, "").map_err(bad)?;
    let closed = |allowed: &[&str]| match style {
        Style::Camel => obj.closed(allowed).map_err(bad),
        Style::Snake => Ok(()),
    };
    let (base_url, secret) = (
        name(style, "baseUrl", "base_url"),
        name(style, "apiKeySecret", "api_key_secret"),
    );
    let call = match method {
        "providers.list" => {
            closed(&[])?;
            Call::List
        }
        "providers.set" => {
            closed(&["id", "kind", "baseUrl", "models", "apiKeySecret"])?;
            let id = obj.req_str_len("id", MAX_ID_CHARS).map_err(bad)?;
            let kind = obj
                .req_enum("kind", &["openai", "anthropic"])
                .map_err(bad)?;
            let url = obj.req_str_len(base_url, MAX_URL_CHARS).map_err(bad)?;
            let models = obj
                .opt_str_array("models")
                .map_err(bad)?
                .ok_or_else(|| bad("must have required property 'models'".to_owned()))?;
            let api_key_secret = obj
                .opt_str_len(secret, MAX_SECRET_CHARS)
                .map_err(bad)?
                .unwrap_or_default();
            Call::Set(TenantProvider {
                provider_id: id.trim().to_owned(),
                kind: kind.to_owned(),
                base_url: url.trim().to_owned(),
                models,
                api_key_secret: api_key_secret.trim().to_owned(),
                ..Default::default()
            })
        }
        "providers.delete" => {
            closed(&["id"])?;
            let id = obj.req_str_len("id", MAX_ID_CHARS).map_err(bad)?;
            Call::Delete {
                id: id.trim().to_owned(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

fn parse_call(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    declared(parse(request.method, request.params, request.style)?)
}

/// A provider as both dialects show it.
pub fn provider_json(provider: &TenantProvider, style: Style) -> Value {
    let fields = [
        ("id", "id", json!(provider.provider_id)),
        ("kind", "kind", json!(provider.kind)),
        ("baseUrl", "base_url", json!(provider.base_url)),
        ("models", "models", json!(provider.models)),
        (
            "apiKeySecret",
            "api_key_secret",
            json!(provider.api_key_secret),
        ),
        (
            "createdAtMs",
            "created_at_ms",
            json!(provider.created_at_ms),
        ),
        (
            "updatedAtMs",
            "updated_at_ms",
            json!(provider.updated_at_ms),
        ),
    ];
    Value::Object(style.object(fields))
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal, style).await.into()
    }
}

async fn run(
    call: Call,
    state: &EdgeState,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    let session = &state.services.session;
    match call {
        Call::List => {
            let listed = session
                .list_providers(principal, ListProvidersRequest {})
                .await?;
            let providers: Vec<Value> = listed
                .providers
                .iter()
                .map(|provider| provider_json(provider, style))
                .collect();
            Ok(json!({ "providers": providers }))
        }
        Call::Set(provider) => session
            .put_provider(
                principal,
                PutProviderRequest {
                    provider: Some(provider),
                },
            )
            .await
            .map(|stored| provider_json(&stored, style)),
        Call::Delete { id } => {
            let deleted = session
                .delete_provider(
                    principal,
                    DeleteProviderRequest {
                        provider_id: id.clone(),
                    },
                )
                .await?;
            Ok(json!({ "deleted": deleted.deleted, "id": id }))
        }
    }
}
