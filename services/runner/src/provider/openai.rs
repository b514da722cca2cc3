//! An OpenAI-compatible Chat Completions client with streaming (OpenAI, vLLM,
//! Ollama, LiteLLM, …): `POST {base_url}/chat/completions` with `stream: true`.
//!
//! Invariants: the API key is only ever put in the `Authorization` header, never
//! logged; the returned stream owns the HTTP response, so dropping it closes the
//! connection (that is how a run's abort reaches the provider); a silent
//! connection fails after `idle_timeout` instead of hanging the run.

use std::time::Duration;

use async_trait::async_trait;

use super::http::{self, Failure};
use super::wire::{ChunkParser, ErrorBody, RequestBody, StreamOptions, WireMessage};
use super::{ModelProvider, ModelRequest, ModelStream, ProviderError, ProviderErrorKind};
use crate::config::{ProviderConfig, ProviderTimeouts};

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
        let client = http::client(timeouts)?;
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            endpoint,
            config,
            idle_timeout: timeouts.idle,
        })
    }

    async fn http_error(&self, response: reqwest::Response, model: &str) -> ProviderError {
        let failure = Failure::read(response, self.idle_timeout, &self.endpoint).await;
        let missing_key = self
            .config
            .api_key
            .is_none()
            .then_some("CLAWGATE_MODEL_API_KEY");
        let by_status = failure.by_status(model, missing_key);
        let mut error = match failure.status {
            400..=499 if !matches!(failure.status, 401 | 403 | 404 | 408 | 413 | 429) => {
                match serde_json::from_str::<ErrorBody>(&failure.body) {
                    Ok(parsed) => {
                        let classified =
                            super::wire::classify_error_body(&parsed.error, Some(failure.status));
                        if classified.kind == ProviderErrorKind::Server {
                            by_status
                        } else {
                            classified
                        }
                    }
                    Err(_) => by_status,
                }
            }
            _ => by_status,
        };
        error.retry_after_ms = failure.retry_after_ms;
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
        let model = request.model.as_deref().unwrap_or(&self.config.model);
        let body = RequestBody {
            model,
            messages: request.messages.iter().map(WireMessage::from).collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            tools: super::wire::wire_tools(&request.tools),
        };
        let mut builder = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = http::send(builder, self.idle_timeout, &self.endpoint).await?;
        if !response.status().is_success() {
            return Err(self.http_error(response, model).await);
        }
        Ok(http::event_stream(
            response,
            ChunkParser::default(),
            self.idle_timeout,
        ))
    }
}
