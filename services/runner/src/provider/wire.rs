//! The OpenAI Chat Completions streaming wire format: request body and chunk
//! parsing.
//!
//! [`ChunkParser`] is fed the `data:` payload of each SSE event and keeps the
//! state a stream needs across chunks: tool calls assembled from their deltas,
//! the finish reason and usage (which arrive in different chunks). It emits tool
//! calls once the model has finished them, so text before a tool call is always
//! emitted first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{Feed, Malformed, StreamParser};
use super::{ChatMessage, ModelEvent, ProviderError, ProviderErrorKind, TokenUsage, ToolSpec};

#[derive(Serialize)]
pub(crate) struct RequestBody<'a> {
    pub model: &'a str,
    pub messages: Vec<WireMessage<'a>>,
    pub stream: bool,
    pub stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
}

/// The `tools` of a request: one `function` per tool.
pub(crate) fn wire_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|tool| {
            json!({"type": "function", "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            }})
        })
        .collect()
}

#[derive(Serialize)]
pub(crate) struct WireMessage<'a> {
    pub role: &'a str,
    /// `null` for an assistant message that only called tools.
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub tool_call_id: &'a str,
}

impl<'a> From<&'a ChatMessage> for WireMessage<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        let only_calls = message.content.is_empty() && !message.tool_calls.is_empty();
        Self {
            role: &message.role,
            content: (!only_calls).then_some(message.content.as_str()),
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function", "function": {
                        "name": call.name, "arguments": call.arguments_json,
                    }})
                })
                .collect(),
            tool_call_id: &message.tool_call_id,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

/// The `{"error": {...}}` body of a failed HTTP response.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: WireError,
}

#[derive(Default)]
struct PartialToolCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
pub(crate) struct ChunkParser {
    tool_calls: BTreeMap<u32, PartialToolCall>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    refusal: String,
    malformed: Malformed,
    finished: bool,
}

impl ChunkParser {
    /// Parses the `data` of one SSE event, appending what it produced to `out`.
    pub fn feed_data(
        &mut self,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<Feed, ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.finish_stream(out)?;
            return Ok(Feed::Done);
        }
        if data.is_empty() {
            return Ok(Feed::Continue);
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(err) => return self.malformed.skip(&err),
        };
        if let Some(error) = chunk.error {
            return Err(classify_error_body(&error, None));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(TokenUsage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
            });
        }
        // Only the first choice is used; clawgate never asks for n > 1.
        if let Some(choice) = chunk.choices.into_iter().next() {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                out.push(ModelEvent::Text(text));
            }
            if let Some(refusal) = delta.refusal {
                self.refusal.push_str(&refusal);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                let entry = self.tool_calls.entry(call.index).or_default();
                if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                    entry.id = id;
                }
                if let Some(function) = call.function {
                    if let Some(name) = function.name.filter(|name| !name.is_empty()) {
                        entry.name = name;
                    }
                    if let Some(arguments) = function.arguments {
                        entry.arguments.push_str(&arguments);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|reason| !reason.is_empty()) {
                self.finish_reason = Some(reason);
                self.drain_tool_calls(out);
            }
        }
        Ok(Feed::Continue)
    }

    /// Ends the stream: emits pending tool calls and the final [`ModelEvent::Done`].
    pub fn finish_stream(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ProviderError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.drain_tool_calls(out);
        if !self.refusal.is_empty() || self.finish_reason.as_deref() == Some("content_filter") {
            let message = if self.refusal.is_empty() {
                "the model provider's content filter stopped the reply".to_owned()
            } else {
                std::mem::take(&mut self.refusal)
            };
            return Err(ProviderError::new(ProviderErrorKind::Refusal, message));
        }
        out.push(ModelEvent::Done {
            finish_reason: self.finish_reason.clone(),
            usage: self.usage,
        });
        Ok(())
    }

    fn drain_tool_calls(&mut self, out: &mut Vec<ModelEvent>) {
        for (index, call) in std::mem::take(&mut self.tool_calls) {
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            out.push(ModelEvent::ToolCall {
                id,
                name: call.name,
                arguments_json: call.arguments,
            });
        }
    }
}

