//! The OpenClaw dialect (protocol v3 or v4, fixed per connection at
//! `connect`, see [`crate::version`]) of an authenticated connection: request
//! dispatch, event projection, keepalive `tick`, and `shutdown`.
//!
//! What differs between the versions is decided here and in the modules below
//! from the connection's [`Protocol`] only: which methods are offered
//! (declared per method), error codes (v4 `FORBIDDEN` with `MISSING_SCOPE`
//! details), `chat` event fields, numbering of targeted events.
//!
//! Invariants: a `chat.send` is acknowledged before any event of its run reaches
//! the client (events of a run whose ack is pending are held, boundedly); `agent`
//! and `chat` events reach only connections with `operator.read` (write and admin
//! satisfy it): of the connection's own user's runs, or, for a connection that
//! sees the whole tenant (`operator.admin`), of every user's runs of its tenant
//! (the hub decides which reach it; runs are told apart by user and run id);
//! pairing events reach only operators of the tenant with `operator.pairing`
//! (admin satisfies it), and a non-admin only those concerning its own user; a
//! targeted disconnect closes the connection when it names its device (and
//! role, if any) or its user; more than 10
//! consecutive `unauthorized role` refusals close it with 1008; post-handshake
//! garbage follows §1.4 (non-JSON ignored, invalid frames answered, the socket
//! stays open).

pub mod agent_reply;
pub mod authz;
pub mod handshake;
pub mod hello;
pub mod node_side;
pub mod note;
pub mod pairing;
pub mod projection;
pub mod reply;
pub mod session_events;

use std::collections::HashMap;
use std::sync::Arc;

use clawgate_proto::pb::common::v1::{
    Disconnect, ExecApprovalEvent, NodeInvokeRequest, NodePairingEvent, PairingEvent, RunEvent,
    SessionChange, TranscriptNote,
};
use clawgate_proto::principal::{SCOPE_PAIRING, SCOPE_READ};
use clawgate_proto::runner::RunnerApi as _;
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::conn::{Cx, DialectConn};
use crate::frames::{self, CLOSE_POLICY, ErrorShape, Inbound, Request};
use crate::health::{self, Snapshot};
use crate::methods::{self, Handler, Job, approvals, replay, system};
use crate::notify::{self, Notice};
use crate::out::EventOut;
use crate::params::Style;
use crate::state::SocketInfo;
use crate::version::Protocol;
use projection::{Projector, RunKey};
use reply::Reply;

/// Events held per run while its `chat.send` ack is outstanding; beyond this they
/// are released (the ack is then late rather than memory unbounded).
const MAX_HELD_EVENTS: usize = 256;

/// Consecutive `unauthorized role` errors after which the socket is closed.
const MAX_UNAUTHORIZED_STREAK: u32 = 10;

/// Live events held per run while its backfill is being read; beyond this the
/// backfill is given up (the run's deltas then stop until its terminal event).
const MAX_BACKFILL_HELD: usize = 256;

/// The refusal of a `connect` after the handshake.
fn second_connect() -> ServiceError {
    ServiceError::invalid("connect is only valid as the first request")
}

/// What a validated request runs.
enum Work {
    /// A run to start: its events wait until the ack is queued.
    ChatSend(clawgate_proto::runner::StartRunRequest),
    Call(Box<dyn Job>),
}

/// The result of a spawned call.
#[derive(Debug)]
pub enum Done {
    /// A request was served.
    Call {
        id: String,
        reply: Reply,
        release_run: Option<String>,
        /// Published once the reply is queued.
        notices: Vec<Notice>,
    },
    /// A run's earlier events were read (empty on failure).
    Backfill { run: RunKey, events: Vec<RunEvent> },
    /// The runner answered an `agent` request's start.
    Agent(agent_reply::Accepted),
    /// The runner's view of a run `agent` requests wait for.
    AgentChecked(Result<clawgate_proto::runner::RunInfo, ServiceError>),
}

