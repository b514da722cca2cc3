//! The Anthropic Messages API wire format: the request body and the parser of
//! its event stream.
//!
//! A stream is `message_start` → (`content_block_start` →
//! `content_block_delta`* → `content_block_stop`)* → `message_delta` →
//! `message_stop`, with `ping`s anywhere and an `error` event that may end it
//! at any point. Text deltas are emitted as they come; a `tool_use` block is
//! emitted as one [`ModelEvent::ToolCall`] when it stops (its input arrives as
//! `input_json_delta` pieces that are only valid JSON together); `thinking`
//! deltas are emitted as [`ModelEvent::Thinking`]. Input tokens come with
//! `message_start`, output tokens with `message_delta`. Stop reasons are
//! reported in the runner's vocabulary (`end_turn` → `stop`, `max_tokens` →
//! `length`, `tool_use` → `tool_calls`); `refusal` fails the run as a refusal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{Feed, Malformed, StreamParser};
use super::{ChatMessage, ModelEvent, ProviderError, ProviderErrorKind, TokenUsage, ToolSpec};

#[derive(Serialize)]
pub(crate) struct RequestBody<'a> {
    pub model: &'a str,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Value>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
}

impl<'a> RequestBody<'a> {
    /// System messages go to `system` (joined by blank lines); the others
    /// become `messages` of content blocks — an assistant's tool calls as
    /// `tool_use` blocks, tool results as `tool_result` blocks of a user
    /// message — consecutive ones of a role merged into one, as the API wants
    /// roles to alternate (and all results of a step in one message).
    pub fn new(
        model: &'a str,
        max_tokens: u32,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Self {
        let system: Vec<&str> = messages
            .iter()
            .filter(|message| message.role == "system")
            .map(|message| message.content.as_str())
            .collect();
        let mut wire: Vec<(&str, Vec<Value>)> = Vec::new();
        for message in messages.iter().filter(|message| message.role != "system") {
            let (role, blocks) = blocks_of(message);
            if blocks.is_empty() {
                continue;
            }
            match wire.last_mut() {
                Some((last, known)) if *last == role => known.extend(blocks),
                _ => wire.push((role, blocks)),
            }
        }
        Self {
            model,
            max_tokens,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: wire
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
            stream: true,
            tools: tools
                .iter()
                .map(|tool| {
                    json!({"name": tool.name, "description": tool.description,
                        "input_schema": tool.parameters})
                })
                .collect(),
        }
    }
}

/// The role and content blocks of one message (the API has no empty text blocks).
fn blocks_of(message: &ChatMessage) -> (&'static str, Vec<Value>) {
    if message.role == "tool" {
        let mut result = json!({"type": "tool_result", "tool_use_id": message.tool_call_id,
            "content": message.content});
        if message.is_error {
            result["is_error"] = json!(true);
        }
        return ("user", vec![result]);
    }
    let role = if message.role == "assistant" {
        "assistant"
    } else {
        "user"
    };
    let mut blocks = Vec::with_capacity(1 + message.tool_calls.len());
    if !message.content.is_empty() {
        blocks.push(json!({"type": "text", "text": message.content}));
    }
    for call in &message.tool_calls {
        // The API wants the input as an object; a model's malformed
        // arguments go back as an empty one (its tool result said why).
        let input = serde_json::from_str::<Value>(&call.arguments_json)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    (role, blocks)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: MessageStart,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: Piece,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    /// Event types added to the API later are skipped.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Piece {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct WireError {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// The `{"type": "error", "error": {...}}` body of a failed HTTP response.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: WireError,
}

struct ToolUse {
    id: String,
    name: String,
    input: String,
}

#[derive(Default)]
pub(crate) struct EventParser {
    tools: BTreeMap<u32, ToolUse>,
    input_tokens: u64,
    output_tokens: u64,
    saw_usage: bool,
    stop_reason: Option<String>,
    stopped: bool,
    malformed: Malformed,
    finished: bool,
}

impl EventParser {
    fn usage(&mut self, usage: Option<WireUsage>) {
        let Some(usage) = usage else { return };
        if let Some(input) = usage.input_tokens {
            self.input_tokens = input;
            self.saw_usage = true;
        }
        if let Some(output) = usage.output_tokens {
            self.output_tokens = output;
            self.saw_usage = true;
        }
    }
}

impl StreamParser for EventParser {
    fn feed(
        &mut self,
        _event: &str,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<Feed, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Feed::Continue);
        }
        let event: StreamEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(err) => return self.malformed.skip(&err),
        };
        match event {
            StreamEvent::MessageStart { message } => self.usage(message.usage),
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                Block::Text { text } if !text.is_empty() => out.push(ModelEvent::Text(text)),
                Block::Thinking { thinking } if !thinking.is_empty() => {
                    out.push(ModelEvent::Thinking(thinking));
                }
                Block::ToolUse { id, name } => {
                    let input = String::new();
                    self.tools.insert(index, ToolUse { id, name, input });
                }
                Block::Text { .. } | Block::Thinking { .. } | Block::Other => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                Piece::TextDelta { text } if !text.is_empty() => out.push(ModelEvent::Text(text)),
                Piece::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    out.push(ModelEvent::Thinking(thinking));
                }
                Piece::InputJsonDelta { partial_json } => {
                    if let Some(tool) = self.tools.get_mut(&index) {
                        tool.input.push_str(&partial_json);
                    }
                }
                Piece::TextDelta { .. } | Piece::ThinkingDelta { .. } | Piece::Other => {}
            },
            StreamEvent::ContentBlockStop { index } => {
                if let Some(tool) = self.tools.remove(&index) {
                    out.push(tool_call(tool));
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage(usage);
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(reason);
                }
            }
            StreamEvent::MessageStop => {
                self.stopped = true;
                self.finish(out)?;
                return Ok(Feed::Done);
            }
            StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::Error { error } => return Err(classify(&error, None)),
        }
        Ok(Feed::Continue)
    }

    fn saw_finish(&self) -> bool {
        self.stopped || self.stop_reason.is_some()
    }

    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ProviderError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        for (_, tool) in std::mem::take(&mut self.tools) {
            out.push(tool_call(tool));
        }
        let finish_reason = match self.stop_reason.as_deref() {
            Some("refusal") => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Refusal,
                    "the model declined to answer",
                ));
            }
            Some("end_turn" | "stop_sequence" | "pause_turn") | None => "stop",
            Some("max_tokens") => "length",
            Some("tool_use") => "tool_calls",
            Some(other) => other,
        };
        out.push(ModelEvent::Done {
            finish_reason: Some(finish_reason.to_owned()),
            usage: self.saw_usage.then_some(TokenUsage {
                prompt_tokens: self.input_tokens,
                completion_tokens: self.output_tokens,
                total_tokens: self.input_tokens + self.output_tokens,
            }),
        });
        Ok(())
    }
}