impl StreamParser for ChunkParser {
    fn feed(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<Feed, ProviderError> {
        self.feed_data(data, out)
    }

    /// Whether the model reported a finish reason (a stream may then end without `[DONE]`).
    fn saw_finish(&self) -> bool {
        self.finish_reason.is_some()
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ProviderError> {
        self.finish_stream(out)
    }
}

/// Sorts a provider error (from a stream chunk or an HTTP error body) into a kind.
/// `status` is the HTTP status when there is one.
pub(crate) fn classify_error_body(error: &WireError, status: Option<u16>) -> ProviderError {
    let code = error
        .code
        .as_ref()
        .map(|code| match code {
            serde_json::Value::String(code) => code.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let kind_text = error.kind.as_deref().unwrap_or_default();
    let message = error.message.as_deref().unwrap_or_default();
    tracing::warn!(
        status,
        error.type = kind_text,
        error.code = %code,
        error.message = message,
        "model provider reported an error"
    );
    let haystack = format!("{kind_text} {code} {message}").to_ascii_lowercase();
    if haystack.contains("context_length") || haystack.contains("maximum context length") {
        ProviderError::new(
            ProviderErrorKind::ContextLength,
            "the conversation is too long for the model's context window",
        )
    } else if haystack.contains("rate_limit") || haystack.contains("rate limit") {
        ProviderError::new(
            ProviderErrorKind::RateLimit,
            "the model provider's rate limit was reached; try again later",
        )
    } else {
        ProviderError::new(
            ProviderErrorKind::Server,
            "the model provider reported an error",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(
        parser: &mut ChunkParser,
        lines: &[&str],
    ) -> Result<Vec<ModelEvent>, ProviderError> {
        let mut out = Vec::new();
        for line in lines {
            parser.feed_data(line, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn text_finish_usage_done() {
        let mut parser = ChunkParser::default();
        let out = feed_all(
            &mut parser,
            &[
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
                "[DONE]",
            ],
        )
        .expect("parses");
        assert_eq!(
            out,
            vec![
                ModelEvent::Text("Hel".into()),
                ModelEvent::Text("lo".into()),
                ModelEvent::Done {
                    finish_reason: Some("stop".into()),
                    usage: Some(TokenUsage {
                        prompt_tokens: 3,
                        completion_tokens: 2,
                        total_tokens: 5
                    }),
                },
            ]
        );
    }

    #[test]
    fn tool_call_deltas_are_assembled() {
        let mut parser = ChunkParser::default();
        let out = feed_all(
            &mut parser,
            &[
                r#"{"choices":[{"delta":{"content":"Let me look."}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"search","arguments":""}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"rust\"}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
                "[DONE]",
            ],
        )
        .expect("parses");
        assert_eq!(out[0], ModelEvent::Text("Let me look.".into()));
        assert_eq!(
            out[1],
            ModelEvent::ToolCall {
                id: "call_a".into(),
                name: "search".into(),
                arguments_json: r#"{"q":"rust"}"#.into()
            }
        );
        assert!(
            matches!(&out[2], ModelEvent::Done { finish_reason: Some(r), .. } if r == "tool_calls")
        );
    }

    #[test]
    fn a_few_malformed_chunks_are_skipped_many_fail() {
        let mut parser = ChunkParser::default();
        let out = feed_all(
            &mut parser,
            &["{not json", r#"{"choices":[{"delta":{"content":"ok"}}]}"#],
        )
        .expect("tolerated");
        assert_eq!(out, vec![ModelEvent::Text("ok".into())]);
        let lines = vec!["garbage"; 20];
        let err = feed_all(&mut parser, &lines).expect_err("fails");
        assert_eq!(err.kind, ProviderErrorKind::Protocol);
    }

    #[test]
    fn error_chunks_are_classified() {
        let mut parser = ChunkParser::default();
        let err = feed_all(
            &mut parser,
            &[r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}"#],
        )
        .expect_err("fails");
        assert_eq!(err.kind, ProviderErrorKind::RateLimit);
        assert_eq!(err.kind.wire_kind(), "rate_limit");

        let mut parser = ChunkParser::default();
        let err = feed_all(
            &mut parser,
            &[r#"{"error":{"message":"too long","code":"context_length_exceeded"}}"#],
        )
        .expect_err("fails");
        assert_eq!(err.kind, ProviderErrorKind::ContextLength);
    }

    #[test]
    fn refusal_becomes_a_refusal_error() {
        let mut parser = ChunkParser::default();
        let err = feed_all(
            &mut parser,
            &[
                r#"{"choices":[{"delta":{"refusal":"I can't help with that."}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
                "[DONE]",
            ],
        )
        .expect_err("refused");
        assert_eq!(err.kind.wire_kind(), "refusal");
        assert_eq!(err.message, "I can't help with that.");
    }
}
