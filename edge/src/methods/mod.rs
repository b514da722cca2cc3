//! Every method the edge serves, declared once: its name, the OpenClaw scope it
//! needs, the lowest goclaw role that may call it, its params parser (both
//! param styles), and what it runs. A family of methods (chat, sessions,
//! pairing, presence, API keys, tenants, secrets, …) is one module of this directory with
//! a `METHODS` table; [`FAMILIES`] lists the tables.
//!
//! Everything per method is derived from these declarations: what OpenClaw
//! `hello-ok.features.methods` advertises ([`openclaw_methods`]), the OpenClaw
//! scope table ([`openclaw_scope`]), the goclaw role table (each [`Method`]'s
//! `goclaw`, read by the goclaw dialect's authorization),
//! and dispatch ([`find`], then each method's [`Handler`]). A method offered in a
//! dialect therefore always has a scope or role and a parser; one that is not
//! declared is unknown in both.
//!
//! Dialects keep only what is truly theirs: framing, handshake, how each
//! answer is sent and its error codes, the projection of events, and the
//! connection-level behaviour of `chat.send` (OpenClaw acknowledges at once,
//! goclaw answers when the run ends) and `health` (goclaw's is answered from
//! the connection itself, OpenClaw's runs as a call: it adds the caller's
//! sessions to the cached snapshot).
//!
//! Invariants: a method name is declared once (checked by a test); params
//! errors read `invalid <method> params: …`; a parser runs on the socket's
//! task and does no I/O; no call runs for a method the caller's dialect does
//! not offer (dispatch goes through [`find`] and the dialect's offer first).

pub mod agent;
pub mod agent_admin;
pub mod agents;
pub mod api_keys;
pub mod approval_policy;
pub mod approvals;
pub mod chat;
pub mod decl;
pub mod inject;
pub mod logs;
pub mod node_pairing;
pub mod node_role;
pub mod nodes;
pub mod pairing;
pub mod presence;
pub mod providers;
pub mod replay;
pub mod secrets;
pub mod session_edit;
pub mod session_row;
pub mod sessions;
pub mod subscriptions;
pub mod system;
pub mod tenants;
pub mod tools;
pub mod users;

use std::collections::HashMap;
use std::sync::LazyLock;

pub use decl::{AgentRun, Handler, Job, Method, Request, Role, Scope, Subscription};

use crate::version::Protocol;

/// Every family's table, in the order OpenClaw advertises them.
pub const FAMILIES: [&[Method]; 24] = [
    system::METHODS,
    presence::METHODS,
    logs::METHODS,
    agents::METHODS,
    agent_admin::METHODS,
    tools::METHODS,
    users::METHODS,
    chat::METHODS,
    agent::METHODS,
    inject::METHODS,
    sessions::METHODS,
    session_edit::METHODS,
    subscriptions::METHODS,
    replay::METHODS,
    pairing::METHODS,
    api_keys::METHODS,
    tenants::METHODS,
    secrets::METHODS,
    providers::METHODS,
    approvals::METHODS,
    approval_policy::METHODS,
    nodes::METHODS,
    node_pairing::METHODS,
    node_role::METHODS,
];

/// Every declared method, in declaration order.
pub fn all() -> impl Iterator<Item = &'static Method> {
    FAMILIES.iter().flat_map(|family| family.iter())
}

static BY_NAME: LazyLock<HashMap<&'static str, &'static Method>> =
    LazyLock::new(|| all().map(|method| (method.name, method)).collect());

/// The method named `name`, in whichever dialect offers it.
pub fn find(name: &str) -> Option<&'static Method> {
    BY_NAME.get(name).copied()
}

/// The methods OpenClaw connections of `protocol` may call after the
/// handshake, as their `hello-ok.features.methods` lists them.
pub fn openclaw_methods(protocol: Protocol) -> &'static [&'static str] {
    fn offered(protocol: Protocol) -> Vec<&'static str> {
        all()
            .filter(|m| m.offered_to(protocol) && !matches!(m.handler, Handler::Connect))
            .map(|m| m.name)
            .collect()
    }
    static V3: LazyLock<Vec<&'static str>> = LazyLock::new(|| offered(Protocol::V3));
    static V4: LazyLock<Vec<&'static str>> = LazyLock::new(|| offered(Protocol::V4));
    match protocol {
        Protocol::V3 => &V3,
        Protocol::V4 => &V4,
    }
}

/// The method `name` as an OpenClaw connection of `protocol` is offered it.
pub fn find_openclaw(name: &str, protocol: Protocol) -> Option<&'static Method> {
    find(name).filter(|m| m.offered_to(protocol))
}

/// The scope an OpenClaw connection of `protocol` needs for `name`; `None`
/// when it is not offered.
pub fn openclaw_scope(name: &str, protocol: Protocol) -> Option<Scope> {
    find_openclaw(name, protocol).and_then(|m| m.openclaw)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
