//! A mock model server: a real HTTP server on a loopback port that speaks the
//! OpenAI Chat Completions streaming (SSE) format, scripted per test.
//!
//! `POST /v1/chat/completions` (and `/chat/completions`) answers with
//! `text/event-stream`: one `data: {chunk}` event per scripted token, a chunk with
//! the finish reason, an optional usage chunk and `data: [DONE]`. A script can
//! instead fail with an HTTP status, or stream its tokens and then hang (for abort
//! tests). Every request is recorded (path, `Authorization` header, JSON body), and
//! every token with the instant it was written to the response (for latency
//! measurements).
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

/// What the reply text is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// These tokens, in order.
    Tokens(Vec<String>),
    /// The content of the last user message of the request, streamed word by word.
    EchoLastUser,
}

/// A tool call the mock streams after its text (as OpenAI `tool_calls` deltas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    pub arguments_json: String,
}

/// How the mock answers each request.
#[derive(Clone, Debug)]
pub struct Script {
    pub reply: Reply,
    /// Waited before each token.
    pub delay: Duration,
    /// Sent as a usage chunk before `[DONE]`: (prompt_tokens, completion_tokens).
    pub usage: Option<(u64, u64)>,
    /// Answer with this HTTP status and an OpenAI error body instead of a stream.
    pub status: Option<u16>,
    /// After the tokens, keep the stream open without finishing (until the client leaves).
    pub hang: bool,
    pub finish_reason: String,
    pub tool_calls: Vec<MockToolCall>,
    /// Token `i` is due `(i + 1) × delay` after the stream starts, instead of
    /// `delay` after the previous one, so timer rounding does not accumulate.
    pub steady: bool,
    /// The `Retry-After` header of a scripted failure (a 429 sends `1` unless set).
    pub retry_after: Option<String>,
    /// Reasoning streamed before the text (the Anthropic mock's thinking block).
    pub thinking: Vec<String>,
    /// After the tokens, fail the stream with this provider error type (e.g.
    /// `overloaded_error`) instead of finishing it.
    pub stream_error: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            reply: Reply::Tokens(Vec::new()),
            delay: Duration::ZERO,
            usage: None,
            status: None,
            hang: false,
            finish_reason: "stop".to_owned(),
            tool_calls: Vec::new(),
            steady: false,
            retry_after: None,
            thinking: Vec::new(),
            stream_error: None,
        }
    }
}

impl Script {
    /// Streams `tokens` in order.
    pub fn tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            reply: Reply::Tokens(tokens.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// Streams `text` word by word (each token keeps its trailing whitespace).
    pub fn text(text: &str) -> Self {
        Self::tokens(split_words(text))
    }

    /// Replies with the last user message of each request.
    pub fn echo() -> Self {
        Self {
            reply: Reply::EchoLastUser,
            ..Self::default()
        }
    }

    /// Fails every request with `status` and an OpenAI-style error body.
    pub fn http_error(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }

    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = reason.into();
        self
    }

    pub fn with_tool_call(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        arguments_json: impl Into<String>,
    ) -> Self {
        self.tool_calls.push(MockToolCall {
            id: id.into(),
            name: name.into(),
            arguments_json: arguments_json.into(),
        });
        self
    }

    /// Paces tokens at a steady rate of one per `delay` (see [`Script::steady`]).
    pub fn with_steady_rate(mut self) -> Self {
        self.steady = true;
        self
    }

    /// Sends `Retry-After: value` with a scripted failure.
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Streams `thinking` as reasoning before the text (Anthropic mock).
    pub fn with_thinking(mut self, thinking: &str) -> Self {
        self.thinking = split_words(thinking);
        self
    }

    /// Streams the tokens, then fails the stream with provider error `kind`.
    pub fn then_fail(mut self, kind: impl Into<String>) -> Self {
        self.stream_error = Some(kind.into());
        self
    }

    /// Streams the tokens, then keeps the response open forever.
    pub fn then_hang(mut self) -> Self {
        self.hang = true;
        self
    }
}

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

#[derive(Default)]
struct Recorded {
    requests: Vec<RecordedRequest>,
    emissions: Vec<TokenEmission>,
}

pub(crate) struct MockState {
    script: Mutex<Script>,
    /// Scripts of requests naming these models (else `script`).
    model_scripts: Mutex<HashMap<String, Script>>,
    /// Scripts of the next requests, one each, before any other.
    queue: Mutex<VecDeque<Script>>,
    recorded: Mutex<Recorded>,
}

impl MockState {
    pub(crate) fn new(script: Script) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script),
            model_scripts: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            recorded: Mutex::new(Recorded::default()),
        })
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The script of a request for `model`: the next queued one, else the
    /// model's, else the main one.
    pub(crate) fn script_for(&self, model: Option<&str>) -> Script {
        if let Some(next) = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return next;
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

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Every token written so far, in emission order.
    pub fn emissions(&self) -> Vec<TokenEmission> {
        self.state.recorded().emissions.clone()
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
    let script = state.script_for(body["model"].as_str());
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
        let _ = tx.send(event(&error)).await;
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

fn last_user_message(body: &Value) -> Option<String> {
    body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|message| message["role"] == "user")
        .and_then(|message| message["content"].as_str())
        .map(str::to_owned)
}

/// `text` cut near its middle, on a character boundary.
pub(crate) fn split_in_two(text: &str) -> (&str, &str) {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    text.split_at(middle)
}

pub(crate) fn split_words(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}
