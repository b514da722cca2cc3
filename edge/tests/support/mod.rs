//! Scriptable stand-ins for the auth, runner and session services, an edge wired
//! to them over the in-process bus, and a raw WebSocket client. They exercise the
//! edge alone, with timings and volumes the real services cannot be made to
//! produce on demand; the full gateway is covered by the workspace's e2e tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_edge::{Edge, EdgeConfig, EdgeServices};
use clawgate_proto::auth::{
    AuthApi, AuthClient, AuthenticateConnectRequest, AuthenticateConnectResponse,
};
use clawgate_proto::pb::auth::v1::{authenticate_connect_request, authenticate_connect_response};
use clawgate_proto::pb::common::v1::{
    AssistantDelta, BusMessage, LifecycleEnd, LifecycleStart, RunEvent, RunOutcome, Usage,
    bus_message, run_event,
};
use clawgate_proto::runner::{
    AbortRunRequest, AbortRunResponse, GetRunRequest, RunInfo, RunState, RunnerApi, RunnerClient,
    StartRunRequest, StartRunResponse, StartStatus,
};
use clawgate_proto::session::{
    ListMessagesRequest, ListMessagesResponse, ListSessionsRequest, ListSessionsResponse, Session,
    SessionApi, SessionClient, TranscriptMessage,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::{EventBus, Topic};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "secret";

pub struct FakeAuth;

#[async_trait]
impl AuthApi for FakeAuth {
    async fn authenticate_connect(
        &self,
        _principal: &Principal,
        request: AuthenticateConnectRequest,
    ) -> Result<AuthenticateConnectResponse, ServiceError> {
        let (token, principal) = match request.connect {
            Some(authenticate_connect_request::Connect::Openclaw(c)) => {
                let role = if c.role.is_empty() {
                    "operator".into()
                } else {
                    c.role
                };
                let principal = Principal {
                    tenant_id: "default".into(),
                    user_id: "owner".into(),
                    role,
                    scopes: c.scopes,
                    ..Default::default()
                };
                (c.token.unwrap_or_default(), principal)
            }
            Some(authenticate_connect_request::Connect::Goclaw(c)) => {
                let user = if c.user_id.is_empty() {
                    "owner".into()
                } else {
                    c.user_id
                };
                let role = if user.starts_with("viewer") {
                    "viewer"
                } else {
                    "admin"
                };
                let principal = Principal {
                    tenant_id: "default".into(),
                    user_id: user,
                    role: role.into(),
                    scopes: vec!["operator.admin".into()],
                    ..Default::default()
                };
                (c.token, principal)
            }
            None => return Err(ServiceError::invalid("no connect")),
        };
        if token.is_empty() {
            return Err(ServiceError::unauthorized("gateway token missing")
                .with_details(json!({"code": "AUTH_TOKEN_MISSING"})));
        }
        if token != TOKEN {
            return Err(ServiceError::unauthorized("gateway token mismatch")
                .with_details(json!({"code": "AUTH_TOKEN_MISMATCH"})));
        }
        Ok(AuthenticateConnectResponse {
            outcome: Some(authenticate_connect_response::Outcome::Principal(principal)),
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone)]
struct FakeRun {
    info: RunInfo,
    aborted: bool,
}

/// A runner whose runs are scripted by the message: `tokens:N:DELAY_MS` streams N
/// tokens `tK ` DELAY_MS apart; `hang` streams nothing until aborted; `stop`
/// aborts the session's runs; anything else replies `echo: <message>` in 3 tokens.
#[derive(Clone)]
pub struct FakeRunner {
    bus: Arc<dyn EventBus>,
    runs: Arc<Mutex<HashMap<String, FakeRun>>>,
}

impl FakeRunner {
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self {
            bus,
            runs: Arc::default(),
        }
    }
}

pub async fn publish(bus: &dyn EventBus, event: RunEvent) {
    let topic = Topic::user(&event.tenant_id, &event.user_id);
    let message = BusMessage {
        body: Some(bus_message::Body::RunEvent(event)),
    };
    bus.publish(&topic, message.encode_to_vec().into())
        .await
        .unwrap();
}

fn script(message: &str) -> (Vec<String>, Duration) {
    if let Some(spec) = message.strip_prefix("tokens:") {
        let mut parts = spec.split(':');
        let n: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(3);
        let delay: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(10);
        return (
            (0..n).map(|k| format!("t{k} ")).collect(),
            Duration::from_millis(delay),
        );
    }
    if message == "hang" {
        return (Vec::new(), Duration::from_secs(3600));
    }
    let reply = format!("echo: {message}");
    let third = reply.len() / 3;
    let tokens = vec![
        reply[..third].to_owned(),
        reply[third..2 * third].to_owned(),
        reply[2 * third..].to_owned(),
    ];
    (tokens, Duration::from_millis(5))
}

#[async_trait]
impl RunnerApi for FakeRunner {
    async fn start_run(
        &self,
        principal: &Principal,
        request: StartRunRequest,
    ) -> Result<StartRunResponse, ServiceError> {
        let run_id = request.idempotency_key.clone();
        if request.message == "stop" {
            let mut aborted_ids = Vec::new();
            for run in self.runs.lock().unwrap().values_mut() {
                if run.info.session_key == request.session_key
                    && run.info.state == RunState::Running as i32
                {
                    run.aborted = true;
                    aborted_ids.push(run.info.run_id.clone());
                }
            }
            return Ok(StartRunResponse {
                run_id,
                status: StartStatus::StopCommand as i32,
                aborted: !aborted_ids.is_empty(),
                aborted_run_ids: aborted_ids,
                ..Default::default()
            });
        }
        if let Some(run) = self.runs.lock().unwrap().get(&run_id) {
            let done = run.info.state != RunState::Running as i32;
            return Ok(StartRunResponse {
                run_id,
                status: if done {
                    StartStatus::Done
                } else {
                    StartStatus::InFlight
                } as i32,
                run: done.then(|| run.info.clone()),
                ..Default::default()
            });
        }
        let info = RunInfo {
            run_id: run_id.clone(),
            session_key: request.session_key.clone(),
            agent_id: request.agent_id.clone(),
            state: RunState::Running as i32,
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            ..Default::default()
        };
        self.runs.lock().unwrap().insert(
            run_id.clone(),
            FakeRun {
                info,
                aborted: false,
            },
        );
        let base = RunEvent {
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            session_key: request.session_key.clone(),
            run_id: run_id.clone(),
            agent_id: request.agent_id.clone(),
            ..Default::default()
        };
        // The start event is published before start_run returns, so the edge must
        // hold it until the ack is out.
        let start = RunEvent {
            seq: 1,
            ts_ms: 1,
            kind: Some(run_event::Kind::Start(LifecycleStart { started_at_ms: 1 })),
            ..base.clone()
        };
        publish(self.bus.as_ref(), start).await;
        let (tokens, delay) = script(&request.message);
        let (bus, runs) = (self.bus.clone(), self.runs.clone());
        tokio::spawn(async move {
            let mut text = String::new();
            let mut seq = 1;
            let mut aborted = false;
            let mut remaining = tokens.into_iter();
            let hang = delay >= Duration::from_secs(3600);
            loop {
                tokio::time::sleep(if hang {
                    Duration::from_millis(20)
                } else {
                    delay
                })
                .await;
                if runs
                    .lock()
                    .unwrap()
                    .get(&base.run_id)
                    .is_some_and(|r| r.aborted)
                {
                    aborted = true;
                    break;
                }
                if hang {
                    continue;
                }
                let Some(token) = remaining.next() else { break };
                seq += 1;
                let offset = text.len() as u64;
                text.push_str(&token);
                let event = RunEvent {
                    seq,
                    ts_ms: seq as i64,
                    kind: Some(run_event::Kind::Assistant(AssistantDelta {
                        delta: token,
                        offset,
                    })),
                    ..base.clone()
                };
                publish(bus.as_ref(), event).await;
            }
            seq += 1;
            let outcome = if aborted {
                RunOutcome::Aborted
            } else {
                RunOutcome::Completed
            };
            let end = LifecycleEnd {
                started_at_ms: 1,
                ended_at_ms: 2,
                outcome: outcome as i32,
                stop_reason: if aborted { "rpc" } else { "stop" }.into(),
                text: text.clone(),
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4,
                    total_tokens: 7,
                }),
            };
            if let Some(run) = runs.lock().unwrap().get_mut(&base.run_id) {
                run.info.state = if aborted {
                    RunState::Aborted
                } else {
                    RunState::Completed
                } as i32;
                run.info.text = text;
            }
            let event = RunEvent {
                seq,
                ts_ms: seq as i64,
                kind: Some(run_event::Kind::End(end)),
                ..base
            };
            publish(bus.as_ref(), event).await;
        });
        Ok(StartRunResponse {
            run_id,
            status: StartStatus::Started as i32,
            ..Default::default()
        })
    }

    async fn abort_run(
        &self,
        _principal: &Principal,
        request: AbortRunRequest,
    ) -> Result<AbortRunResponse, ServiceError> {
        let mut ids = Vec::new();
        for run in self.runs.lock().unwrap().values_mut() {
            let matches = run.info.session_key == request.session_key
                && (request.run_id.is_empty() || request.run_id == run.info.run_id);
            if matches && run.info.state == RunState::Running as i32 && !run.aborted {
                run.aborted = true;
                ids.push(run.info.run_id.clone());
            }
        }
        Ok(AbortRunResponse {
            aborted: !ids.is_empty(),
            run_ids: ids,
        })
    }

    async fn get_run(
        &self,
        _principal: &Principal,
        request: GetRunRequest,
    ) -> Result<RunInfo, ServiceError> {
        self.runs
            .lock()
            .unwrap()
            .get(&request.run_id)
            .map(|run| run.info.clone())
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such run"))
    }
}

