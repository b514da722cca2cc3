//! The declaration of a method: [`Method`] (name, OpenClaw [`Scope`], goclaw
//! [`Role`], [`Handler`]), the [`Request`] a parser reads, and the [`Job`] a
//! parsed call runs as.
//!
//! Invariant: nothing here knows a family or a dialect; families declare
//! their methods with these types, the registry ([`super`]) lists them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::NodeInvokeResult;
use clawgate_proto::principal::{
    SCOPE_ADMIN, SCOPE_APPROVALS, SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE,
};
use clawgate_proto::runner::StartRunRequest;
use clawgate_proto::{Principal, ServiceError};
use serde_json::Value;

use crate::config::EdgeConfig;
use crate::notify::Notice;
use crate::params::{Obj, Style};
use crate::state::EdgeState;
use crate::version::Protocol;

/// How the reference's method table names the node-only methods' requirement.
pub const NODE_ROLE: &str = "role:node";

/// The OpenClaw scope a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Any authenticated connection, of any role (`health`).
    Open,
    Read,
    Write,
    Pairing,
    Approvals,
    Admin,
    /// Only a connection of role `node` (OpenClaw §4.1); no operator scope.
    Node,
}

impl Scope {
    /// The scope's name; `None` for [`Scope::Open`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Open => None,
            Self::Read => Some(SCOPE_READ),
            Self::Write => Some(SCOPE_WRITE),
            Self::Pairing => Some(SCOPE_PAIRING),
            Self::Approvals => Some(SCOPE_APPROVALS),
            Self::Admin => Some(SCOPE_ADMIN),
            Self::Node => Some(NODE_ROLE),
        }
    }
}

/// A goclaw role; a higher one includes every lower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Owner,
}