fn tool_call(tool: ToolUse) -> ModelEvent {
    // A tool without parameters streams no input at all.
    let arguments_json = if tool.input.trim().is_empty() {
        "{}".to_owned()
    } else {
        tool.input
    };
    ModelEvent::ToolCall {
        id: tool.id,
        name: tool.name,
        arguments_json,
    }
}

/// Sorts an Anthropic error (a stream `error` event or an HTTP error body).
pub(crate) fn classify(error: &WireError, status: Option<u16>) -> ProviderError {
    tracing::warn!(
        status,
        error.type = %error.kind,
        error.message = %error.message,
        "model provider reported an error"
    );
    let message = error.message.to_ascii_lowercase();
    match error.kind.as_str() {
        "rate_limit_error" => ProviderError::new(
            ProviderErrorKind::RateLimit,
            "the model provider's rate limit was reached; try again later",
        ),
        "overloaded_error" => ProviderError::new(
            ProviderErrorKind::Server,
            "the model provider is overloaded",
        ),
        "request_too_large" => ProviderError::new(
            ProviderErrorKind::ContextLength,
            "the conversation is too long for the model's context window",
        ),
        "invalid_request_error" if message.contains("prompt is too long") => ProviderError::new(
            ProviderErrorKind::ContextLength,
            "the conversation is too long for the model's context window",
        ),
        "authentication_error" | "permission_error" => ProviderError::new(
            ProviderErrorKind::Auth,
            "the model provider rejected the API key",
        ),
        "invalid_request_error" | "not_found_error" => ProviderError::new(
            ProviderErrorKind::Unknown,
            "the model provider rejected the request",
        ),
        _ => ProviderError::new(
            ProviderErrorKind::Server,
            "the model provider reported an error",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &[&str]) -> Result<Vec<ModelEvent>, ProviderError> {
        let mut parser = EventParser::default();
        let mut out = Vec::new();
        for line in lines {
            if parser.feed("", line, &mut out)? == Feed::Done {
                break;
            }
        }
        Ok(out)
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;

    #[test]
    fn text_thinking_tool_use_and_usage() {
        let out = feed_all(&[
            START,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me look."}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking "}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"now."}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"web_fetch","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"url\": \"https:"}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"//example.com\"}"}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}"#,
            r#"{"type":"content_block_stop","index":3}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .expect("parsed");
        assert_eq!(
            out,
            vec![
                ModelEvent::Thinking("Let me look.".into()),
                ModelEvent::Text("Checking ".into()),
                ModelEvent::Text("now.".into()),
                ModelEvent::ToolCall {
                    id: "toolu_1".into(),
                    name: "web_fetch".into(),
                    arguments_json: r#"{"url": "https://example.com"}"#.into(),
                },
                ModelEvent::ToolCall {
                    id: "toolu_2".into(),
                    name: "now".into(),
                    arguments_json: "{}".into(),
                },
                ModelEvent::Done {
                    finish_reason: Some("tool_calls".into()),
                    usage: Some(TokenUsage {
                        prompt_tokens: 25,
                        completion_tokens: 89,
                        total_tokens: 114,
                    }),
                },
            ]
        );
    }

    #[test]
    fn stop_reasons_map_and_refusal_fails() {
        let done = |reason: &str| {
            let delta = format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"{reason}"}},"usage":{{"output_tokens":3}}}}"#
            );
            feed_all(&[START, &delta, r#"{"type":"message_stop"}"#])
        };
        let reason = |reason: &str| match done(reason).expect("parsed").pop() {
            Some(ModelEvent::Done { finish_reason, .. }) => finish_reason,
            other => panic!("no done: {other:?}"),
        };
        assert_eq!(reason("end_turn").as_deref(), Some("stop"));
        assert_eq!(reason("max_tokens").as_deref(), Some("length"));
        assert_eq!(reason("stop_sequence").as_deref(), Some("stop"));
        let refusal = done("refusal").expect_err("refused");
        assert_eq!(refusal.kind, ProviderErrorKind::Refusal);
    }

    #[test]
    fn error_events_are_classified() {
        let error = |kind: &str, message: &str| {
            let event =
                format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#);
            feed_all(&[START, &event]).expect_err("failed").kind
        };
        assert_eq!(
            error("overloaded_error", "Overloaded"),
            ProviderErrorKind::Server
        );
        assert_eq!(
            error("rate_limit_error", "slow down"),
            ProviderErrorKind::RateLimit
        );
        assert_eq!(
            error("invalid_request_error", "prompt is too long: 210000 tokens"),
            ProviderErrorKind::ContextLength
        );
        assert_eq!(
            error("authentication_error", "bad key"),
            ProviderErrorKind::Auth
        );
        assert_eq!(error("api_error", "oops"), ProviderErrorKind::Server);
    }

    #[test]
    fn malformed_events_are_skipped_until_too_many() {
        let mut lines = vec![START, "not json", r#"{"type":"nonsense"}"#];
        lines.push(r#"{"type":"message_stop"}"#);
        assert!(matches!(
            feed_all(&lines).expect("tolerated").last(),
            Some(ModelEvent::Done { .. })
        ));
        let garbage = vec!["{"; 10];
        assert_eq!(
            feed_all(&garbage).expect_err("too many").kind,
            ProviderErrorKind::Protocol
        );
    }

    #[test]
    fn system_messages_and_roles_are_shaped_for_the_api() {
        let messages = [
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "hi"),
            ChatMessage::new("user", "again"),
            ChatMessage::new("assistant", "hello"),
        ];
        let body =
            serde_json::to_value(RequestBody::new("claude", 1024, &messages, &[])).expect("json");
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            ])
        );
    }

    #[test]
    fn tool_calls_and_results_become_blocks() {
        let calls = vec![
            super::super::ToolCall {
                id: "toolu_1".into(),
                name: "sessions_list".into(),
                arguments_json: r#"{"limit":2}"#.into(),
            },
            super::super::ToolCall {
                id: "toolu_2".into(),
                name: "sessions_list".into(),
                arguments_json: "not json".into(),
            },
        ];
        let messages = [
            ChatMessage::new("user", "list"),
            ChatMessage::assistant_with_calls("", calls),
            ChatMessage::tool_result("toolu_1", "[]", false),
            ChatMessage::tool_result("toolu_2", "bad arguments", true),
        ];
        let tools = [ToolSpec {
            name: "sessions_list".into(),
            description: "Lists sessions.".into(),
            parameters: json!({"type": "object"}),
        }];
        let body = serde_json::to_value(RequestBody::new("claude", 1024, &messages, &tools))
            .expect("json");
        assert_eq!(
            body["tools"],
            json!([{"name": "sessions_list", "description": "Lists sessions.",
                "input_schema": {"type": "object"}}])
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "list"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "sessions_list", "input": {"limit": 2}},
                    {"type": "tool_use", "id": "toolu_2", "name": "sessions_list", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "[]"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "bad arguments",
                        "is_error": true},
                ]},
            ])
        );
    }
}