pub struct FakeSession;

#[async_trait]
impl SessionApi for FakeSession {
    async fn list_sessions(
        &self,
        principal: &Principal,
        request: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, ServiceError> {
        principal.require()?;
        let session = Session {
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            message_count: 2,
            ..Default::default()
        };
        let sessions = if request.offset > 0 {
            Vec::new()
        } else {
            vec![session]
        };
        Ok(ListSessionsResponse { sessions, total: 1 })
    }

    async fn list_messages(
        &self,
        principal: &Principal,
        request: ListMessagesRequest,
    ) -> Result<ListMessagesResponse, ServiceError> {
        principal.require()?;
        let row = |seq: u64, role: &str, content: &str| TranscriptMessage {
            id: format!("m{seq}"),
            session_key: request.session_key.clone(),
            seq,
            role: role.into(),
            content: content.into(),
            created_at_ms: 1_000 * seq as i64,
            ..Default::default()
        };
        Ok(ListMessagesResponse {
            messages: vec![row(1, "user", "hi"), row(2, "assistant", "hello")],
        })
    }
}

/// An edge on a loopback port with the fakes behind it.
pub struct TestEdge {
    pub url: String,
    pub edge: Edge,
    pub bus: Arc<dyn EventBus>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestEdge {
    pub async fn start(config: EdgeConfig) -> Self {
        let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
        let services = EdgeServices {
            auth: AuthClient::local(Arc::new(FakeAuth)),
            runner: RunnerClient::local(Arc::new(FakeRunner::new(bus.clone()))),
            session: SessionClient::local(Arc::new(FakeSession)),
            bus: bus.clone(),
        };
        let edge = Edge::start(config, services).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(edge.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            edge,
            bus,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(5);

/// A raw WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    pub async fn open(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws, next_id: 0 }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn req(&mut self, method: &str, params: Value) -> String {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        self.send(json!({"type": "req", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("frame in time");
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// The next frame that is not a `tick`.
    pub async fn recv_no_tick(&mut self) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] != "tick" {
                return frame;
            }
        }
    }

