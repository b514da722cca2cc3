//! The goclaw dialect of an authenticated connection.
//!
//! `chat.send` answers only when its run ends: the connection keeps a waiter per
//! run id, registered *before* the run is started, so a run that ends before
//! `start_run` returns is still answered. A waiter whose terminal event never
//! arrives (the bus is at most once) is checked against the runner on each tick.
//! Runs outlive sockets: a client that reconnects elsewhere loses the pending
//! answer and recovers with `chat.history`.
//!
//! A socket whose browser pairing is pending is not authenticated: it may only
//! call `browser.pairing.status` (anything else is `UNAUTHORIZED`, fail-closed),
//! sees no event, and is closed when its pairing code expires.
//!
//! Run events: an admin or owner socket receives the runs of every user of its
//! tenant (goclaw §2.7 rule 4), any other socket only its own user's (the hub
//! decides, see [`crate::hub`]); every run event names its `userId`. Only the
//! socket's own runs answer its `chat.send` waiters: run ids are idempotency
//! keys, so another user's run may carry the same id.
//!
//! Invariants: waiters are bounded (`max_pending_chat_sends`); every request is
//! answered exactly once; errors carry goclaw codes; pairing events reach only
//! admins and owners of the tenant (goclaw §2.7: pairing is admin only, so the
//! own-user rule that OpenClaw operators get does not apply here); a sender
//! revocation closes the sockets that authenticated as that sender, a user's
//! removal every socket of that user.

pub mod authz;
pub mod chat_send;
pub mod connect;
pub mod pairing;
pub mod projection;

use std::collections::HashMap;
use std::sync::Arc;

use clawgate_proto::pb::common::v1::{Disconnect, ExecApprovalEvent, PairingEvent, RunEvent};
use clawgate_proto::runner::{GetRunRequest, RunInfo, RunnerApi, StartRunResponse, StartStatus};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use crate::conn::{Cx, DialectConn};
use crate::frames::{self, CLOSE_NORMAL, ErrorShape, Inbound, Request};
use crate::methods::{self, Handler, Job, Method, approvals, system};
use crate::notify::{self, Notice};
use crate::out::EventOut;
use crate::params::Style;
use crate::state::SocketInfo;

/// The only method a socket whose browser pairing is pending may call.
const PAIRING_STATUS: &str = "browser.pairing.status";

/// The result of a spawned call.
#[derive(Debug)]
pub enum Done {
    Reply {
        id: String,
        result: Result<Value, ServiceError>,
        /// Published once the reply is queued.
        notices: Vec<Notice>,
    },
    Started {
        id: String,
        run_id: String,
        result: Result<StartRunResponse, ServiceError>,
    },
    Checked {
        run_id: String,
        result: Result<RunInfo, ServiceError>,
    },
}

#[derive(Debug, Default)]
struct Waiter {
    /// Requests whose `start_run` has not returned yet.
    starting: Vec<String>,
    /// Requests waiting for the run to end.
    waiting: Vec<String>,
    /// The run's terminal event, if it came while requests were starting.
    terminal: Option<Arc<RunEvent>>,
    /// Ticks seen while requests were waiting.
    ticks: u32,
}

pub struct Conn {
    principal: Principal,
    remote_addr: String,
    connected_at_ms: i64,
    waiters: HashMap<String, Waiter>,
    /// Browser pairing pending until this time (epoch ms): not authenticated.
    pending_until_ms: Option<i64>,
    /// The (sender id, channel) this connection authenticated as.
    paired_sender: Option<(String, String)>,
}

fn respond(cx: &mut Cx<'_, Done>, id: &str, result: &Result<Value, ServiceError>) {
    match result {
        Ok(payload) => cx.out.response(id, Some(payload), None),
        Err(err) => cx.out.response(id, None, Some(&ErrorShape::goclaw(err))),
    }
}

impl Conn {
    pub fn new(
        principal: Principal,
        info: &SocketInfo,
        pending_until_ms: Option<i64>,
        paired_sender: Option<(String, String)>,
    ) -> Self {
        Self {
            principal,
            remote_addr: info.peer.remote_addr.clone(),
            connected_at_ms: now_ms(),
            waiters: HashMap::new(),
            pending_until_ms,
            paired_sender,
        }
    }

    /// Spawns a validated call; answers it when it is done.
    fn spawn_call(
        &self,
        id: String,
        call: Box<dyn Job>,
        span: tracing::Span,
        cx: &mut Cx<'_, Done>,
    ) {
        let (state, principal, task_id) = (cx.state.clone(), self.principal.clone(), id.clone());
        let spawned = cx.spawner.spawn(span, async move {
            let outcome = call.run(state, principal, Style::Snake).await;
            Done::Reply {
                id: task_id,
                result: outcome.result,
                notices: outcome.notices,
            }
        });
        if !spawned {
            let err = ServiceError::unavailable("too many requests in flight");
            respond(cx, &id, &Err(err));
        }
    }

