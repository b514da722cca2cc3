//! Runner settings: which model provider to call and the limits every run obeys.
//!
//! Invariant: the provider's API key never appears in logs or debug output; the
//! `Debug` impl of [`ProviderConfig`] is written by hand to redact it.

use std::fmt;
use std::time::Duration;

use crate::tools::ToolSet;
use crate::tools::exec::ExecConfig;

/// Which wire format a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI Chat Completions (OpenAI, vLLM, Ollama, LiteLLM, …).
    #[default]
    OpenAi,
    /// The Anthropic Messages API.
    Anthropic,
}

impl ProviderKind {
    /// The name used in flags and answers: `openai` | `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }
}

/// One model endpoint: an OpenAI-compatible Chat Completions API or the
/// Anthropic Messages API.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The API root: for OpenAI-compatible APIs without the
    /// `/chat/completions` suffix (`https://api.openai.com/v1`,
    /// `http://localhost:11434/v1`); for Anthropic `https://api.anthropic.com`
    /// (`/v1/messages` is appended; a root ending in `/v1` gets `/messages`).
    pub base_url: String,
    /// Sent as a bearer token when set; local servers usually need none.
    pub api_key: Option<String>,
    /// The model name sent with every request.
    pub model: String,
}

impl ProviderConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            kind: ProviderKind::OpenAi,
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
        }
    }

    pub fn with_kind(mut self, kind: ProviderKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        let key = api_key.into();
        self.api_key = (!key.is_empty()).then_some(key);
        self
    }
}

/// How long a model provider may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderTimeouts {
    /// For the TCP/TLS connection.
    pub connect: Duration,
    /// How long the provider may stay silent: until the response headers, then
    /// between two stream chunks.
    pub idle: Duration,
}

impl Default for ProviderTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(120),
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .finish()
    }
}

/// Settings of one runner process.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// `None`: runs are refused with `FAILED_PRECONDITION` naming the settings.
    pub provider: Option<ProviderConfig>,
    pub provider_timeouts: ProviderTimeouts,
    /// Prepended to every model request when set.
    pub system_prompt: Option<String>,
    /// The tools this runner offers (agents pick from them).
    pub tools: ToolSet,
    /// Where `exec` runs commands; `None`: the runner offers no `exec` tool.
    /// Every `exec` call waits for a human approval.
    pub exec: Option<ExecConfig>,
    /// How long an exec approval waits for an answer (the run's own timeout
    /// may end it sooner).
    pub approval_timeout: Duration,
    /// How long a node tool's call waits for the node (bounded by the run's
    /// deadline); see [`crate::RunnerBuilder::nodes`].
    pub node_timeout: Duration,
    /// Assistant tokens are gathered this long before one delta is published.
    pub coalesce_window: Duration,
    /// A pending delta is published early once it holds this many bytes.
    pub coalesce_max_bytes: usize,
    /// Upper bound of a run; a request's `timeout_ms` may only shorten it.
    pub run_timeout: Duration,
    /// How long a finished run is remembered for idempotent resends and `GetRun`.
    pub dedupe_ttl: Duration,
    /// How many finished runs are remembered at most (oldest forgotten first).
    pub max_remembered_runs: usize,
    /// How many runs this process executes at once; more are refused, retryable.
    pub max_active_runs: usize,
    /// Transcript messages sent to the model as context (newest, oldest first).
    pub max_history_messages: u32,
    /// Largest accepted user message, in bytes.
    pub max_message_bytes: usize,
    /// How long `AbortRun` waits for the run to persist its partial text.
    pub abort_wait: Duration,
    /// How long one bus publish may take before it is given up (and logged).
    pub publish_timeout: Duration,
    /// On shutdown, runs still going this long before the grace period ends are
    /// aborted, leaving them this much time to write their partial text.
    pub shutdown_abort_margin: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            provider: None,
            provider_timeouts: ProviderTimeouts::default(),
            system_prompt: None,
            tools: ToolSet::builtin(),
            exec: None,
            approval_timeout: crate::approvals::DEFAULT_TIMEOUT,
            node_timeout: Duration::from_secs(30),
            coalesce_window: Duration::from_millis(40),
            coalesce_max_bytes: 16 * 1024,
            run_timeout: Duration::from_secs(600),
            dedupe_ttl: Duration::from_secs(300),
            max_remembered_runs: 10_000,
            max_active_runs: 1_024,
            max_history_messages: 100,
            max_message_bytes: 128 * 1024,
            abort_wait: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            shutdown_abort_margin: Duration::from_secs(5),
        }
    }
}

impl RunnerConfig {
    pub fn with_provider(mut self, provider: ProviderConfig) -> Self {
        self.provider = Some(provider);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_api_key() {
        let config = ProviderConfig::new("http://x/v1", "m").with_api_key("sk-secret-123");
        let shown = format!("{:?}", RunnerConfig::default().with_provider(config));
        assert!(!shown.contains("sk-secret-123"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_api_key_means_none() {
        assert_eq!(ProviderConfig::new("u", "m").with_api_key("").api_key, None);
    }
}