    /// Sends a request and waits for its response, returning the frames seen
    /// before it too.
    pub async fn call(&mut self, method: &str, params: Value) -> (Value, Vec<Value>) {
        let id = self.req(method, params).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "res" && frame["id"] == id {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Waits for the close frame: `(code, reason)`; `None` when the connection
    /// ended without one.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Some((u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads the challenge and connects as an OpenClaw operator with `scopes`.
    pub async fn openclaw(url: &str, scopes: &[&str]) -> (Self, Value) {
        let mut client = Self::open(url).await;
        let challenge = client.recv().await;
        assert_eq!(challenge["event"], "connect.challenge");
        let (res, _) = client.call("connect", openclaw_params(TOKEN, scopes)).await;
        assert_eq!(res["ok"], true, "{res}");
        (client, res["payload"].clone())
    }

    /// Connects as goclaw user `user`.
    pub async fn goclaw(url: &str, user: &str) -> (Self, Value) {
        let mut client = Self::open(url).await;
        let challenge = client.recv().await;
        assert_eq!(challenge["event"], "connect.challenge");
        let (res, _) = client
            .call("connect", json!({"token": TOKEN, "user_id": user}))
            .await;
        assert_eq!(res["ok"], true, "{res}");
        (client, res["payload"].clone())
    }
}

pub fn openclaw_params(token: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 3, "maxProtocol": 3,
        "client": {"id": "test", "version": "1.0", "platform": "linux", "mode": "test"},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

pub fn config() -> EdgeConfig {
    EdgeConfig {
        version: "test".into(),
        ..EdgeConfig::default()
    }
}
