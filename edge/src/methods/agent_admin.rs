//! `agents.create`, `agents.update` and `agents.delete` (OpenClaw admin
//! scope, goclaw admins): the tenant's agents as the session service keeps them, which also
//! decides who may change them (tenant-wide access) and checks every setting.
//!
//! Params as the reference: `agents.create {name, workspace, model?, emoji?,
//! avatar?}` (the id is the name, normalized: lowercase, `[a-z0-9_-]`, at most
//! 64 characters) → `{ok, agentId, name, workspace, model?}`;
//! `agents.update {agentId, name?, workspace?, model?, emoji?, avatar?}` →
//! `{ok, agentId}`; `agents.delete {agentId, deleteFiles?}` → `{ok, agentId,
//! removedBindings}` (clawgate binds no channels to agents: always 0; it
//! keeps no agent files: `deleteFiles` changes nothing). clawgate
//! extensions, on create and update: `systemPrompt`, `fallbacks`, `tools`,
//! `maxToolSteps`, `timeoutMs`. goclaw takes and answers the same in
//! snake_case (`agent_id`, `system_prompt`, `max_tool_steps`, `timeout_ms`,
//! `delete_files`; lenient params).

use clawgate_proto::session::{
    AgentSettings, CreateAgentRequest, DeleteAgentRequest, SessionApi, StringList,
    UpdateAgentRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, job};
use crate::params::{Obj, Style};
use crate::session_key;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method::call(
        "agents.create",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_create,
    ),
    Method::call(
        "agents.update",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_update,
    ),
    Method::call(
        "agents.delete",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_delete,
    ),
];

/// Settings keys of create and update besides the reference's own.
const EXTENSIONS: [&str; 5] = [
    "systemPrompt",
    "fallbacks",
    "tools",
    "maxToolSteps",
    "timeoutMs",
];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Create {
        agent_id: String,
        settings: AgentSettings,
    },
    Update {
        agent_id: String,
        settings: AgentSettings,
    },
    Delete {
        agent_id: String,
    },
}

fn keys<'k>(own: &[&'k str]) -> Vec<&'k str> {
    own.iter().copied().chain(EXTENSIONS).collect()
}

/// A param's name in the caller's dialect (goclaw: snake_case).
fn key(request: &Request<'_>, camel: &'static str) -> &'static str {
    if request.style == Style::Camel {
        return camel;
    }
    match camel {
        "agentId" => "agent_id",
        "systemPrompt" => "system_prompt",
        "maxToolSteps" => "max_tool_steps",
        "timeoutMs" => "timeout_ms",
        "deleteFiles" => "delete_files",
        other => other,
    }
}

/// The settings `obj` gives (an absent key changes nothing).
fn settings(request: &Request<'_>, obj: &Obj<'_>) -> Result<AgentSettings, ServiceError> {
    let invalid = |why| request.invalid(why);
    let key = |camel| key(request, camel);
    let text = |key: &str| -> Result<Option<String>, ServiceError> {
        Ok(obj.opt_str(key).map_err(invalid)?.map(str::to_owned))
    };
    let list = |key: &str| -> Result<Option<StringList>, ServiceError> {
        Ok(obj
            .opt_str_array(key)
            .map_err(invalid)?
            .map(|items| StringList { items }))
    };
    let steps = obj
        .opt_int(key("maxToolSteps"), 0, i64::from(u32::MAX))
        .map_err(invalid)?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let timeout = obj
        .opt_int(key("timeoutMs"), 0, i64::MAX)
        .map_err(invalid)?
        .map(|n| u64::try_from(n).unwrap_or_default());
    Ok(AgentSettings {
        name: text("name")?,
        emoji: text("emoji")?,
        avatar: text("avatar")?,
        workspace: text("workspace")?,
        model: text("model")?,
        fallbacks: list("fallbacks")?,
        system_prompt: text(key("systemPrompt"))?,
        tools: list("tools")?,
        max_tool_steps: steps,
        timeout_ms: timeout,
        exec_allowlist: None,
    })
}

/// `agentId`, normalized as session keys normalize it.
fn agent_id(request: &Request<'_>, obj: &Obj<'_>) -> Result<String, ServiceError> {
    let raw = obj
        .req_nonempty_str(key(request, "agentId"))
        .map_err(|why| request.invalid(why))?;
    Ok(session_key::normalize_agent_id(raw, raw))
}

fn parse_create(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&keys(&["name", "workspace", "model", "emoji", "avatar"]))?;
    let invalid = |why| request.invalid(why);
    let name = obj.req_nonempty_str("name").map_err(invalid)?;
    obj.req_str("workspace").map_err(invalid)?;
    let agent_id = session_key::normalize_agent_id(name, "");
    if agent_id.is_empty() {
        return Err(request.invalid(format!(
            "name {name:?} gives no agent id (it needs a letter or digit first)"
        )));
    }
    let settings = settings(request, &obj)?;
    Ok(job(Call::Create { agent_id, settings }))
}