pub struct Conn {
    principal: Principal,
    protocol: Protocol,
    sees_events: bool,
    sees_pairing: bool,
    projector: Projector,
    /// Run id of one of the connection's own runs → events waiting for the
    /// run's `chat.send` ack.
    held: HashMap<String, Vec<Arc<RunEvent>>>,
    /// Run → live events waiting for the run's backfill.
    backfilling: HashMap<RunKey, Vec<Arc<RunEvent>>>,
    unauthorized_streak: u32,
    /// `agent` requests waiting for their run's end.
    agents: agent_reply::Waits,
    /// What `sessions.subscribe` and `sessions.messages.subscribe` asked for.
    subscriptions: session_events::Subscriptions,
    /// A node connection's own state (`None` for operators).
    node: Option<node_side::NodeSide>,
}

impl Conn {
    pub fn new(
        principal: Principal,
        info: &SocketInfo,
        connect_params: &Value,
        protocol: Protocol,
    ) -> Self {
        let tool_events = connect_params
            .get("caps")
            .and_then(Value::as_array)
            .is_some_and(|caps| caps.iter().any(|cap| cap == "tool-events"));
        let principal_role_is_node = principal.role == "node";
        let sees_events = principal.role == "operator" && principal.has_scope(SCOPE_READ);
        let sees_pairing = principal.role == "operator" && principal.has_scope(SCOPE_PAIRING);
        tracing::debug!(conn_id = %info.conn_id, sees_events, tool_events, "openclaw connection");
        let projector = Projector::new(tool_events, protocol).with_own_user(&principal.user_id);
        Self {
            principal,
            protocol,
            sees_events,
            sees_pairing,
            projector,
            held: HashMap::new(),
            backfilling: HashMap::new(),
            unauthorized_streak: 0,
            agents: agent_reply::Waits::default(),
            subscriptions: session_events::Subscriptions::default(),
            node: (principal_role_is_node).then(node_side::NodeSide::default),
        }
    }

    fn respond(&self, cx: &mut Cx<'_, Done>, id: &str, reply: &Reply) {
        let error = reply.error_shape(self.protocol);
        cx.out.response(id, reply.payload.as_ref(), error.as_ref());
    }

    fn project(&mut self, event: &RunEvent, cx: &mut Cx<'_, Done>) {
        for frame in self.projector.project(event, Instant::now()) {
            cx.out.event(frame);
        }
    }

