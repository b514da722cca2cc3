//! The agent and model catalog: `agents.list`, `agent.identity.get` and
//! `models.list`.
//!
//! Agents: the one configured agent (`EdgeConfig::default_agent_id`, main key
//! `main_key`); it has no display name, avatar or emoji, so none is sent.
//! Models: what the runner is configured to call (`ListModels`, asked at each
//! call, so every answer is fresh): one OpenAI-compatible endpoint's model,
//! `provider` its host, `input` `["text"]` (runs send text only), `local` for
//! a loopback or private host, `available` when it can be called without
//! missing credentials (a key is set, or the host is local), tagged
//! `default` (every run uses it). No context window is configured, so none is
//! sent.
//!
//! `models.list` params (OpenClaw, closed): `provider` filters; `view`
//! (`default|configured|provider-config|all`) selects nothing different, since
//! the catalog is the configured model and it is the default; `agentId` and
//! `sessionKey` must name the configured agent (its models are all models);
//! `includeDetails`, `includeDefaultModels`, `refresh` and `preparedOnly` are
//! accepted and already true of every answer (details always included, the
//! default model always listed, read fresh from the runner, every listed model
//! is ready); `authProfileId` and `includeProviderCapabilities:true` are
//! refused (there are no auth profiles, no capability data). goclaw's code
//! registers no `models.list` (its seed names one): clawgate answers goclaw
//! clients the same `{models}` list.

use clawgate_proto::runner::{ListModelsRequest, Model, RunnerApi};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Method, Outcome, Request, Role, Runs, Scope, job};
use crate::params::Style;
use crate::session_key;
use crate::state::EdgeState;

/// `models.list` views (v4).
const VIEWS: [&str; 4] = ["default", "configured", "provider-config", "all"];

pub const METHODS: &[Method] = &[
    Method::call(
        "agents.list",
        Some(Scope::Read),
        Some(Role::Viewer),
        |request| {
            request.closed(&[])?;
            Ok(job(Call::AgentsList))
        },
    ),
    Method::call(
        "agent.identity.get",
        Some(Scope::Read),
        None,
        parse_identity,
    ),
    Method::call(
        "models.list",
        Some(Scope::Read),
        Some(Role::Viewer),
        parse_models,
    ),
];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    AgentsList,
    Identity,
    /// Models of `provider` (all when `None`).
    Models {
        provider: Option<String>,
    },
}

/// Fails unless `agent_id` (normalized) is the configured agent.
fn known_agent(request: &Request<'_>, agent_id: &str) -> Result<(), ServiceError> {
    let default = &request.config.default_agent_id;
    if session_key::normalize_agent_id(agent_id, "") == *default {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!(
            "unknown agent: {agent_id}"
        )))
    }
}

/// Checks `agentId` and `sessionKey` of `obj`: both must lead to the
/// configured agent.
fn check_agent_params(
    request: &Request<'_>,
    obj: &crate::params::Obj<'_>,
) -> Result<(), ServiceError> {
    if let Some(agent) = obj
        .opt_nonempty_str("agentId")
        .map_err(|why| request.invalid(why))?
    {
        known_agent(request, agent)?;
    }
    if let Some(key) = obj
        .opt_nonempty_str("sessionKey")
        .map_err(|why| request.invalid(why))?
    {
        let config = request.config;
        let canonical = session_key::canonicalize(key, &config.default_agent_id, &config.main_key)
            .map_err(|err| request.invalid(format!("sessionKey: {err}")))?;
        if let Some(agent) = session_key::agent_of(&canonical) {
            known_agent(request, agent)?;
        }
    }
    Ok(())
}

fn parse_identity(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&["agentId", "sessionKey"])?;
    check_agent_params(request, &obj)?;
    Ok(job(Call::Identity))
}

