//! The agents of a tenant: the rules of their settings, the default agent, and
//! the calls behind [`SessionApi`](clawgate_proto::session::SessionApi)'s agent
//! RPCs.
//!
//! Agents live here, beside the sessions whose keys name them
//! (`agent:<id>:…`): runners stay stateless (they read an agent when a run
//! starts, through the same client they append transcripts with) and the
//! service that owns the sessions can refuse keys of agents a tenant lacks.
//!
//! Invariants:
//! - Every tenant has its default agent ([`DEFAULT_AGENT_ID`]): without a row
//!   it is [`default_agent`]; its first change stores it; it is never deleted.
//! - Any member of a tenant reads its agents; only tenant-wide access (admins,
//!   owners) creates, changes or deletes them. Nothing crosses tenants.
//! - A stored agent always satisfies [`apply`]'s rules: an id of
//!   `[a-z0-9][a-z0-9_-]*` (≤ 64), bounded texts, an avatar that is an
//!   http(s) or `data:image/` URI, a relative workspace that cannot climb out
//!   of its root, tool names of `[a-z][a-z0-9_.-]*`, limits within range.

use clawgate_proto::session::{
    Agent, AgentSettings, AllowExecRequest, CreateAgentRequest, DeleteAgentRequest,
    DeleteAgentResponse, ListAgentsResponse, UpdateAgentRequest,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::clock::now_ms;

use crate::store::Store;

/// Every tenant's default agent.
pub const DEFAULT_AGENT_ID: &str = "main";
/// Tool-requesting model calls of one run, when an agent sets none.
pub const DEFAULT_MAX_TOOL_STEPS: u32 = 16;
pub const MAX_TOOL_STEPS: u32 = 100;
/// A run's time limit when an agent sets none, and its bounds.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;
pub const MIN_TIMEOUT_MS: u64 = 1_000;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
const MAX_AGENT_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 128;
const MAX_EMOJI_CHARS: usize = 16;
const MAX_AVATAR_BYTES: usize = 64 * 1024;
const MAX_WORKSPACE_CHARS: usize = 256;
const MAX_MODEL_CHARS: usize = 256;
const MAX_FALLBACKS: usize = 8;
const MAX_SYSTEM_PROMPT_BYTES: usize = 64 * 1024;
const MAX_TOOLS: usize = 64;
const MAX_TOOL_NAME_CHARS: usize = 64;
/// Most commands one agent allows without asking.
pub const MAX_EXEC_ALLOWLIST: usize = 256;
const MAX_EXEC_COMMAND_BYTES: usize = 8 * 1024;

/// The default agent of `tenant` before its first change.
pub fn default_agent(tenant: &str) -> Agent {
    Agent {
        tenant_id: tenant.to_owned(),
        agent_id: DEFAULT_AGENT_ID.to_owned(),
        max_tool_steps: DEFAULT_MAX_TOOL_STEPS,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        is_default: true,
        stored: false,
        ..Agent::default()
    }
}

/// NOT_FOUND for an agent the tenant does not have.
pub fn unknown_agent(agent_id: &str) -> ServiceError {
    ServiceError::not_found(format!("unknown agent: {agent_id}"))
}

fn tenant(principal: &Principal) -> Result<&str, ServiceError> {
    principal.require()?;
    Ok(&principal.tenant_id)
}

/// The tenant of a principal that may change its agents.
fn managed_tenant(principal: &Principal) -> Result<&str, ServiceError> {
    let tenant = tenant(principal)?;
    if !principal.sees_tenant() {
        return Err(ServiceError::forbidden(
            "changing agents needs admin access",
        ));
    }
    Ok(tenant)
}

/// An agent id as stored: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub fn agent_id(id: &str) -> Result<(), ServiceError> {
    let mut chars = id.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || id.len() > MAX_AGENT_ID_CHARS {
        return Err(ServiceError::invalid(format!(
            "invalid agent id {:?}: expected [a-z0-9][a-z0-9_-]*, at most {MAX_AGENT_ID_CHARS} characters",
            id.chars().take(MAX_AGENT_ID_CHARS + 1).collect::<String>()
        )));
    }
    Ok(())
}

