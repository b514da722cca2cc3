//! The Anthropic Messages API with streaming: `POST {base_url}/v1/messages`
//! with `stream: true`, `x-api-key` and `anthropic-version: 2023-06-01`.
//!
//! Invariants: the API key is only ever put in the `x-api-key` header, never
//! logged; the returned stream owns the HTTP response, so dropping it closes
//! the connection (that is how a run's abort reaches the provider); a silent
//! connection fails after the idle timeout. Every request asks for at most
//! [`MAX_OUTPUT_TOKENS`] output tokens (the API requires a bound).

use std::time::Duration;

use async_trait::async_trait;

use super::anthropic_wire::{self, ErrorBody, EventParser, RequestBody};
use super::http::{self, Failure};
use super::{ModelProvider, ModelRequest, ModelStream, ProviderError, ProviderErrorKind};
use crate::config::{ProviderConfig, ProviderTimeouts};

/// The API version every request names.
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` of every request.
pub const MAX_OUTPUT_TOKENS: u32 = 8192;

pub struct AnthropicProvider {
    client: reqwest::Client,
    endpoint: String,
    config: ProviderConfig,
    idle_timeout: Duration,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    pub fn new(config: ProviderConfig, timeouts: ProviderTimeouts) -> Result<Self, ProviderError> {
        let client = http::client(timeouts)?;
        let root = config.base_url.trim_end_matches('/');
        let endpoint = if root.ends_with("/v1") {
            format!("{root}/messages")
        } else {
            format!("{root}/v1/messages")
        };
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
        let mut error = match (
            failure.status,
            serde_json::from_str::<ErrorBody>(&failure.body),
        ) {
            // The status says it all for these; the body adds nothing a client needs.
            (401 | 403 | 404 | 408 | 429 | 529 | 500..=599, _) | (_, Err(_)) => by_status,
            (status, Ok(body)) => {
                let classified = anthropic_wire::classify(&body.error, Some(status));
                if classified.kind == ProviderErrorKind::Server {
                    by_status
                } else {
                    classified
                }
            }
        };
        error.retry_after_ms = failure.retry_after_ms;
        error
    }
}

#[async_trait]
impl ModelProvider for AnthropicProvider {
    fn system(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ProviderError> {
        let model = request.model.as_deref().unwrap_or(&self.config.model);
        let body = RequestBody::new(model, MAX_OUTPUT_TOKENS, &request.messages, &request.tools);
        let mut builder = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = &self.config.api_key {
            match reqwest::header::HeaderValue::from_str(key) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    builder = builder.header("x-api-key", value);
                }
                Err(_) => {
                    return Err(ProviderError::new(
                        ProviderErrorKind::Auth,
                        "the model provider's API key is not a valid header value",
                    ));
                }
            }
        }
        let response = http::send(builder, self.idle_timeout, &self.endpoint).await?;
        if !response.status().is_success() {
            return Err(self.http_error(response, model).await);
        }
        Ok(http::event_stream(
            response,
            EventParser::default(),
            self.idle_timeout,
        ))
    }
}
