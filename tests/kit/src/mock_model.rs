//! A mock model server: a real HTTP server on a loopback port that speaks the
//! OpenAI Chat Completions streaming (SSE) format, scripted per test.
//!
//! `POST /v1/chat/completions` (and `/chat/completions`) answers with
//! `text/event-stream`: one `data: {chunk}` event per scripted token, a chunk with
//! the finish reason, an optional usage chunk and `data: [DONE]`. A script can
//! instead fail with an HTTP status, or stream its tokens and then hang (for abort
//! tests). Every request is recorded (path, `Authorization` header, JSON body),
//! every token with the instant it was written to the response, and the instant
//! each answer was complete (for latency measurements).
//!
//! Which script answers a request: the next queued one
//! ([`MockModel::queue_script`]), else the [`Rule`] ([`MockModel::set_rule`],
//! chosen from the request body, for many concurrent conversations), else the
//! script of the request's model, else the main one. Scripts and rules live in
//! [`crate::mock_script`] and are re-exported here.
//!
//! [`MockModel::base_url`] is what a runner's provider base URL should be.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mock_script::last_user_message;
pub(crate) use crate::mock_script::split_words;
pub use crate::mock_script::{MockToolCall, Reply, Rule, Script};

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub path: String,
    /// The raw `Authorization` header, e.g. `Bearer sk-…`.
    pub authorization: Option<String>,
    pub body: Value,
    pub received_at: Instant,
}

impl RecordedRequest {
    pub fn model(&self) -> Option<&str> {
        self.body["model"].as_str()
    }

    /// `(role, content)` of each message sent.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|message| {
                (
                    message["role"].as_str().unwrap_or_default().to_owned(),
                    message["content"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    pub fn last_user_message(&self) -> Option<String> {
        last_user_message(&self.body)
    }
}

/// One token as the mock wrote it.
#[derive(Clone, Debug)]
pub struct TokenEmission {
    /// Index of the request (in [`MockModel::requests`]) it answered.
    pub request: usize,
    /// Position of the token in its reply.
    pub index: usize,
    pub text: String,
    pub at: Instant,
    pub wall_clock: SystemTime,
}

/// When the mock had queued the last bytes of its answer to a request (a
/// finished stream, a stream failure or an HTTP error; never for a hanging one).
#[derive(Clone, Copy, Debug)]
pub struct AnswerEnd {
    /// Index of the request (in [`MockModel::requests`]).
    pub request: usize,
    pub at: Instant,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<RecordedRequest>,
    emissions: Vec<TokenEmission>,
    answer_ends: Vec<AnswerEnd>,
}

pub(crate) struct MockState {
    script: Mutex<Script>,
    /// Scripts of requests naming these models (else `script`).
    model_scripts: Mutex<HashMap<String, Script>>,
    /// Scripts of the next requests, one each, before any other.
    queue: Mutex<VecDeque<Script>>,
    /// Chooses by the request body, after the queue (OpenAI mock only).
    rule: Mutex<Option<Rule>>,
    recorded: Mutex<Recorded>,
}

impl MockState {
    pub(crate) fn new(script: Script) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script),
            model_scripts: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            rule: Mutex::new(None),
            recorded: Mutex::new(Recorded::default()),
        })
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The script of a request for `model`: the next queued one, else the
    /// model's, else the main one.
    pub(crate) fn script_for(&self, model: Option<&str>) -> Script {
        self.choose(model, None)
    }

    /// The script of a request with `body`: the next queued one, else the
    /// rule's, else the model's, else the main one.
    pub(crate) fn script_for_request(&self, body: &Value) -> Script {
        self.choose(body["model"].as_str(), Some(body))
    }

    fn choose(&self, model: Option<&str>, body: Option<&Value>) -> Script {
        if let Some(next) = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return next;
        }
        let rule = self.rule.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let (Some(rule), Some(body)) = (rule, body)
            && let Some(script) = rule.choose(body)
        {
            return script;
        }
        let scripts = self.model_scripts.lock().unwrap_or_else(|p| p.into_inner());
        match model.and_then(|model| scripts.get(model)) {
            Some(script) => script.clone(),
            None => self.script().clone(),
        }
    }

    pub(crate) fn queue_script(&self, script: Script) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(script);
    }

    pub(crate) fn set_model_script(&self, model: &str, script: Script) {
        let mut scripts = self.model_scripts.lock().unwrap_or_else(|p| p.into_inner());
        scripts.insert(model.to_owned(), script);
    }

    fn set_rule(&self, rule: Option<Rule>) {
        *self.rule.lock().unwrap_or_else(|p| p.into_inner()) = rule;
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a request; its index.
    pub(crate) fn record(&self, path: &str, authorization: Option<String>, body: &Value) -> usize {
        let mut recorded = self.recorded();
        recorded.requests.push(RecordedRequest {
            path: path.to_owned(),
            authorization,
            body: body.clone(),
            received_at: Instant::now(),
        });
        recorded.requests.len() - 1
    }

    /// Records that token `index` of `request`'s reply was written.
    pub(crate) fn emitted(&self, request: usize, index: usize, text: &str) {
        self.recorded().emissions.push(TokenEmission {
            request,
            index,
            text: text.to_owned(),
            at: Instant::now(),
            wall_clock: SystemTime::now(),
        });
    }

    /// Records that the answer to `request` is complete.
    pub(crate) fn answered(&self, request: usize) {
        let at = Instant::now();
        self.recorded().answer_ends.push(AnswerEnd { request, at });
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded().requests.clone()
    }

    pub(crate) async fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.recorded().requests.len() >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.recorded().requests.len() >= count
    }
}