    /// A live event whose `chat.send` ack is not pending: projected, unless its
    /// run waits for (or now needs) a backfill of the text this connection
    /// missed (it joined mid-run).
    fn live(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Done>) {
        let run = RunKey::of(&event);
        if let Some(pending) = self.backfilling.get_mut(&run) {
            if pending.len() < MAX_BACKFILL_HELD {
                pending.push(event);
                return;
            }
            // The backfill is too slow: give up on it (its result is ignored).
            let pending = self.backfilling.remove(&run).unwrap_or_default();
            for earlier in pending {
                self.project(&earlier, cx);
            }
            self.project(&event, cx);
            return;
        }
        if self.projector.wants_backfill(&event) {
            let (state, principal) = (cx.state.clone(), self.principal.clone());
            let span = tracing::debug_span!("ws.backfill", run_id = %run.run_id);
            let key = run.clone();
            let spawned = cx.spawner.spawn(span, async move {
                let events = match replay::fetch(&state, &principal, &key).await {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::debug!(error = %err, "run history unavailable");
                        Vec::new()
                    }
                };
                Done::Backfill { run: key, events }
            });
            if spawned {
                self.backfilling.insert(run, vec![event]);
                return;
            }
        }
        self.project(&event, cx);
    }

    fn request(&mut self, request: Request, cx: &mut Cx<'_, Done>) {
        let span =
            tracing::info_span!("ws.request", method = %request.method, req_id = %request.id);
        let _enter = span.enter();
        tracing::debug!("request");
        if let Err(err) = authz::authorize(&self.principal, &request.method, self.protocol) {
            self.respond(cx, &request.id, &Reply::err(&err));
            if authz::is_role_refusal(&err) {
                self.unauthorized_streak += 1;
                if self.unauthorized_streak > MAX_UNAUTHORIZED_STREAK {
                    cx.out.close(CLOSE_POLICY, "repeated unauthorized calls");
                }
            }
            return;
        }
        self.unauthorized_streak = 0;
        // The handshake is not offered after it (so it needs admin, as any
        // method OpenClaw is not offered); an admin learns why.
        if request.method == "connect" {
            self.respond(cx, &request.id, &Reply::err(&second_connect()));
            return;
        }
        let Some(method) = methods::find_openclaw(&request.method, self.protocol) else {
            let err = ServiceError::invalid(format!("unknown method: {}", request.method));
            self.respond(cx, &request.id, &Reply::err(&err));
            return;
        };
        let parsed = methods::Request {
            method: method.name,
            params: &request.params,
            style: Style::Camel,
            principal: &self.principal,
            config: &cx.state.config,
            protocol: Some(self.protocol),
        };
        let work = match method.handler {
            Handler::Connect => {
                self.respond(cx, &request.id, &Reply::err(&second_connect()));
                return;
            }
            Handler::Health => system::parse_openclaw_health(&parsed).map(Work::Call),
            Handler::Agent(parse) => {
                match parse(&parsed) {
                    Ok(run) => self.agent(request.id.clone(), run, span.clone(), cx),
                    Err(err) => self.respond(cx, &request.id, &Reply::err(&err)),
                }
                return;
            }
            Handler::Subscribe(parse) => {
                let answer = parse(&parsed).and_then(|change| match (&mut self.node, change) {
                    (Some(node), change) => node.apply(change, cx.state, &self.principal),
                    (None, change) => self.subscriptions.apply(change),
                });
                self.respond(cx, &request.id, &Reply::from_result(answer));
                return;
            }
            Handler::ChatSend(parse) => parse(&parsed).map(Work::ChatSend),
            Handler::Call(parse) => parse(&parsed).map(Work::Call),
        };
        let work = match work {
            Ok(work) => work,
            Err(err) => {
                self.respond(cx, &request.id, &Reply::err(&err));
                return;
            }
        };
        let release_run = match &work {
            Work::ChatSend(start) => Some(start.idempotency_key.clone()),
            Work::Call(_) => None,
        };
        let newly_held = match &release_run {
            Some(run_id) if !self.held.contains_key(run_id) => {
                self.held.insert(run_id.clone(), Vec::new());
                true
            }
            _ => false,
        };
        let (state, principal, id) = (cx.state.clone(), self.principal.clone(), request.id.clone());
        let release = release_run.clone();
        let spawned = cx.spawner.spawn(span.clone(), async move {
            let (reply, notices) = match work {
                Work::ChatSend(start) => (
                    reply::chat_send(&state, &principal, start).await,
                    Vec::new(),
                ),
                Work::Call(call) => {
                    let outcome = call.run(state, principal, Style::Camel).await;
                    (Reply::from_result(outcome.result), outcome.notices)
                }
            };
            Done::Call {
                id,
                reply,
                release_run: release,
                notices,
            }
        });
        if !spawned {
            if newly_held && let Some(run_id) = &release_run {
                self.held.remove(run_id);
            }
            let err = ServiceError::unavailable("too many requests in flight");
            self.respond(cx, &request.id, &Reply::err(&err));
        }
    }
}