fn parse_models(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&[
        "agentId",
        "sessionKey",
        "authProfileId",
        "provider",
        "includeDetails",
        "includeProviderCapabilities",
        "includeDefaultModels",
        "preparedOnly",
        "refresh",
        "view",
    ])?;
    let invalid = |why| request.invalid(why);
    check_agent_params(request, &obj)?;
    for flag in [
        "includeDetails",
        "includeDefaultModels",
        "preparedOnly",
        "refresh",
    ] {
        obj.opt_bool(flag).map_err(invalid)?;
    }
    if obj
        .opt_bool("includeProviderCapabilities")
        .map_err(invalid)?
        == Some(true)
    {
        return Err(request
            .invalid("includeProviderCapabilities is not supported (no capability data)".into()));
    }
    if obj.has("authProfileId") {
        return Err(request.invalid("authProfileId is not supported (no auth profiles)".into()));
    }
    if obj.has("view") {
        obj.req_enum("view", &VIEWS).map_err(invalid)?;
    }
    let provider = obj
        .opt_nonempty_str("provider")
        .map_err(invalid)?
        .map(|p| p.trim().to_ascii_lowercase());
    Ok(job(Call::Models { provider }))
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
    let config = &state.config;
    let agent = &config.default_agent_id;
    match call {
        Call::AgentsList => match style {
            Style::Camel => Ok(json!({
                "defaultId": agent,
                "mainKey": config.main_key,
                "scope": "per-sender",
                "agents": [{ "id": agent, "kind": "agent" }],
            })),
            Style::Snake => {
                let models = models(state, principal).await?;
                let model = models.first();
                Ok(json!({
                    "agents": [{
                        "id": agent,
                        "name": agent,
                        "model": model.map(|m| m.id.as_str()).unwrap_or_default(),
                        "provider": model.map(|m| m.provider.as_str()).unwrap_or_default(),
                        "agentType": "open",
                        "status": "active",
                    }],
                }))
            }
        },
        Call::Identity => Ok(json!({ "agentId": agent })),
        Call::Models { provider } => {
            let models: Vec<Value> = models(state, principal)
                .await?
                .iter()
                .filter(|m| provider.as_deref().is_none_or(|p| m.provider == p))
                .map(model)
                .collect();
            Ok(json!({ "models": models }))
        }
    }
}

async fn models(state: &EdgeState, principal: &Principal) -> Result<Vec<Model>, ServiceError> {
    Ok(state
        .services
        .runner
        .list_models(principal, ListModelsRequest {})
        .await?
        .models)
}

/// One `models.list` entry.
fn model(model: &Model) -> Value {
    json!({
        "id": model.id,
        "name": model.id,
        "provider": model.provider,
        "input": ["text"],
        "local": model.local,
        "available": model.has_api_key || model.local,
        "tags": ["default"],
    })
}

#[cfg(test)]
mod tests {
    use clawgate_proto::principal::SCOPE_READ;

    use super::*;
    use crate::methods::decl::parse_with;

    fn parse(
        method: &'static str,
        params: Value,
    ) -> Result<Box<dyn super::super::Job>, ServiceError> {
        let principal = Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: "operator".into(),
            scopes: vec![SCOPE_READ.into()],
            ..Default::default()
        };
        let parse = match method {
            "models.list" => parse_models,
            _ => parse_identity,
        };
        parse_with(method, &params, Style::Camel, &principal, parse)
    }

    fn refusal(method: &'static str, params: Value) -> String {
        parse(method, params).err().expect("refused").message
    }

    #[test]
    fn models_list_params_filter_or_are_refused() {
        assert!(parse("models.list", json!({})).is_ok());
        assert!(
            parse(
                "models.list",
                json!({"view": "default", "includeDetails": true})
            )
            .is_ok()
        );
        assert!(
            parse(
                "models.list",
                json!({"view": "all", "provider": "x", "refresh": true})
            )
            .is_ok()
        );
        assert!(
            parse(
                "models.list",
                json!({"agentId": "main", "sessionKey": "agent:main:s"})
            )
            .is_ok()
        );
        assert!(
            refusal("models.list", json!({"view": "everything"}))
                .starts_with("invalid models.list params")
        );
        assert!(refusal("models.list", json!({"bogus": 1})).contains("'bogus'"));
        assert!(refusal("models.list", json!({"authProfileId": "p"})).contains("authProfileId"));
        assert!(
            refusal("models.list", json!({"includeProviderCapabilities": true}))
                .contains("includeProviderCapabilities")
        );
        assert!(parse("models.list", json!({"includeProviderCapabilities": false})).is_ok());
        assert_eq!(
            refusal("models.list", json!({"agentId": "other"})),
            "unknown agent: other"
        );
        assert_eq!(
            refusal("agent.identity.get", json!({"sessionKey": "agent:x:s"})),
            "unknown agent: x"
        );
        assert!(
            refusal("agent.identity.get", json!({"name": "x"}))
                .starts_with("invalid agent.identity.get params")
        );
        assert!(parse("agent.identity.get", json!({"sessionKey": "s"})).is_ok());
    }
}
