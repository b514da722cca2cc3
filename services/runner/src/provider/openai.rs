//! An OpenAI-compatible Chat Completions client with streaming (OpenAI, vLLM,
//! Ollama, LiteLLM, …): `POST {base_url}/chat/completions` with `stream: true`.
//!
//! Invariants: the API key is only ever put in the `Authorization` header, never
//! logged; the returned stream owns the HTTP response, so dropping it closes the
//! connection (that is how a run's abort reaches the provider); a silent
//! connection fails after `idle_timeout` instead of hanging the run.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

use super::wire::{ChunkParser, ErrorBody, Feed, RequestBody, StreamOptions, WireMessage};
use super::{
    ModelEvent, ModelProvider, ModelRequest, ModelStream, ProviderError, ProviderErrorKind,
};
use crate::config::{ProviderConfig, ProviderTimeouts};

/// Longest error body read from a failed response (for the log only).
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

pub struct OpenAiProvider {
    client: reqwest::Client,
    endpoint: String,
    config: ProviderConfig,
    idle_timeout: Duration,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    pub fn new(config: ProviderConfig, timeouts: ProviderTimeouts) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|err| {
                tracing::error!(error = %err, "cannot build the model provider HTTP client");
                ProviderError::new(
                    ProviderErrorKind::Unknown,
                    "the model provider client could not be initialised",
                )
            })?;
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            endpoint,
            config,
            idle_timeout: timeouts.idle,
        })
    }

    fn transport_error(&self, err: &reqwest::Error) -> ProviderError {
        tracing::warn!(error = %err, endpoint = %self.endpoint, "model provider request failed");
        if err.is_timeout() {
            ProviderError::new(
                ProviderErrorKind::Timeout,
                "the model provider did not answer in time",
            )
        } else if err.is_connect() {
            ProviderError::new(
                ProviderErrorKind::Network,
                "could not connect to the model provider",
            )
        } else {
            ProviderError::new(
                ProviderErrorKind::Network,
                "the request to the model provider failed",
            )
        }
    }

    async fn http_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(|seconds| seconds.saturating_mul(1000));
        let body = read_error_body(response, self.idle_timeout).await;
        tracing::warn!(status, body = %body, endpoint = %self.endpoint, "model provider answered with an error status");
        let mut error = match status {
            401 | 403 if self.config.api_key.is_none() => ProviderError::new(
                ProviderErrorKind::Auth,
                format!(
                    "the model provider requires an API key (HTTP {status}): set CLAWGATE_MODEL_API_KEY"
                ),
            ),
            401 | 403 => ProviderError::new(
                ProviderErrorKind::Auth,
                format!("the model provider rejected the API key (HTTP {status})"),
            ),
            404 => ProviderError::new(
                ProviderErrorKind::Unknown,
                format!(
                    "the model provider does not serve model \"{}\" at this endpoint (HTTP 404)",
                    self.config.model
                ),
            ),
            408 | 504 => ProviderError::new(
                ProviderErrorKind::Timeout,
                format!("the model provider timed out (HTTP {status})"),
            ),
            413 => ProviderError::new(
                ProviderErrorKind::ContextLength,
                "the conversation is too long for the model's context window",
            ),
            429 => ProviderError::new(
                ProviderErrorKind::RateLimit,
                "the model provider's rate limit was reached (HTTP 429); try again later",
            ),
            400..=499 => match serde_json::from_str::<ErrorBody>(&body) {
                Ok(parsed) => {
                    let classified = super::wire::classify_error_body(&parsed.error, Some(status));
                    if classified.kind == ProviderErrorKind::Server {
                        ProviderError::new(
                            ProviderErrorKind::Unknown,
                            format!("the model provider rejected the request (HTTP {status})"),
                        )
                    } else {
                        classified
                    }
                }
                Err(_) => ProviderError::new(
                    ProviderErrorKind::Unknown,
                    format!("the model provider rejected the request (HTTP {status})"),
                ),
            },
            _ => ProviderError::new(
                ProviderErrorKind::Server,
                format!("the model provider failed (HTTP {status})"),
            ),
        };
        error.retry_after_ms = retry_after_ms;
        error
    }
}

#[async_trait]
impl ModelProvider for OpenAiProvider {
    fn system(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ProviderError> {
        let body = RequestBody {
            model: request.model.as_deref().unwrap_or(&self.config.model),
            messages: request.messages.iter().map(WireMessage::from).collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        };
        let mut builder = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let idle = self.idle_timeout;
        let response = match tokio::time::timeout(idle, builder.send()).await {
            Err(_) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Timeout,
                    "the model provider did not answer in time",
                ));
            }
            Ok(Err(err)) => return Err(self.transport_error(&err)),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(self.http_error(response).await);
        }
        let state = StreamState {
            events: Box::pin(response.bytes_stream().eventsource()),
            parser: ChunkParser::default(),
            pending: VecDeque::new(),
            done: false,
            idle,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, next_event)))
    }
}

type SseStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

struct StreamState {
    events: SseStream,
    parser: ChunkParser,
    pending: VecDeque<ModelEvent>,
    done: bool,
    idle: Duration,
}

/// One step of the model stream: the next parsed event, reading SSE events as needed.
async fn next_event(
    mut state: StreamState,
) -> Option<(Result<ModelEvent, ProviderError>, StreamState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if state.done {
            return None;
        }
        let mut out = Vec::new();
        let step = match tokio::time::timeout(state.idle, state.events.next()).await {
            Err(_) => Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                "the model provider stopped responding",
            )),
            Ok(None) if state.parser.saw_finish() => {
                state.parser.finish(&mut out).map(|()| Feed::Done)
            }
            Ok(None) => Err(ProviderError::new(
                ProviderErrorKind::Network,
                "the model stream ended before the reply was complete",
            )),
            Ok(Some(Err(err))) => {
                tracing::warn!(error = %err, "model stream broke");
                Err(ProviderError::new(
                    ProviderErrorKind::Network,
                    "the connection to the model provider broke",
                ))
            }
            Ok(Some(Ok(event))) => state.parser.feed(&event.data, &mut out),
        };
        state.pending.extend(out);
        match step {
            Ok(Feed::Continue) => {}
            Ok(Feed::Done) => state.done = true,
            Err(err) => {
                state.done = true;
                state.pending.clear();
                return Some((Err(err), state));
            }
        }
    }
}

async fn read_error_body(response: reqwest::Response, wait: Duration) -> String {
    let Ok(Ok(bytes)) = tokio::time::timeout(wait, response.bytes()).await else {
        return String::new();
    };
    let end = bytes.len().min(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
