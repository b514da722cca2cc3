//! What the mock models answer: a [`Script`] per request, and [`Rule`]s that
//! choose a request's script from its body.
//!
//! A script queued with [`crate::mock_model::MockModel::queue_script`] answers
//! the next request, whoever sends it, which serves one conversation at a time.
//! A rule decides per request instead, so it serves any number of concurrent
//! conversations: [`Rule::tool_then_text`] answers a conversation's first model
//! step with a tool call and the step after the tool result with text.
//!
//! Re-exported by [`crate::mock_model`], where the server lives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

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

type Choose = dyn Fn(&Value) -> Option<Script> + Send + Sync;

/// Chooses the script of a request from its JSON body (OpenAI Chat Completions
/// mock); `None` leaves the request to the model's or the main script. A queued
/// script still goes first.
#[derive(Clone)]
pub struct Rule(Arc<Choose>);

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rule(..)")
    }
}

impl Rule {
    pub fn new(choose: impl Fn(&Value) -> Option<Script> + Send + Sync + 'static) -> Self {
        Self(Arc::new(choose))
    }

    /// A one-step tool loop for every conversation at once: `after_tool` when
    /// the request's last message is a tool result (role `tool`), else `call`
    /// (a script with a tool call).
    pub fn tool_then_text(call: Script, after_tool: Script) -> Self {
        Self::new(move |body| {
            Some(if last_role(body) == Some("tool") {
                after_tool.clone()
            } else {
                call.clone()
            })
        })
    }

    /// The script this rule gives a request with `body`.
    pub fn choose(&self, body: &Value) -> Option<Script> {
        (self.0)(body)
    }
}

/// The role of the last message of a Chat Completions request body.
pub fn last_role(body: &Value) -> Option<&str> {
    body["messages"].as_array()?.last()?["role"].as_str()
}

/// The text of the last user message of a Chat Completions request body.
pub fn last_user_message(body: &Value) -> Option<String> {
    body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|message| message["role"] == "user")
        .and_then(|message| message["content"].as_str())
        .map(str::to_owned)
}

pub(crate) fn split_words(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tokens(script: &Script) -> Vec<String> {
        match &script.reply {
            Reply::Tokens(tokens) => tokens.clone(),
            Reply::EchoLastUser => vec!["<echo>".to_owned()],
        }
    }

    #[test]
    fn tool_then_text_decides_by_the_last_message() {
        let rule = Rule::tool_then_text(
            Script::default().with_tool_call("call_1", "sessions_list", "{}"),
            Script::text("done"),
        );
        let first = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what sessions?"},
        ]});
        let call = rule.choose(&first).expect("a script");
        assert_eq!(call.tool_calls.len(), 1);
        assert_eq!(call.tool_calls[0].name, "sessions_list");
        let after = json!({"messages": [
            {"role": "user", "content": "what sessions?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"sessions\":[]}"},
        ]});
        let text = rule.choose(&after).expect("a script");
        assert!(text.tool_calls.is_empty());
        assert_eq!(tokens(&text), ["done"]);
        assert_eq!(last_user_message(&after).as_deref(), Some("what sessions?"));
        assert_eq!(last_role(&json!({})), None);
    }

    #[test]
    fn a_rule_may_pass() {
        let rule = Rule::new(|body| {
            last_user_message(body)
                .filter(|m| m == "ping")
                .map(|_| Script::text("pong"))
        });
        let ping = json!({"messages": [{"role": "user", "content": "ping"}]});
        let other = json!({"messages": [{"role": "user", "content": "hello"}]});
        assert_eq!(tokens(&rule.choose(&ping).expect("pong")), ["pong"]);
        assert!(rule.choose(&other).is_none());
    }
}
