//! The exec approvals policy (OpenClaw, admins): `exec.approvals.get {}` →
//! `{path, exists, hash, file: {version: 1, agents: {<id>: {allowlist:
//! [{pattern}]}}}}` and `exec.approvals.set {file, baseHash?}` → the same
//! snapshot after the change.
//!
//! The file is the tenant's agents' exec allowlists (kept by the session
//! service, grown by `allow-always` decisions): a pattern is an exact command
//! line that runs without asking. `hash` is the SHA-256 of the file as
//! answered; a `set` with a `baseHash` that no longer matches is refused, so
//! two admins do not overwrite each other. `set` replaces every agent's list
//! (an agent the file leaves out allows nothing); an agent the tenant lacks
//! is refused before anything changes. Only `version` and `agents` (and per
//! agent `allowlist`) are understood; other policy keys of the reference
//! (`defaults`, `socket`, `security`, `ask`) are refused, not ignored.
//!
//! Invariant: the tenant is the caller's; params are closed objects.

use std::collections::BTreeMap;

use clawgate_proto::session::{
    AgentSettings, ListAgentsRequest, SessionApi as _, StringList, UpdateAgentRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::decl::{Method, Outcome, Request, Runs, Scope, job};
use crate::params::{Obj, Style};
use crate::state::EdgeState;

/// Where the policy lives, as `path` names it: the tenant's agents.
const PATH: &str = "clawgate:agents/exec-allowlist";
const MAX_PATTERN_BYTES: usize = 8 * 1024;

pub const METHODS: &[Method] = &[
    Method::call("exec.approvals.get", Some(Scope::Admin), None, |request| {
        request.closed(&[])?;
        Ok(job(Call::Get))
    }),
    Method::call("exec.approvals.set", Some(Scope::Admin), None, parse_set),
];

/// A validated call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Get,
    /// Every agent's new allowlist, and the hash the caller last read.
    Set {
        agents: BTreeMap<String, Vec<String>>,
        base_hash: Option<String>,
    },
}

fn parse_set(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&["file", "baseHash"])?;
    let invalid = |why: String| request.invalid(why);
    let base_hash = obj.opt_str("baseHash").map_err(invalid)?.map(str::to_owned);
    let file = obj.req_obj("file").map_err(invalid)?;
    file.closed(&["version", "agents"]).map_err(invalid)?;
    if let Some(version) = file.opt_int("version", 0, i64::MAX).map_err(invalid)?
        && version != 1
    {
        return Err(invalid("at /file/version: must be 1".to_owned()));
    }
    let mut agents = BTreeMap::new();
    if let Some(listed) = file.opt_obj("agents").map_err(invalid)? {
        for (id, entry) in listed.entries() {
            let path = format!("/file/agents/{id}");
            let entry = Obj::new(entry, &path).map_err(invalid)?;
            entry.closed(&["allowlist"]).map_err(invalid)?;
            let mut patterns = Vec::new();
            for (index, item) in entry
                .opt_array("allowlist")
                .map_err(invalid)?
                .into_iter()
                .flatten()
                .enumerate()
            {
                let item = Obj::new(item, &format!("{path}/allowlist/{index}")).map_err(invalid)?;
                let pattern = item
                    .req_str_len("pattern", MAX_PATTERN_BYTES)
                    .map_err(invalid)?;
                patterns.push(pattern.to_owned());
            }
            agents.insert(id.clone(), patterns);
        }
    }
    Ok(job(Call::Set { agents, base_hash }))
}

/// The file of `allowlists` (agents allowing nothing are left out).
fn file_of(allowlists: &BTreeMap<String, Vec<String>>) -> Value {
    let agents: Map<String, Value> = allowlists
        .iter()
        .filter(|(_, patterns)| !patterns.is_empty())
        .map(|(id, patterns)| {
            let list: Vec<Value> = patterns.iter().map(|p| json!({ "pattern": p })).collect();
            (id.clone(), json!({ "allowlist": list }))
        })
        .collect();
    json!({ "version": 1, "agents": agents })
}

fn hash_of(file: &Value) -> String {
    hex::encode(Sha256::digest(file.to_string().as_bytes()))
}

fn snapshot(allowlists: &BTreeMap<String, Vec<String>>) -> Value {
    let file = file_of(allowlists);
    let exists = allowlists.values().any(|patterns| !patterns.is_empty());
    json!({ "path": PATH, "exists": exists, "hash": hash_of(&file), "file": file })
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        run(self, state, principal).await.into()
    }
}

async fn allowlists(
    state: &EdgeState,
    principal: &Principal,
) -> Result<BTreeMap<String, Vec<String>>, ServiceError> {
    let listed = state
        .services
        .session
        .list_agents(principal, ListAgentsRequest {})
        .await?;
    Ok(listed
        .agents
        .into_iter()
        .map(|agent| (agent.agent_id, agent.exec_allowlist))
        .collect())
}

async fn run(call: Call, state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let current = allowlists(state, principal).await?;
    let Call::Set { agents, base_hash } = call else {
        return Ok(snapshot(&current));
    };
    if let Some(base) = base_hash
        && base != hash_of(&file_of(&current))
    {
        return Err(ServiceError::invalid(
            "exec approvals changed since last load; re-run exec.approvals.get and retry",
        ));
    }
    if let Some(unknown) = agents.keys().find(|id| !current.contains_key(*id)) {
        return Err(ServiceError::not_found(format!("unknown agent: {unknown}")));
    }
    let session = &state.services.session;
    for (id, old) in &current {
        let new = agents.get(id).cloned().unwrap_or_default();
        if &new == old {
            continue;
        }
        let settings = AgentSettings {
            exec_allowlist: Some(StringList { items: new }),
            ..Default::default()
        };
        session
            .update_agent(
                principal,
                UpdateAgentRequest {
                    agent_id: id.clone(),
                    settings: Some(settings),
                },
            )
            .await?;
    }
    Ok(snapshot(&allowlists(state, principal).await?))
}
