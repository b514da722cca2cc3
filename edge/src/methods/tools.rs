//! The tool catalog (OpenClaw): `tools.catalog {agentId?, includePlugins?}`
//! → `{agentId, profiles, groups}` and `tools.effective {sessionKey,
//! agentId?}` → `{agentId, profile, groups}`, from what the runner offers
//! (`ListTools`, asked at each call).
//!
//! Every tool is built in: one group `core` of tools `{id, label,
//! description, source: "core", parameters, optional, requiresApproval}`
//! (`optional`: an agent without a tool allowlist lacks it). The catalog lists
//! them all, each with `enabled` for the agent; `tools.effective` only those the
//! agent has (its allowlist, and none when its tool step limit is 0). There
//! are no tool profiles: `profiles` is empty and `profile` is `null`.
//!
//! Invariants: the agent is one of the caller's tenant (an unknown one is
//! NOT_FOUND `unknown agent: <id>`); params are closed objects.

use clawgate_proto::runner::{ListToolsRequest, RunnerApi, ToolInfo};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::agents::agent_param;
use super::decl::{Job, Method, Outcome, Request, Runs, Scope, job};
use crate::params::Style;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method::call("tools.catalog", Some(Scope::Read), None, |request| {
        let obj = request.closed(&["agentId", "includePlugins"])?;
        obj.opt_bool("includePlugins")
            .map_err(|why| request.invalid(why))?;
        let agent = agent_param(request, &obj)?;
        Ok(job(Call {
            agent,
            effective: false,
        }))
    }),
    Method::call("tools.effective", Some(Scope::Read), None, parse_effective),
];

fn parse_effective(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    let obj = request.closed(&["sessionKey", "agentId"])?;
    obj.opt_nonempty_str("sessionKey")
        .map_err(|why| request.invalid(why))?
        .ok_or_else(|| request.invalid("must have required property 'sessionKey'".into()))?;
    let agent = agent_param(request, &obj)?;
    Ok(job(Call {
        agent,
        effective: true,
    }))
}

/// A validated call: the catalog, or only the agent's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `None`: the tenant's default agent.
    pub agent: Option<String>,
    pub effective: bool,
}

fn tool_json(tool: &ToolInfo, with_enabled: bool) -> Value {
    let parameters: Value = serde_json::from_str(&tool.parameters_json).unwrap_or(Value::Null);
    let mut value = json!({
        "id": tool.name,
        "label": tool.name,
        "description": tool.description,
        "source": "core",
        "parameters": parameters,
        "optional": !tool.on_by_default,
        "requiresApproval": tool.needs_approval,
    });
    if with_enabled {
        value["enabled"] = json!(tool.enabled);
    }
    value
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        run(self, state, principal).await.into()
    }
}

async fn run(call: Call, state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let listed = state
        .services
        .runner
        .list_tools(
            principal,
            ListToolsRequest {
                agent_id: call.agent.unwrap_or_default(),
            },
        )
        .await?;
    let tools: Vec<Value> = listed
        .tools
        .iter()
        .filter(|tool| !call.effective || tool.enabled)
        .map(|tool| tool_json(tool, !call.effective))
        .collect();
    let groups =
        json!([{ "id": "core", "label": "Built-in tools", "source": "core", "tools": tools }]);
    Ok(if call.effective {
        json!({ "agentId": listed.agent_id, "profile": Value::Null, "groups": groups })
    } else {
        json!({ "agentId": listed.agent_id, "profiles": [], "groups": groups })
    })
}
