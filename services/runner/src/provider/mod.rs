//! Model providers: the seam between a run and whatever model produces its text.
//!
//! A provider turns a [`ModelRequest`] into a stream of [`ModelEvent`]s. The
//! stream is lazy and owns its connection: dropping it cancels the model call.
//! Every stream that ends without an error ends with exactly one
//! [`ModelEvent::Done`]; a stream that yields an `Err` yields nothing after it.
//! Which provider a runner uses is decided once, when it is built (`slot`).

pub mod anthropic;
mod anthropic_wire;
mod http;
pub mod openai;
mod slot;
pub(crate) mod tenant;
mod wire;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

pub use anthropic::AnthropicProvider;
pub use openai::OpenAiProvider;
pub use slot::NO_PROVIDER_MESSAGE;
pub(crate) use slot::ProviderSlot;

/// One message of the context sent to the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatMessage {
    /// "system" | "user" | "assistant" | "tool"
    pub role: String,
    pub content: String,
    /// An assistant message's tool calls (after its text).
    pub tool_calls: Vec<ToolCall>,
    /// A tool message: the call it answers.
    pub tool_call_id: String,
    /// A tool message: whether the tool failed.
    pub is_error: bool,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }

    /// An assistant message that asked for `calls`.
    pub fn assistant_with_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            role: "assistant".to_owned(),
            content: content.into(),
            tool_calls: calls,
            ..Self::default()
        }
    }

    /// The result of tool call `call_id`.
    pub fn tool_result(
        call_id: impl Into<String>,
        content: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Self {
            role: "tool".to_owned(),
            content: content.into(),
            tool_call_id: call_id.into(),
            is_error,
            ..Self::default()
        }
    }
}

/// A tool call a model made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as the model sent it.
    pub arguments_json: String,
}

/// A tool offered to the model: its name, what it does, its JSON Schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelRequest {
    pub messages: Vec<ChatMessage>,
    /// The model to call instead of the provider's own (an agent's choice).
    pub model: Option<String>,
    /// Tools the model may call (none: a plain chat).
    pub tools: Vec<ToolSpec>,
}

/// Token counts as the provider reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Something the model produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelEvent {
    /// The next piece of assistant text.
    Text(String),
    /// The next piece of the model's reasoning (Anthropic thinking blocks).
    Thinking(String),
    /// A complete tool call (arguments fully assembled). Not executed yet.
    ToolCall {
        id: String,
        name: String,
        arguments_json: String,
    },
    /// The model finished.
    Done {
        finish_reason: Option<String>,
        usage: Option<TokenUsage>,
    },
}

/// Why a model call failed, in the categories clients see (plus a few that only
/// matter to operators and are shown to clients as `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderErrorKind {
    RateLimit,
    Timeout,
    ContextLength,
    Refusal,
    /// The API key was rejected (401/403).
    Auth,
    /// The provider answered 5xx.
    Server,
    /// The provider could not be reached or the connection broke.
    Network,
    /// The provider sent something that is not the Chat Completions stream format.
    Protocol,
    Unknown,
}

impl ProviderErrorKind {
    /// The `LifecycleError.kind` value: refusal | timeout | rate_limit | context_length | unknown.
    pub fn wire_kind(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::Timeout => "timeout",
            Self::ContextLength => "context_length",
            Self::Refusal => "refusal",
            Self::Auth | Self::Server | Self::Network | Self::Protocol | Self::Unknown => "unknown",
        }
    }
}

/// A failed model call. The message is safe to show to a client; provider
/// response bodies and transport details are logged where the error is made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    pub message: String,
    /// From a `Retry-After` header, when the provider sent one.
    pub retry_after_ms: Option<u64>,
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

pub type ModelStream = Pin<Box<dyn Stream<Item = Result<ModelEvent, ProviderError>> + Send>>;

/// A model backend.
#[async_trait]
pub trait ModelProvider: Send + Sync + 'static {
    /// The `gen_ai.system` value, e.g. "openai".
    fn system(&self) -> &str;
    /// The model requests are sent to (`gen_ai.request.model`).
    fn model(&self) -> &str;
    /// Starts a streamed completion. Returns once the provider accepted the request.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ProviderError>;
}