impl Role {
    /// The role named `name`; `None` for no known role.
    pub fn of(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Whether a principal of role `held` has at least this role.
    pub fn allows(self, held: &str) -> bool {
        Role::of(held).is_some_and(|held| held >= self)
    }
}

/// What a method runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// The handshake; after it, each dialect refuses a second one its own way.
    Connect,
    /// Answered by the connection itself, from what the edge knows.
    Health,
    /// Starts a run; the connection answers it as its dialect does.
    ChatSend(fn(&Request<'_>) -> Result<StartRunRequest, ServiceError>),
    /// Starts a run answered twice on the same request id: accepted at once,
    /// then its end (OpenClaw `agent`); the connection waits for the end.
    Agent(fn(&Request<'_>) -> Result<AgentRun, ServiceError>),
    /// A call validated on the socket's task and run on a spawned one.
    Call(fn(&Request<'_>) -> Result<Box<dyn Job>, ServiceError>),
    /// A change of the connection's own state (what it is subscribed to, a
    /// node's answer to a call it was given), answered by the connection at
    /// once (no call is spawned, so no in-flight limit applies).
    Subscribe(fn(&Request<'_>) -> Result<Subscription, ServiceError>),
}

/// What a subscription method asks the connection to change.
#[derive(Debug, Clone, PartialEq)]
pub enum Subscription {
    /// Every visible session's changes and messages (`sessions.subscribe`);
    /// `false` stops them.
    Sessions(bool),
    /// One session's messages (`sessions.messages.subscribe`), by canonical
    /// key; `on: false` stops them.
    Messages { key: String, on: bool },
    /// A node follows one session's `chat` and `agent` events (`node.event`
    /// `chat.subscribe` / `chat.unsubscribe`), by canonical key.
    NodeChat { key: String, on: bool },
    /// A node event this gateway does not act on (answered `handled: false`).
    NodeEvent { event: String },
    /// A node's `node.invoke.result`, passed on to whoever called.
    NodeResult(Box<NodeInvokeResult>),
}

/// A run whose request is answered when it is accepted and again when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    pub start: StartRunRequest,
    /// How long the end is awaited after the acceptance before the request is
    /// answered as timed out; `None`: until the run ends (the runner bounds
    /// every run) or the socket closes.
    pub wait: Option<Duration>,
}

/// One method as both dialects see it.
#[derive(Clone, Copy)]
pub struct Method {
    pub name: &'static str,
    /// The scope an OpenClaw connection needs; `None`: not offered to OpenClaw.
    pub openclaw: Option<Scope>,
    /// The lowest goclaw role that may call it; `None`: not offered to goclaw.
    pub goclaw: Option<Role>,
    pub handler: Handler,
    /// The OpenClaw protocol versions that offer it (v4 dropped some v3
    /// methods and added many).
    pub versions: Versions,
}

/// A range of OpenClaw protocol versions, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    pub first: Protocol,
    pub last: Protocol,
}

impl Versions {
    /// Every version this edge speaks.
    pub const ALL: Versions = Versions {
        first: Protocol::OLDEST,
        last: Protocol::NEWEST,
    };

    pub fn includes(self, protocol: Protocol) -> bool {
        self.first <= protocol && protocol <= self.last
    }
}

impl Method {
    /// A method whose handler is a [`Handler::Call`] of `parse`.
    pub const fn call(
        name: &'static str,
        openclaw: Option<Scope>,
        goclaw: Option<Role>,
        parse: fn(&Request<'_>) -> Result<Box<dyn Job>, ServiceError>,
    ) -> Self {
        Self {
            name,
            openclaw,
            goclaw,
            handler: Handler::Call(parse),
            versions: Versions::ALL,
        }
    }

    /// The same method, offered to OpenClaw from protocol v4 on.
    pub const fn since_v4(mut self) -> Self {
        self.versions.first = Protocol::V4;
        self
    }

    /// The same method, offered to OpenClaw up to protocol v3 only.
    pub const fn until_v3(mut self) -> Self {
        self.versions.last = Protocol::V3;
        self
    }

    /// Whether an OpenClaw connection of `protocol` is offered it.
    pub fn offered_to(&self, protocol: Protocol) -> bool {
        self.openclaw.is_some() && self.versions.includes(protocol)
    }
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.name)
            .field("openclaw", &self.openclaw)
            .field("goclaw", &self.goclaw)
            .finish_non_exhaustive()
    }
}

/// A method's params as its parser sees them.
pub struct Request<'a> {
    /// The declared name.
    pub method: &'static str,
    pub params: &'a Value,
    pub style: Style,
    pub principal: &'a Principal,
    pub config: &'a EdgeConfig,
    /// The OpenClaw protocol of the connection; `None` for goclaw.
    pub protocol: Option<Protocol>,
}

impl<'a> Request<'a> {
    /// Whether the caller speaks OpenClaw protocol v4 (whose answers carry
    /// more fields).
    pub fn v4(&self) -> bool {
        self.protocol == Some(Protocol::V4)
    }

    /// The error of params that do not check out.
    pub fn invalid(&self, why: String) -> ServiceError {
        ServiceError::invalid(format!("invalid {} params: {why}", self.method))
    }

    /// The params as an object.
    pub fn obj(&self) -> Result<Obj<'a>, ServiceError> {
        Obj::new(self.params, "").map_err(|why| self.invalid(why))
    }

    /// The params as an object that, in the OpenClaw style, has no key but
    /// `allowed` (goclaw params are lenient).
    pub fn closed(&self, allowed: &[&str]) -> Result<Obj<'a>, ServiceError> {
        let obj = self.obj()?;
        if self.style == Style::Camel {
            obj.closed(allowed).map_err(|why| self.invalid(why))?;
        }
        Ok(obj)
    }
}

/// What a call answers, and what to publish once the answer is queued.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Value, ServiceError>,
    pub notices: Vec<Notice>,
}

impl From<Result<Value, ServiceError>> for Outcome {
    fn from(result: Result<Value, ServiceError>) -> Self {
        Self {
            result,
            notices: Vec::new(),
        }
    }
}

/// The future a [`Job`] runs as.
pub type JobFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A validated call, ready to run on its own task.
pub trait Job: Send + 'static {
    /// Runs the call for a connection of `style`.
    fn run(self: Box<Self>, state: Arc<EdgeState>, principal: Principal, style: Style)
    -> JobFuture;
}

/// A family's validated call: how it runs. Every such call is a [`Job`].
pub trait Runs: Send + Sized + 'static {
    /// Runs the call for a connection of `style`.
    fn execute(
        self,
        state: &EdgeState,
        principal: &Principal,
        style: Style,
    ) -> impl Future<Output = Outcome> + Send;
}

impl<C: Runs> Job for C {
    fn run(
        self: Box<Self>,
        state: Arc<EdgeState>,
        principal: Principal,
        style: Style,
    ) -> JobFuture {
        Box::pin(async move { self.execute(&state, &principal, style).await })
    }
}

/// A family's validated call as a [`Job`].
pub fn job(call: impl Job) -> Box<dyn Job> {
    Box::new(call)
}

/// What a family parser that matches method names made of a declared
/// method: its call as a [`Job`]; `None` (a declared method the parser does not
/// know) is an internal error, which the registry test rules out.
pub fn declared(call: Option<impl Job>) -> Result<Box<dyn Job>, ServiceError> {
    call.map(job)
        .ok_or_else(|| ServiceError::internal("method declared without a parser"))
}

/// Calls `parse` with a request of `method` as a connection of `style` and
/// `principal` would send it, on the default configuration (for tests).
#[cfg(test)]
pub(crate) fn parse_with<T>(
    method: &'static str,
    params: &Value,
    style: Style,
    principal: &Principal,
    parse: impl FnOnce(&Request<'_>) -> T,
) -> T {
    let config = EdgeConfig::default();
    parse(&Request {
        method,
        params,
        style,
        principal,
        config: &config,
        protocol: (style == Style::Camel).then_some(Protocol::NEWEST),
    })
}