    /// Parses `request` for `method` and runs what it asks.
    fn dispatch(
        &mut self,
        method: &'static Method,
        request: Request,
        span: tracing::Span,
        cx: &mut Cx<'_, Done>,
    ) {
        let parsed = methods::Request {
            method: method.name,
            params: &request.params,
            style: Style::Snake,
            principal: &self.principal,
            config: &cx.state.config,
            protocol: None,
        };
        match method.handler {
            Handler::Connect => {
                let err = ServiceError::invalid("already connected");
                respond(cx, &request.id, &Err(err));
            }
            Handler::Health => {
                let payload = system::goclaw_health(
                    cx.state,
                    &self.principal,
                    &self.remote_addr,
                    self.connected_at_ms,
                );
                respond(cx, &request.id, &Ok(payload));
            }
            Handler::Agent(_) | Handler::Subscribe(_) => {
                // Declarations offer two-phase and subscription methods to
                // OpenClaw only (a test).
                let err = ServiceError::internal("not a goclaw method");
                respond(cx, &request.id, &Err(err));
            }
            Handler::ChatSend(parse) => match parse(&parsed) {
                Ok(start) => self.chat_send(request.id, start, span, cx),
                Err(err) => respond(cx, &request.id, &Err(err)),
            },
            Handler::Call(parse) => match parse(&parsed) {
                Ok(call) => self.spawn_call(request.id, call, span, cx),
                Err(err) => respond(cx, &request.id, &Err(err)),
            },
        }
    }

    /// A request of a socket whose pairing is pending: only the status poll.
    fn pending_request(&mut self, request: Request, span: tracing::Span, cx: &mut Cx<'_, Done>) {
        let status = methods::find(PAIRING_STATUS).filter(|_| request.method == PAIRING_STATUS);
        let Some(method) = status else {
            let err = ServiceError::unauthorized(format!(
                "{} requires pairing approval; reconnect once paired",
                request.method
            ));
            respond(cx, &request.id, &Err(err));
            return;
        };
        self.dispatch(method, request, span, cx);
    }

    fn request(&mut self, request: Request, cx: &mut Cx<'_, Done>) {
        let span =
            tracing::info_span!("ws.request", method = %request.method, req_id = %request.id);
        let _enter = span.enter();
        tracing::debug!("request");
        if self.pending_until_ms.is_some() {
            self.pending_request(request, span.clone(), cx);
            return;
        }
        match authz::authorize(&self.principal, &request.method) {
            Ok(method) => self.dispatch(method, request, span.clone(), cx),
            Err(err) => respond(cx, &request.id, &Err(err)),
        }
    }

    fn chat_send(
        &mut self,
        id: String,
        start: clawgate_proto::runner::StartRunRequest,
        span: tracing::Span,
        cx: &mut Cx<'_, Done>,
    ) {
        let run_id = start.idempotency_key.clone();
        if !self.waiters.contains_key(&run_id)
            && self.waiters.len() >= cx.state.config.max_pending_chat_sends
        {
            let err = ServiceError::new(
                clawgate_proto::ErrorCode::ResourceExhausted,
                "too many chat.send calls waiting",
            );
            respond(cx, &id, &Err(err));
            return;
        }
        self.waiters
            .entry(run_id.clone())
            .or_default()
            .starting
            .push(id.clone());
        let (state, principal) = (cx.state.clone(), self.principal.clone());
        let (task_id, task_run) = (id.clone(), run_id.clone());
        let spawned = cx.spawner.spawn(span, async move {
            let result = state.services.runner.start_run(&principal, start).await;
            Done::Started {
                id: task_id,
                run_id: task_run,
                result,
            }
        });
        if !spawned {
            self.forget_request(&run_id, &id);
            respond(
                cx,
                &id,
                &Err(ServiceError::unavailable("too many requests in flight")),
            );
        }
    }

    /// Removes `id` from the waiter of `run_id`, dropping the waiter when empty.
    fn forget_request(&mut self, run_id: &str, id: &str) {
        if let Some(waiter) = self.waiters.get_mut(run_id) {
            waiter.starting.retain(|pending| pending != id);
            waiter.waiting.retain(|pending| pending != id);
            if waiter.starting.is_empty() && waiter.waiting.is_empty() {
                self.waiters.remove(run_id);
            }
        }
    }

