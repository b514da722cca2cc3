//! A mock Anthropic Messages API: a real HTTP server on a loopback port that
//! answers `POST /v1/messages` with the API's event stream, scripted per test
//! with the same [`Script`] as the OpenAI mock.
//!
//! A stream is `message_start` (with input usage) → a `thinking` block when
//! scripted → a `text` block (one `text_delta` per token) → one `tool_use`
//! block per scripted tool call (its input in two `input_json_delta` pieces) →
//! `message_delta` (stop reason, output usage) → `message_stop`, each event
//! named by its `event:` line, with a `ping` after the start. A script's
//! `status` answers with that HTTP status and an Anthropic error body (529:
//! `overloaded_error`); `stream_error` sends an `error` event after the text.
//! Requests without `x-api-key` or `anthropic-version` are refused as the API
//! does. Every request is recorded with its `x-api-key` as `authorization`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mock_model::{MockState, RecordedRequest, Reply, Script, split_in_two, split_words};

/// A running mock Anthropic server; stops accepting connections when dropped.
pub struct MockAnthropic {
    addr: SocketAddr,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockAnthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockAnthropic")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockAnthropic {
    /// Starts the server on a free loopback port.
    pub async fn start(script: Script) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(script);
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(state.clone());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "mock anthropic server stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// The API root, e.g. `http://127.0.0.1:PORT` (the provider appends `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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

    /// Waits until at least `count` requests arrived; false after `limit`.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        self.state.wait_for_requests(count, limit).await
    }
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn messages(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "request body is not JSON", None);
    };
    let api_key = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let request = state.record("/v1/messages", api_key.clone(), &body);
    if api_key.is_none() {
        return error_response(401, "x-api-key header is required", None);
    }
    if headers.get("anthropic-version").is_none() {
        return error_response(400, "anthropic-version header is required", None);
    }
    if body["max_tokens"].as_u64().is_none() {
        return error_response(400, "max_tokens: Field required", None);
    }
    let script = state.script_for(body["model"].as_str());
    if let Some(status) = script.status {
        return error_response(status, "scripted failure", script.retry_after.as_deref());
    }
    let tokens = match &script.reply {
        Reply::Tokens(tokens) => tokens.clone(),
        Reply::EchoLastUser => split_words(&last_user_text(&body).unwrap_or_default()),
    };
    let model = body["model"].as_str().unwrap_or("mock-claude").to_owned();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(produce(state, request, script, tokens, model, tx));
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
        .unwrap_or_else(|_| error_response(500, "cannot build the response", None))
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
    let (input_tokens, output_tokens) = script.usage.unwrap_or((0, 0));
    let mut events = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "content": [],
                "model": model, "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut index = 0;
    if !script.thinking.is_empty() {
        events.push(block_start(
            index,
            json!({"type": "thinking", "thinking": ""}),
        ));
        for piece in &script.thinking {
            events.push(block_delta(
                index,
                json!({"type": "thinking_delta", "thinking": piece}),
            ));
        }
        events.push(block_delta(
            index,
            json!({"type": "signature_delta", "signature": "c2ln"}),
        ));
        events.push(block_stop(index));
        index += 1;
    }
    for bytes in events {
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
    if tx
        .send(block_start(index, json!({"type": "text", "text": ""})))
        .await
        .is_err()
    {
        return;
    }
    for (position, token) in tokens.iter().enumerate() {
        if !script.delay.is_zero() {
            tokio::time::sleep(script.delay).await;
        }
        let delta = block_delta(index, json!({"type": "text_delta", "text": token}));
        if tx.send(delta).await.is_err() {
            return;
        }
        state.emitted(request, position, token);
    }
    if let Some(kind) = &script.stream_error {
        let error =
            json!({"type": "error", "error": {"type": kind, "message": "scripted stream failure"}});
        let _ = tx.send(event("error", &error)).await;
        return;
    }
    let mut tail = vec![block_stop(index)];
    for call in &script.tool_calls {
        index += 1;
        let start = json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
        tail.push(block_start(index, start));
        let (head, rest) = split_in_two(&call.arguments_json);
        for piece in ["", head, rest] {
            let delta = json!({"type": "input_json_delta", "partial_json": piece});
            tail.push(block_delta(index, delta));
        }
        tail.push(block_stop(index));
    }
    if script.hang {
        for bytes in tail {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        tx.closed().await;
        return;
    }
    let stop_reason = if !script.tool_calls.is_empty() {
        "tool_use"
    } else if script.finish_reason == "length" {
        "max_tokens"
    } else {
        "end_turn"
    };
    let completion = if script.usage.is_some() {
        output_tokens
    } else {
        tokens.len() as u64
    };
    tail.push(event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": completion}}),
    ));
    tail.push(event("message_stop", &json!({"type": "message_stop"})));
    for bytes in tail {
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
}

fn block_start(index: usize, block: Value) -> Bytes {
    event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn block_delta(index: usize, delta: Value) -> Bytes {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn block_stop(index: usize) -> Bytes {
    event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn error_response(status: u16, message: &str, retry_after: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    let retry_after = retry_after.or((status.as_u16() == 429).then_some("1"));
    if let Some(value) = retry_after.and_then(|v| header::HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The text of the last user message (string content or text blocks).
fn last_user_text(body: &Value) -> Option<String> {
    let message = body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|message| message["role"] == "user")?;
    match &message["content"] {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => Some(
            blocks
                .iter()
                .filter_map(|block| block["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}