/// A running mock model server; stops accepting connections when dropped.
pub struct MockModel {
    addr: SocketAddr,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockModel {
    /// Starts the server on a free loopback port.
    pub async fn start(script: Script) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), script).await
    }

    /// Starts the server on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, script: Script) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(script);
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/chat/completions", post(chat_completions))
            .with_state(state.clone());
        // Each SSE chunk leaves at once (no Nagle delay), as from a real provider.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "mock model server stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// The provider base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the script for the following requests.
    pub fn set_script(&self, script: Script) {
        *self.state.script() = script;
    }

    /// Answers requests naming `model` with `script` (others keep the main one).
    pub fn set_model_script(&self, model: &str, script: Script) {
        self.state.set_model_script(model, script);
    }

    /// Answers the next request with `script` (queued scripts go first, in order).
    pub fn queue_script(&self, script: Script) {
        self.state.queue_script(script);
    }

    /// Lets `rule` choose the script of each request by its body (after the
    /// queued scripts, before the model's and the main one).
    pub fn set_rule(&self, rule: Rule) {
        self.state.set_rule(Some(rule));
    }

    pub fn clear_rule(&self) {
        self.state.set_rule(None);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Every token written so far, in emission order.
    pub fn emissions(&self) -> Vec<TokenEmission> {
        self.state.recorded().emissions.clone()
    }

    /// When each complete answer so far was done, in completion order.
    pub fn answer_ends(&self) -> Vec<AnswerEnd> {
        self.state.recorded().answer_ends.clone()
    }

    /// Waits until at least `count` requests arrived; false after `limit`.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        self.state.wait_for_requests(count, limit).await
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn chat_completions(
    State(state): State<Arc<MockState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "request body is not JSON");
    };
    let script = state.script_for_request(&body);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let request_index = state.record(uri.path(), authorization, &body);
    if let Some(status) = script.status {
        let mut response = error_response(status, "scripted failure");
        let scripted = script.retry_after.as_deref();
        if let Some(value) = scripted.and_then(|v| header::HeaderValue::from_str(v).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        state.answered(request_index);
        return response;
    }
    let tokens = match &script.reply {
        Reply::Tokens(tokens) => tokens.clone(),
        Reply::EchoLastUser => split_words(&last_user_message(&body).unwrap_or_default()),
    };
    let model = body["model"].as_str().unwrap_or("mock-model").to_owned();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(produce(state, request_index, script, tokens, model, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(500, "cannot build the response"))
}

/// Writes the scripted stream into `tx`; stops early when the client leaves.
async fn produce(
    state: Arc<MockState>,
    request: usize,
    script: Script,
    tokens: Vec<String>,
    model: String,
    tx: mpsc::Sender<Bytes>,
) {
    let chunk = |delta: Value, finish_reason: Value| {
        event(&json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }))
    };
    if tx
        .send(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ))
        .await
        .is_err()
    {
        return;
    }
    let started = tokio::time::Instant::now();
    for (index, token) in tokens.iter().enumerate() {
        if script.steady {
            let due = u32::try_from(index + 1).unwrap_or(u32::MAX);
            tokio::time::sleep_until(started + script.delay.saturating_mul(due)).await;
        } else if !script.delay.is_zero() {
            tokio::time::sleep(script.delay).await;
        }
        if tx
            .send(chunk(json!({"content": token}), Value::Null))
            .await
            .is_err()
        {
            return;
        }
        state.emitted(request, index, token);
    }
    // Each call's arguments arrive in two pieces, the second without id or
    // name, as real providers split them.
    for (index, call) in script.tool_calls.iter().enumerate() {
        let (head, tail) = split_in_two(&call.arguments_json);
        let first = json!({"tool_calls": [{
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": head},
        }]});
        let second = json!({"tool_calls": [{"index": index, "function": {"arguments": tail}}]});
        for delta in [first, second] {
            if tx.send(chunk(delta, Value::Null)).await.is_err() {
                return;
            }
        }
    }
    if let Some(kind) = &script.stream_error {
        let error =
            json!({"error": {"message": "scripted stream failure", "type": kind, "code": null}});
        if tx.send(event(&error)).await.is_ok() {
            state.answered(request);
        }
        return;
    }
    if script.hang {
        tx.closed().await;
        return;
    }
    let finish_reason = if script.tool_calls.is_empty() {
        script.finish_reason.clone()
    } else {
        "tool_calls".to_owned()
    };
    let mut tail = vec![chunk(json!({}), Value::String(finish_reason))];
    if let Some((prompt_tokens, completion_tokens)) = script.usage {
        tail.push(event(&json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        })));
    }
    tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
    for bytes in tail {
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
    state.answered(request);
}

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        401 => "invalid_request_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "code": null}});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        // A scripted `Retry-After` replaces this one.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// `text` cut near its middle, on a character boundary.
pub(crate) fn split_in_two(text: &str) -> (&str, &str) {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    text.split_at(middle)
}