impl Conn {
    /// Starts an `agent` run: its events wait for the acceptance, the request
    /// waits for the run's end ([`agent_reply`]).
    fn agent(
        &mut self,
        id: String,
        run: methods::AgentRun,
        span: tracing::Span,
        cx: &mut Cx<'_, Done>,
    ) {
        let run_id = run.start.idempotency_key.clone();
        let max = cx.state.config.max_pending_chat_sends;
        if let Err(err) = self.agents.reserve(&id, &run, max) {
            self.respond(cx, &id, &Reply::err(&err));
            return;
        }
        let newly_held = !self.held.contains_key(&run_id);
        self.held.entry(run_id.clone()).or_default();
        let (state, principal, task_id) = (cx.state.clone(), self.principal.clone(), id.clone());
        let spawned = cx.spawner.spawn(span, async move {
            Done::Agent(agent_reply::start(&state, &principal, task_id, run).await)
        });
        if !spawned {
            self.agents.cancel(&run_id, &id);
            if newly_held {
                self.held.remove(&run_id);
            }
            let err = ServiceError::unavailable("too many requests in flight");
            self.respond(cx, &id, &Reply::err(&err));
        }
    }

    /// A run event for a connection that sees events: held while its run's
    /// acknowledgement is pending, else live.
    fn route(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Done>) {
        if !self.sees_events {
            return;
        }
        // Only the connection's own runs wait for a `chat.send` ack: another
        // user's run may carry the same run id.
        let own = event.user_id == self.principal.user_id;
        if own && let Some(held) = self.held.get_mut(&event.run_id) {
            if held.len() < MAX_HELD_EVENTS {
                held.push(event);
                return;
            }
            let held = self.held.remove(&event.run_id).unwrap_or_default();
            for earlier in held {
                self.live(earlier, cx);
            }
        }
        self.live(event, cx);
    }

    fn answer(&self, cx: &mut Cx<'_, Done>, answers: agent_reply::Answers) {
        for (id, reply) in answers {
            self.respond(cx, &id, &reply);
        }
    }

    /// Releases the events held for `run_id`'s acknowledgement.
    fn release(&mut self, run_id: &str, cx: &mut Cx<'_, Done>) {
        if let Some(held) = self.held.remove(run_id) {
            for event in held {
                self.live(event, cx);
            }
        }
    }
}

impl DialectConn for Conn {
    type Done = Done;

    fn on_text(&mut self, text: &str, cx: &mut Cx<'_, Done>) {
        match frames::parse_openclaw(text) {
            Inbound::NotJson(err) => tracing::debug!(error = %err, "ignoring non-JSON frame"),
            Inbound::Invalid { id, reason } => {
                let err = ServiceError::invalid(format!("invalid request frame: {reason}"));
                let id = id.unwrap_or_else(|| "invalid".to_owned());
                let shape = ErrorShape::openclaw_in(&err, self.protocol);
                cx.out.response(&id, None, Some(&shape));
            }
            Inbound::Request(request) => self.request(request, cx),
        }
    }

    fn on_event(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Done>) {
        if let Some(node) = &self.node {
            // A node receives only the sessions it follows, straight to its socket.
            if node.follows(&event.session_key) {
                for mut frame in self.projector.project(&event, Instant::now()) {
                    frame.delivery = crate::out::Delivery::Targeted;
                    cx.out.event(frame);
                }
            }
            return;
        }
        let ends = self.agents.on_event(&event, &self.principal.user_id);
        let phase = self
            .sees_events
            .then(|| self.subscriptions.on_run(&event, &cx.state.config))
            .flatten();
        self.route(event, cx);
        if let Some(phase) = phase {
            cx.out.event(phase);
        }
        self.answer(cx, ends);
    }

    fn on_session(&mut self, change: &SessionChange, cx: &mut Cx<'_, Done>) {
        if !self.sees_events {
            return;
        }
        let v4 = self.protocol == Protocol::V4;
        for event in self.subscriptions.on_change(change, v4, &cx.state.config) {
            cx.out.event(event);
        }
    }

    fn on_note(&mut self, note: &TranscriptNote, cx: &mut Cx<'_, Done>) {
        if self.sees_events {
            cx.out.event(note::chat_final(note));
        }
    }

    fn on_approval(&mut self, event: &ExecApprovalEvent, cx: &mut Cx<'_, Done>) {
        if let Some(event) = approvals::event_for(&self.principal, event, false) {
            cx.out.event(event);
        }
    }