fn text(field: &str, value: &str, max_chars: usize) -> Result<(), ServiceError> {
    if value.chars().count() > max_chars {
        return Err(ServiceError::invalid(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) && field != "system_prompt" {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    if value.contains('\0') {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain NUL"
        )));
    }
    Ok(())
}

fn avatar(value: &str) -> Result<(), ServiceError> {
    if value.len() > MAX_AVATAR_BYTES {
        return Err(ServiceError::invalid(format!(
            "avatar is larger than {MAX_AVATAR_BYTES} bytes"
        )));
    }
    text("avatar", value, usize::MAX)?;
    let lower = value.get(..11).unwrap_or(value).to_ascii_lowercase();
    let url = lower.starts_with("https://") || lower.starts_with("http://");
    if !value.is_empty() && !url && !lower.starts_with("data:image/") {
        return Err(ServiceError::invalid(
            "avatar must be an http(s) URL or a data:image/ URI",
        ));
    }
    Ok(())
}

/// A workspace: relative, `/`-separated, no `.`/`..` segments, no backslash.
fn workspace(value: &str) -> Result<(), ServiceError> {
    text("workspace", value, MAX_WORKSPACE_CHARS)?;
    if value.is_empty() {
        return Ok(());
    }
    let climbs = value
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if value.starts_with('/') || value.contains('\\') || climbs {
        return Err(ServiceError::invalid(
            "workspace must be a relative path without empty, '.' or '..' segments",
        ));
    }
    Ok(())
}

fn tool_name(name: &str) -> Result<(), ServiceError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > MAX_TOOL_NAME_CHARS {
        return Err(ServiceError::invalid(format!(
            "invalid tool name {:?}: expected [a-z][a-z0-9_.-]*, at most {MAX_TOOL_NAME_CHARS} characters",
            name.chars()
                .take(MAX_TOOL_NAME_CHARS + 1)
                .collect::<String>()
        )));
    }
    Ok(())
}

/// Sets what `settings` gives on `agent`, checking every rule.
pub fn apply(agent: &mut Agent, settings: AgentSettings) -> Result<(), ServiceError> {
    if let Some(name) = settings.name {
        text("name", &name, MAX_NAME_CHARS)?;
        agent.name = name.trim().to_owned();
    }
    if let Some(emoji) = settings.emoji {
        text("emoji", &emoji, MAX_EMOJI_CHARS)?;
        agent.emoji = emoji.trim().to_owned();
    }
    if let Some(value) = settings.avatar {
        avatar(value.trim())?;
        agent.avatar = value.trim().to_owned();
    }
    if let Some(value) = settings.workspace {
        workspace(value.trim())?;
        agent.workspace = value.trim().to_owned();
    }
    if let Some(model) = settings.model {
        text("model", &model, MAX_MODEL_CHARS)?;
        agent.model = model.trim().to_owned();
    }
    if let Some(fallbacks) = settings.fallbacks {
        if fallbacks.items.len() > MAX_FALLBACKS {
            return Err(ServiceError::invalid(format!(
                "at most {MAX_FALLBACKS} fallback models"
            )));
        }
        let mut models = Vec::with_capacity(fallbacks.items.len());
        for model in fallbacks.items {
            text("fallback model", &model, MAX_MODEL_CHARS)?;
            let model = model.trim().to_owned();
            if model.is_empty() {
                return Err(ServiceError::invalid("a fallback model must not be empty"));
            }
            if !models.contains(&model) {
                models.push(model);
            }
        }
        agent.fallbacks = models;
    }
    if let Some(prompt) = settings.system_prompt {
        if prompt.len() > MAX_SYSTEM_PROMPT_BYTES {
            return Err(ServiceError::invalid(format!(
                "system_prompt is larger than {MAX_SYSTEM_PROMPT_BYTES} bytes"
            )));
        }
        text("system_prompt", &prompt, usize::MAX)?;
        agent.system_prompt = prompt;
    }
    if let Some(tools) = settings.tools {
        if tools.items.len() > MAX_TOOLS {
            return Err(ServiceError::invalid(format!("at most {MAX_TOOLS} tools")));
        }
        let mut names = Vec::with_capacity(tools.items.len());
        for name in tools.items {
            tool_name(&name)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort();
        agent.tools = names;
    }
    if let Some(steps) = settings.max_tool_steps {
        if steps > MAX_TOOL_STEPS {
            return Err(ServiceError::invalid(format!(
                "max_tool_steps must be at most {MAX_TOOL_STEPS}"
            )));
        }
        agent.max_tool_steps = steps;
    }
    if let Some(timeout) = settings.timeout_ms {
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout) {
            return Err(ServiceError::invalid(format!(
                "timeout_ms must be {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS}"
            )));
        }
        agent.timeout_ms = timeout;
    }
    if let Some(allowlist) = settings.exec_allowlist {
        if allowlist.items.len() > MAX_EXEC_ALLOWLIST {
            return Err(ServiceError::invalid(format!(
                "at most {MAX_EXEC_ALLOWLIST} allowlisted commands"
            )));
        }
        let mut commands = Vec::with_capacity(allowlist.items.len());
        for command in allowlist.items {
            exec_command(&command)?;
            if !commands.contains(&command) {
                commands.push(command);
            }
        }
        agent.exec_allowlist = commands;
    }
    Ok(())
}