    fn started(
        &mut self,
        id: String,
        run_id: String,
        result: Result<StartRunResponse, ServiceError>,
        cx: &mut Cx<'_, Done>,
    ) {
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                self.forget_request(&run_id, &id);
                respond(cx, &id, &Err(err));
                return;
            }
        };
        let answer = match StartStatus::try_from(response.status) {
            Ok(StartStatus::Started | StartStatus::InFlight) => {
                let terminal = self.waiters.get(&run_id).and_then(|w| w.terminal.clone());
                match terminal {
                    Some(event) => Some(chat_send::final_from_event(&event)),
                    None => {
                        let waiter = self.waiters.entry(run_id).or_default();
                        waiter.starting.retain(|pending| pending != &id);
                        waiter.waiting.push(id);
                        return;
                    }
                }
            }
            Ok(StartStatus::Done) => Some(
                response
                    .run
                    .as_ref()
                    .and_then(chat_send::final_from_run)
                    .unwrap_or_else(|| Ok(json!({ "runId": response.run_id, "content": "" }))),
            ),
            Ok(StartStatus::StopCommand) => Some(Ok(json!({
                "cancelled": true, "aborted": response.aborted, "runIds": response.aborted_run_ids,
            }))),
            Ok(StartStatus::Unspecified) | Err(_) => Some(Err(ServiceError::internal(
                "runner returned no start status",
            ))),
        };
        self.forget_request(&run_id, &id);
        if let Some(answer) = answer {
            respond(cx, &id, &answer);
        }
    }

    /// Answers every request waiting for `run_id` with `answer`.
    fn finish(
        &mut self,
        run_id: &str,
        answer: &Result<Value, ServiceError>,
        cx: &mut Cx<'_, Done>,
    ) {
        let Some(waiter) = self.waiters.get_mut(run_id) else {
            return;
        };
        for id in std::mem::take(&mut waiter.waiting) {
            respond(cx, &id, answer);
        }
        if waiter.starting.is_empty() {
            self.waiters.remove(run_id);
        }
    }
}

impl DialectConn for Conn {
    type Done = Done;

    fn on_text(&mut self, text: &str, cx: &mut Cx<'_, Done>) {
        match frames::parse_goclaw(text) {
            Inbound::NotJson(err) => {
                let err = ServiceError::invalid(format!("invalid frame: {err}"));
                cx.out.response("", None, Some(&ErrorShape::goclaw(&err)));
            }
            Inbound::Invalid { id, reason } => {
                let err = ServiceError::invalid(reason);
                cx.out.response(
                    id.as_deref().unwrap_or_default(),
                    None,
                    Some(&ErrorShape::goclaw(&err)),
                );
            }
            Inbound::Request(request) => self.request(request, cx),
        }
    }

    fn on_event(&mut self, event: Arc<RunEvent>, cx: &mut Cx<'_, Done>) {
        if let Some(frame) = projection::project(&event) {
            cx.out.event(frame);
        }
        let own = event.user_id == self.principal.user_id;
        if own && projection::is_terminal(&event) && self.waiters.contains_key(&event.run_id) {
            let answer = chat_send::final_from_event(&event);
            if let Some(waiter) = self.waiters.get_mut(&event.run_id) {
                waiter.terminal = Some(event.clone());
            }
            self.finish(&event.run_id, &answer, cx);
        }
    }

    fn on_approval(&mut self, event: &ExecApprovalEvent, cx: &mut Cx<'_, Done>) {
        if self.pending_until_ms.is_none()
            && let Some(event) = approvals::event_for(&self.principal, event, true)
        {
            cx.out.event(event);
        }
    }

    fn on_pairing(&mut self, event: &PairingEvent, cx: &mut Cx<'_, Done>) {
        if self.pending_until_ms.is_some()
            || !authz::is_admin(&self.principal.role)
            || !notify::concerns(event, &self.principal)
        {
            return;
        }
        if let Some(payload) = pairing::pairing_payload(event) {
            let name = notify::event_name(event);
            cx.out.event(EventOut::droppable(name, payload));
        }
    }

    fn is_target(&self, disconnect: &Disconnect) -> bool {
        if self.pending_until_ms.is_none() && notify::targets_user(disconnect, &self.principal) {
            return true;
        }
        disconnect.tenant_id == self.principal.tenant_id
            && !disconnect.sender_id.is_empty()
            && self
                .paired_sender
                .as_ref()
                .is_some_and(|(sender, channel)| {
                    *sender == disconnect.sender_id && *channel == disconnect.channel
                })
    }

    fn on_done(&mut self, done: Done, cx: &mut Cx<'_, Done>) {
        match done {
            Done::Reply {
                id,
                result,
                notices,
            } => {
                respond(cx, &id, &result);
                notify::publish_in_background(cx.state, notices);
            }
            Done::Started { id, run_id, result } => self.started(id, run_id, result, cx),
            Done::Checked { run_id, result } => {
                if let Some(answer) = result.ok().as_ref().and_then(chat_send::final_from_run) {
                    self.finish(&run_id, &answer, cx);
                }
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx<'_, Done>) {
        if self.pending_until_ms.is_some_and(|until| now_ms() >= until) {
            cx.out.close(CLOSE_NORMAL, "pairing code expired");
            return;
        }
        // goclaw clients get no tick event; the tick only re-checks long waits.
        for (run_id, waiter) in &mut self.waiters {
            if waiter.waiting.is_empty() || waiter.terminal.is_some() {
                continue;
            }
            waiter.ticks += 1;
            if waiter.ticks < 2 {
                continue;
            }
            let (state, principal, run_id) =
                (cx.state.clone(), self.principal.clone(), run_id.clone());
            let span = tracing::debug_span!("ws.check_run", run_id = %run_id);
            cx.spawner.spawn(span, async move {
                let request = GetRunRequest {
                    run_id: run_id.clone(),
                };
                let result = state.services.runner.get_run(&principal, request).await;
                Done::Checked { run_id, result }
            });
        }
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