    fn on_pairing(&mut self, event: &PairingEvent, cx: &mut Cx<'_, Done>) {
        if !self.sees_pairing || !notify::concerns(event, &self.principal) {
            return;
        }
        if let Some(payload) = pairing::pairing_payload(event) {
            let name = notify::event_name(event);
            cx.out.event(EventOut::droppable(name, payload));
        }
    }

    fn on_node_invoke(&mut self, request: &NodeInvokeRequest, cx: &mut Cx<'_, Done>) {
        if self.node.is_some()
            && let Some(frame) = node_side::invoke_request(&self.principal, request)
        {
            cx.out.event(frame);
        }
    }

    fn on_node_pairing(&mut self, event: &NodePairingEvent, cx: &mut Cx<'_, Done>) {
        if self.node.is_some() {
            node_side::own_pairing(cx.state, &self.principal, event);
        } else if self.sees_pairing
            && node_side::sees_node_pairing(&self.principal, event)
            && let Some(frame) = node_side::pairing_frame(event)
        {
            cx.out.event(frame);
        }
    }

    fn is_target(&self, disconnect: &Disconnect) -> bool {
        let principal = &self.principal;
        if notify::targets_user(disconnect, principal) {
            return true;
        }
        !principal.device_id.is_empty()
            && disconnect.tenant_id == principal.tenant_id
            && disconnect.device_id == principal.device_id
            && (disconnect.role.is_empty() || disconnect.role == principal.role)
    }

    fn on_done(&mut self, done: Done, cx: &mut Cx<'_, Done>) {
        match done {
            Done::Call {
                id,
                reply,
                release_run,
                notices,
            } => {
                self.respond(cx, &id, &reply);
                notify::publish_in_background(cx.state, notices);
                if let Some(run_id) = release_run
                    && let Some(held) = self.held.remove(&run_id)
                {
                    for event in held {
                        self.live(event, cx);
                    }
                }
            }
            Done::Agent(accepted) => {
                let (run_id, id) = (accepted.run_id.clone(), accepted.id.clone());
                let (first, end) = self.agents.accepted(accepted);
                self.respond(cx, &id, &first);
                self.release(&run_id, cx);
                if let Some(end) = end {
                    self.respond(cx, &id, &end);
                }
            }
            Done::AgentChecked(result) => {
                let ends = self.agents.checked(result);
                self.answer(cx, ends);
            }
            Done::Backfill { run, events } => {
                let pending = self.backfilling.remove(&run).unwrap_or_default();
                // Only what came before the first live event: the live ones follow.
                let first_live = pending.first().map_or(u64::MAX, |e| e.seq);
                let earlier: Vec<RunEvent> =
                    events.into_iter().filter(|e| e.seq < first_live).collect();
                self.projector.absorb(&run, &earlier);
                for event in pending {
                    self.project(&event, cx);
                }
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx<'_, Done>) {
        cx.out
            .event(EventOut::broadcast("tick", json!({ "ts": now_ms() })));
        let (ends, checks) = self.agents.on_tick(Instant::now());
        self.answer(cx, ends);
        for run_id in checks {
            let (state, principal) = (cx.state.clone(), self.principal.clone());
            let span = tracing::debug_span!("ws.check_run", run_id = %run_id);
            cx.spawner.spawn(span, async move {
                let request = clawgate_proto::runner::GetRunRequest { run_id };
                Done::AgentChecked(state.services.runner.get_run(&principal, request).await)
            });
        }
    }

    fn on_health(&mut self, snapshot: &Snapshot, cx: &mut Cx<'_, Done>) {
        cx.out.event(health::event(snapshot));
    }

    fn on_shutdown(&mut self, cx: &mut Cx<'_, Done>) {
        cx.out.event(EventOut::broadcast(
            "shutdown",
            json!({
                "reason": "service restart",
                "restartExpectedMs": cx.state.config.restart_expected_ms,
            }),
        ));
    }
}