fn parse_update(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&keys(&[
        "agentId",
        "name",
        "workspace",
        "model",
        "emoji",
        "avatar",
    ]))?;
    let agent_id = agent_id(request, &obj)?;
    let settings = settings(request, &obj)?;
    Ok(job(Call::Update { agent_id, settings }))
}

fn parse_delete(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&["agentId", "deleteFiles"])?;
    obj.opt_bool(key(request, "deleteFiles"))
        .map_err(|why| request.invalid(why))?;
    let agent_id = agent_id(request, &obj)?;
    Ok(job(Call::Delete { agent_id }))
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, state, principal)
            .await
            .map(|answer| styled(answer, style))
            .into()
    }
}

/// An answer in the caller's dialect (goclaw: snake_case keys).
fn styled(answer: Value, style: Style) -> Value {
    let Value::Object(map) = answer else {
        return answer;
    };
    if style == Style::Camel {
        return Value::Object(map);
    }
    let snake = |key: &str| match key {
        "agentId" => "agent_id".to_owned(),
        "removedBindings" => "removed_bindings".to_owned(),
        other => other.to_owned(),
    };
    Value::Object(map.into_iter().map(|(k, v)| (snake(&k), v)).collect())
}

async fn run(call: Call, state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let session = &state.services.session;
    match call {
        Call::Create { agent_id, settings } => {
            let agent = session
                .create_agent(
                    principal,
                    CreateAgentRequest {
                        agent_id,
                        settings: Some(settings),
                    },
                )
                .await?;
            let mut answer = json!({
                "ok": true,
                "agentId": agent.agent_id,
                "name": agent.name,
                "workspace": agent.workspace,
            });
            if !agent.model.is_empty() {
                answer["model"] = json!(agent.model);
            }
            Ok(answer)
        }
        Call::Update { agent_id, settings } => {
            let agent = session
                .update_agent(
                    principal,
                    UpdateAgentRequest {
                        agent_id,
                        settings: Some(settings),
                    },
                )
                .await?;
            Ok(json!({ "ok": true, "agentId": agent.agent_id }))
        }
        Call::Delete { agent_id } => {
            session
                .delete_agent(
                    principal,
                    DeleteAgentRequest {
                        agent_id: agent_id.clone(),
                    },
                )
                .await?;
            Ok(json!({ "ok": true, "agentId": agent_id, "removedBindings": 0 }))
        }
    }
}

#[cfg(test)]
mod tests {
    use clawgate_proto::principal::SCOPE_ADMIN;

    use super::*;
    use crate::methods::decl::parse_with;

    fn parse(method: &'static str, params: Value) -> Result<Box<dyn Job>, ServiceError> {
        let principal = Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: "operator".into(),
            scopes: vec![SCOPE_ADMIN.into()],
            ..Default::default()
        };
        let parse = match method {
            "agents.create" => parse_create,
            "agents.update" => parse_update,
            _ => parse_delete,
        };
        parse_with(method, &params, Style::Camel, &principal, parse)
    }

    fn refusal(method: &'static str, params: Value) -> String {
        parse(method, params).err().expect("refused").message
    }

    #[test]
    fn params_are_checked_before_any_call() {
        assert!(parse("agents.create", json!({"name": "Coder", "workspace": "w"})).is_ok());
        assert!(
            parse(
                "agents.create",
                json!({"name": "Coder", "workspace": "", "tools": ["exec"], "maxToolSteps": 3})
            )
            .is_ok()
        );
        assert!(refusal("agents.create", json!({"workspace": "w"})).contains("'name'"));
        assert!(refusal("agents.create", json!({"name": "x"})).contains("'workspace'"));
        assert!(
            refusal("agents.create", json!({"name": "!!", "workspace": "w"}))
                .contains("gives no agent id")
        );
        assert!(
            refusal(
                "agents.create",
                json!({"name": "x", "workspace": "w", "bogus": 1})
            )
            .contains("'bogus'")
        );
        assert!(
            refusal(
                "agents.create",
                json!({"name": "x", "workspace": "w", "tools": "exec"})
            )
            .contains("/tools: must be array")
        );
        assert!(parse("agents.update", json!({"agentId": "coder", "emoji": "x"})).is_ok());
        assert!(refusal("agents.update", json!({"name": "x"})).contains("'agentId'"));
        assert!(
            parse(
                "agents.delete",
                json!({"agentId": "coder", "deleteFiles": true})
            )
            .is_ok()
        );
        assert!(
            refusal(
                "agents.delete",
                json!({"agentId": "coder", "deleteFiles": "yes"})
            )
            .contains("/deleteFiles: must be boolean")
        );
    }
}