/// An allowlisted command: non-empty, at most [`MAX_EXEC_COMMAND_BYTES`], no
/// control characters but tabs and newlines.
fn exec_command(command: &str) -> Result<(), ServiceError> {
    if command.trim().is_empty() || command.len() > MAX_EXEC_COMMAND_BYTES {
        return Err(ServiceError::invalid(format!(
            "an allowlisted command must be 1 to {MAX_EXEC_COMMAND_BYTES} bytes"
        )));
    }
    if command
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(ServiceError::invalid(
            "an allowlisted command must not hold control characters",
        ));
    }
    Ok(())
}

/// Adds `request.command` to the agent's exec allowlist (an `allow-always`
/// decision), for a caller that may approve for the whole tenant.
pub(crate) async fn allow_exec(
    store: &Store,
    principal: &Principal,
    request: AllowExecRequest,
) -> Result<Agent, ServiceError> {
    let tenant = tenant(principal)?;
    if !principal.approves_tenant() {
        return Err(ServiceError::forbidden(
            "allowing a command always needs operator.approvals",
        ));
    }
    exec_command(&request.command)?;
    let id = match request.agent_id.as_str() {
        "" => DEFAULT_AGENT_ID,
        id => id,
    };
    agent_id(id).map_err(|_| unknown_agent(id))?;
    let now = now_ms();
    let missing = (id == DEFAULT_AGENT_ID).then(|| Agent {
        created_at_ms: now,
        ..default_agent(tenant)
    });
    let command = request.command;
    let changed = store
        .change_agent(tenant, id, missing, move |agent| {
            if !agent.exec_allowlist.contains(&command) {
                if agent.exec_allowlist.len() >= MAX_EXEC_ALLOWLIST {
                    return Err(ServiceError::invalid(format!(
                        "the agent already allows {MAX_EXEC_ALLOWLIST} commands"
                    )));
                }
                agent.exec_allowlist.push(command);
            }
            agent.updated_at_ms = now;
            agent.stored = true;
            Ok(())
        })
        .await?;
    changed.map(as_default).ok_or_else(|| unknown_agent(id))
}

/// The default agent marked as such, stored or not.
fn as_default(mut agent: Agent) -> Agent {
    agent.is_default = agent.agent_id == DEFAULT_AGENT_ID;
    agent
}

