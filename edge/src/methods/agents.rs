//! The agent and model catalog: `agents.list`, `agent.identity.get` and
//! `models.list`.
//!
//! Agents: the tenant's agents as the session service keeps them
//! (`ListAgents`, `GetAgent`; the default one always there), read at each
//! call. OpenClaw rows carry `identity` (name, emoji, avatar), `workspace`
//! and `model {primary, fallbacks}` only where the agent sets them; goclaw
//! rows show each agent's model, or the provider's when it sets none.
//! `agent.identity.get` answers the agent named by `agentId`, else by the
//! `sessionKey`'s agent, else the default one, with `avatarStatus` telling
//! what the avatar is (`remote` URL, `data` URI, `none`); an agent the tenant
//! lacks is NOT_FOUND `unknown agent: <id>`.
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
//! `sessionKey` must name an agent of the tenant (its models are all models);
//! `includeDetails`, `includeDefaultModels`, `refresh` and `preparedOnly` are
//! accepted and already true of every answer (details always included, the
//! default model always listed, read fresh from the runner, every listed model
//! is ready); `authProfileId` and `includeProviderCapabilities:true` are
//! refused (there are no auth profiles, no capability data). goclaw's code
//! registers no `models.list` (its seed names one): clawgate answers goclaw
//! clients the same `{models}` list.

use clawgate_proto::runner::{ListModelsRequest, Model, RunnerApi};
use clawgate_proto::session::{Agent, GetAgentRequest, ListAgentsRequest, SessionApi};
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
        Some(Role::Viewer),
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
    /// The identity of `agent` (the default one when `None`).
    Identity {
        agent: Option<String>,
    },
    /// Models of `provider` (all when `None`), asked for `agent` (which must
    /// exist) when one is named.
    Models {
        provider: Option<String>,
        agent: Option<String>,
    },
}

/// The agent `agentId` or `sessionKey` of `obj` names (normalized), the
/// former first; `None` when neither names one.
pub(super) fn agent_param(
    request: &Request<'_>,
    obj: &crate::params::Obj<'_>,
) -> Result<Option<String>, ServiceError> {
    let config = request.config;
    let agent = obj
        .opt_nonempty_str("agentId")
        .map_err(|why| request.invalid(why))?
        .map(|agent| session_key::normalize_agent_id(agent, ""));
    let from_key = match obj
        .opt_nonempty_str("sessionKey")
        .map_err(|why| request.invalid(why))?
    {
        Some(key) => {
            let canonical =
                session_key::canonicalize(key, &config.default_agent_id, &config.main_key)
                    .map_err(|err| request.invalid(format!("sessionKey: {err}")))?;
            session_key::agent_of(&canonical).map(str::to_owned)
        }
        None => None,
    };
    match agent {
        // A name that normalizes to nothing is no agent's.
        Some(agent) if agent.is_empty() => Err(ServiceError::not_found(format!(
            "unknown agent: {}",
            obj.opt_str("agentId").ok().flatten().unwrap_or_default()
        ))),
        Some(agent) => Ok(Some(agent)),
        None => Ok(from_key),
    }
}

fn parse_identity(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&["agentId", "sessionKey"])?;
    let agent = agent_param(request, &obj)?;
    Ok(job(Call::Identity { agent }))
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
    let agent = agent_param(request, &obj)?;
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
    Ok(job(Call::Models { provider, agent }))
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
        Call::AgentsList => {
            let listed = session.list_agents(principal, ListAgentsRequest {}).await?;
            match style {
                Style::Camel => Ok(json!({
                    "defaultId": listed.default_agent_id,
                    "mainKey": state.config.main_key,
                    "scope": "per-sender",
                    "agents": listed.agents.iter().map(openclaw_row).collect::<Vec<_>>(),
                })),
                Style::Snake => {
                    let models = models(state, principal).await?;
                    let fallback = models.first();
                    let rows: Vec<Value> = listed
                        .agents
                        .iter()
                        .map(|agent| {
                            let model = if agent.model.is_empty() {
                                fallback.map(|m| m.id.as_str()).unwrap_or_default()
                            } else {
                                agent.model.as_str()
                            };
                            json!({
                                "id": agent.agent_id,
                                "name": display_name(agent),
                                "model": model,
                                "provider": fallback.map(|m| m.provider.as_str()).unwrap_or_default(),
                                "agentType": "open",
                                "status": "active",
                            })
                        })
                        .collect();
                    Ok(json!({ "agents": rows }))
                }
            }
        }
        Call::Identity { agent } => {
            let agent = agent_named(state, principal, agent).await?;
            Ok(identity(&agent))
        }
        Call::Models { provider, agent } => {
            if agent.is_some() {
                agent_named(state, principal, agent).await?;
            }
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

/// The tenant's agent `agent` (the default one for `None`); NOT_FOUND
/// `unknown agent: …` when it has none of that id.
async fn agent_named(
    state: &EdgeState,
    principal: &Principal,
    agent: Option<String>,
) -> Result<Agent, ServiceError> {
    let agent_id = agent.unwrap_or_else(|| state.config.default_agent_id.clone());
    state
        .services
        .session
        .get_agent(principal, GetAgentRequest { agent_id })
        .await
}

/// An agent's name, or its id when it has none.
fn display_name(agent: &Agent) -> &str {
    if agent.name.is_empty() {
        &agent.agent_id
    } else {
        &agent.name
    }
}

/// `identity` of an OpenClaw roster row, or `None` when the agent sets none.
fn identity_fields(agent: &Agent) -> Option<Value> {
    let mut identity = serde_json::Map::new();
    for (key, value) in [
        ("name", &agent.name),
        ("emoji", &agent.emoji),
        ("avatar", &agent.avatar),
    ] {
        if !value.is_empty() {
            identity.insert(key.to_owned(), json!(value));
        }
    }
    (!identity.is_empty()).then_some(Value::Object(identity))
}

/// One `agents.list` row (OpenClaw).
fn openclaw_row(agent: &Agent) -> Value {
    let mut row = json!({ "id": agent.agent_id, "kind": "agent" });
    if !agent.name.is_empty() {
        row["name"] = json!(agent.name);
    }
    if let Some(identity) = identity_fields(agent) {
        row["identity"] = identity;
    }
    if !agent.workspace.is_empty() {
        row["workspace"] = json!(agent.workspace);
    }
    if !agent.model.is_empty() || !agent.fallbacks.is_empty() {
        let mut model = json!({ "fallbacks": agent.fallbacks });
        if !agent.model.is_empty() {
            model["primary"] = json!(agent.model);
        }
        row["model"] = model;
    }
    row
}

/// `agent.identity.get`'s answer.
fn identity(agent: &Agent) -> Value {
    let mut answer = json!({ "agentId": agent.agent_id });
    if !agent.name.is_empty() {
        answer["name"] = json!(agent.name);
    }
    if !agent.emoji.is_empty() {
        answer["emoji"] = json!(agent.emoji);
    }
    let status = if agent.avatar.is_empty() {
        "none"
    } else if agent.avatar.to_ascii_lowercase().starts_with("data:") {
        "data"
    } else {
        "remote"
    };
    if !agent.avatar.is_empty() {
        answer["avatar"] = json!(agent.avatar);
    }
    answer["avatarStatus"] = json!(status);
    answer
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
            refusal("models.list", json!({"agentId": "!!"})),
            "unknown agent: !!"
        );
        assert!(
            refusal("agent.identity.get", json!({"name": "x"}))
                .starts_with("invalid agent.identity.get params")
        );
        assert!(parse("agent.identity.get", json!({"sessionKey": "s"})).is_ok());
    }
}