pub(crate) async fn list(
    store: &Store,
    principal: &Principal,
) -> Result<ListAgentsResponse, ServiceError> {
    let tenant = tenant(principal)?;
    let stored = store.list_agents(tenant).await?;
    let mut agents: Vec<Agent> = Vec::with_capacity(stored.len() + 1);
    let default = stored
        .iter()
        .find(|a| a.agent_id == DEFAULT_AGENT_ID)
        .cloned()
        .unwrap_or_else(|| default_agent(tenant));
    agents.push(as_default(default));
    agents.extend(
        stored
            .into_iter()
            .filter(|a| a.agent_id != DEFAULT_AGENT_ID),
    );
    Ok(ListAgentsResponse {
        agents,
        default_agent_id: DEFAULT_AGENT_ID.to_owned(),
    })
}

pub(crate) async fn get(
    store: &Store,
    principal: &Principal,
    id: &str,
) -> Result<Agent, ServiceError> {
    let tenant = tenant(principal)?;
    let id = if id.is_empty() { DEFAULT_AGENT_ID } else { id };
    agent_id(id).map_err(|_| unknown_agent(id))?;
    match store.get_agent(tenant, id).await? {
        Some(agent) => Ok(as_default(agent)),
        None if id == DEFAULT_AGENT_ID => Ok(default_agent(tenant)),
        None => Err(unknown_agent(id)),
    }
}

pub(crate) async fn create(
    store: &Store,
    principal: &Principal,
    request: CreateAgentRequest,
) -> Result<Agent, ServiceError> {
    let tenant = managed_tenant(principal)?;
    agent_id(&request.agent_id)?;
    let exists = || {
        ServiceError::new(
            ErrorCode::AlreadyExists,
            format!("agent {} exists", request.agent_id),
        )
    };
    if request.agent_id == DEFAULT_AGENT_ID {
        return Err(exists());
    }
    let now = now_ms();
    let mut agent = Agent {
        tenant_id: tenant.to_owned(),
        agent_id: request.agent_id.clone(),
        max_tool_steps: DEFAULT_MAX_TOOL_STEPS,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        created_at_ms: now,
        updated_at_ms: now,
        stored: true,
        ..Agent::default()
    };
    apply(&mut agent, request.settings.unwrap_or_default())?;
    if !store.insert_agent(&agent).await? {
        return Err(exists());
    }
    Ok(agent)
}

pub(crate) async fn update(
    store: &Store,
    principal: &Principal,
    request: UpdateAgentRequest,
) -> Result<Agent, ServiceError> {
    let tenant = managed_tenant(principal)?;
    let id = &request.agent_id;
    agent_id(id).map_err(|_| unknown_agent(id))?;
    let now = now_ms();
    let missing = (id == DEFAULT_AGENT_ID).then(|| Agent {
        created_at_ms: now,
        ..default_agent(tenant)
    });
    let settings = request.settings.clone().unwrap_or_default();
    let changed = store
        .change_agent(tenant, id, missing, move |agent| {
            apply(agent, settings)?;
            agent.updated_at_ms = now;
            agent.stored = true;
            Ok(())
        })
        .await?;
    changed.map(as_default).ok_or_else(|| unknown_agent(id))
}

pub(crate) async fn delete(
    store: &Store,
    principal: &Principal,
    request: DeleteAgentRequest,
) -> Result<DeleteAgentResponse, ServiceError> {
    let tenant = managed_tenant(principal)?;
    let id = &request.agent_id;
    if id == DEFAULT_AGENT_ID {
        return Err(ServiceError::invalid("the default agent cannot be deleted"));
    }
    agent_id(id).map_err(|_| unknown_agent(id))?;
    if store.delete_agent(tenant, id).await? {
        Ok(DeleteAgentResponse { deleted: true })
    } else {
        Err(unknown_agent(id))
    }
}
