//! How a session and a transcript message look to OpenClaw clients: the session
//! row of `sessions.list`, `sessions.describe`, `chat.history`'s `sessionInfo`
//! and the session events, and a transcript message of `chat.history`,
//! `sessions.get` and `session.message`; plus the runner lookup of which
//! sessions have a run in flight.
//!
//! Invariant: every field is real state — the session service's row and the
//! runner's runs in flight; what clawgate does not track (pinning, unread
//! marks, per-session model overrides) is reported as its true value (`false`)
//! or not at all, never invented.

use std::collections::HashMap;

use clawgate_proto::runner::{ActiveRunsRequest, ListModelsRequest, RunnerApi as _, SessionRef};
use clawgate_proto::session::{MessageStatus, Session, TranscriptMessage};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Map, Value, json};

use crate::config::EdgeConfig;
use crate::session_key;
use crate::state::EdgeState;

/// Transcript rows larger than this are replaced by a placeholder.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The runs in flight of some sessions, by (user, session key).
#[derive(Debug, Default, Clone)]
pub struct ActiveRuns {
    runs: HashMap<(String, String), Vec<String>>,
}

impl ActiveRuns {
    /// Asks the runner which of `sessions` have a run in flight.
    pub async fn of(
        state: &EdgeState,
        principal: &Principal,
        sessions: &[Session],
    ) -> Result<Self, ServiceError> {
        if sessions.is_empty() {
            return Ok(Self::default());
        }
        let request = ActiveRunsRequest {
            sessions: sessions
                .iter()
                .map(|s| SessionRef {
                    user_id: s.user_id.clone(),
                    session_key: s.session_key.clone(),
                })
                .collect(),
        };
        let response = state
            .services
            .runner
            .active_runs(principal, request)
            .await?;
        let mut runs: HashMap<(String, String), Vec<String>> = HashMap::new();
        for run in response.runs {
            runs.entry((run.user_id, run.session_key))
                .or_default()
                .push(run.run_id);
        }
        Ok(Self { runs })
    }

    /// The runs in flight of `session`.
    pub fn of_session(&self, session: &Session) -> &[String] {
        self.runs
            .get(&(session.user_id.clone(), session.session_key.clone()))
            .map_or(&[], Vec::as_slice)
    }
}

/// The session defaults of `sessions.list` (with `thinking` levels) and
/// `chat.history`: the model the runner is configured with (`null` when it
/// does not answer; the context window is not known: `null`); v4 adds
/// clawgate's own runtime and where a model choice applies.
pub async fn defaults(state: &EdgeState, principal: &Principal, v4: bool, thinking: bool) -> Value {
    let models = state
        .services
        .runner
        .list_models(principal, ListModelsRequest {})
        .await
        .inspect_err(|err| tracing::debug!(error = %err, "model list unavailable"))
        .ok();
    let first = models.as_ref().and_then(|m| m.models.first());
    let mut defaults = json!({
        "modelProvider": first.map(|m| m.provider.clone()),
        "model": first.map(|m| m.id.clone()),
        "contextTokens": null,
    });
    if thinking {
        // clawgate sets no thinking levels.
        defaults["thinkingLevels"] = json!([]);
        defaults["thinkingOptions"] = json!([]);
        defaults["thinkingDefault"] = Value::Null;
    }
    if v4 {
        defaults["agentRuntime"] = json!({
            "id": "clawgate",
            "cloudPlacementSupported": false,
            "devicePlacementSupported": false,
            "source": "implicit",
        });
        defaults["modelSelectionTarget"] = json!("session");
    }
    defaults
}

/// Whether `key` is its agent's main session.
pub fn is_main(key: &str, config: &EdgeConfig) -> bool {
    session_key::agent_of(key)
        .is_some_and(|agent| key == format!("agent:{agent}:{}", config.main_key))
}

/// The session row of `session` with its runs in flight `active`.
pub fn row(session: &Session, active: &[String], config: &EdgeConfig) -> Map<String, Value> {
    let key = session.session_key.as_str();
    let kind = session_key::kind_of(key);
    let agent_id = match session.agent_id.as_str() {
        "" => session_key::agent_of(key).unwrap_or(&config.default_agent_id),
        agent => agent,
    };
    let mut row = Map::new();
    row.insert("key".into(), json!(key));
    row.insert("kind".into(), json!(kind));
    row.insert("classification".into(), json!(kind));
    row.insert("agentId".into(), json!(agent_id));
    row.insert("isMain".into(), json!(is_main(key, config)));
    row.insert("isBackground".into(), json!(false));
    row.insert("chatType".into(), json!(kind));
    row.insert("createdAt".into(), json!(session.created_at_ms));
    row.insert("updatedAt".into(), json!(session.updated_at_ms));
    row.insert("lastInteractionAt".into(), json!(session.updated_at_ms));
    row.insert("archived".into(), json!(false));
    row.insert("pinned".into(), json!(false));
    row.insert("unread".into(), json!(false));
    row.insert("sessionId".into(), json!(session.session_id));
    row.insert("messageCount".into(), json!(session.message_count));
    if !session.user_id.is_empty() {
        row.insert("userId".into(), json!(session.user_id));
    }
    if !session.label.is_empty() {
        row.insert("label".into(), json!(session.label));
        row.insert("displayName".into(), json!(session.label));
    }
    if !session.last_message_preview.is_empty() {
        row.insert(
            "lastMessagePreview".into(),
            json!(session.last_message_preview),
        );
    }
    if !active.is_empty() {
        row.insert("status".into(), json!("running"));
    }
    row.insert("hasActiveRun".into(), json!(!active.is_empty()));
    row
}

/// A transcript message. OpenClaw v4 (`user_text`) sends a user turn's
/// content as a plain string and a message's run in its `__openclaw`
/// metadata; v3 sends text parts and a top-level `runId`. `max_chars` cuts
/// the text.
pub fn message(row: &TranscriptMessage, user_text: bool, max_chars: Option<usize>) -> Value {
    let mut text = row.content.clone();
    if let Some(max) = max_chars
        && let Some((cut, _)) = text.char_indices().nth(max)
    {
        text.truncate(cut);
    }
    if text.len() > MAX_MESSAGE_BYTES {
        text = "[message omitted: too large]".to_owned();
    }
    let role = if row.role == "tool" {
        "toolResult"
    } else {
        row.role.as_str()
    };
    let content = if user_text && role == "user" {
        json!(text)
    } else if !row.tool_calls.is_empty() {
        // A tool-loop step: its text (if any), then one block per call.
        let mut blocks: Vec<Value> = Vec::with_capacity(row.tool_calls.len() + 1);
        if !text.is_empty() {
            blocks.push(json!({ "type": "text", "text": text }));
        }
        blocks.extend(row.tool_calls.iter().map(|call| {
            let arguments = serde_json::from_str::<Value>(&call.arguments_json)
                .unwrap_or_else(|_| json!(call.arguments_json));
            json!({ "type": "toolCall", "id": call.id, "name": call.name, "arguments": arguments })
        }));
        json!(blocks)
    } else {
        json!([{ "type": "text", "text": text }])
    };
    let mut message = json!({
        "role": role,
        "content": content,
        "timestamp": row.created_at_ms,
        "__openclaw": { "id": row.id, "seq": row.seq },
    });
    if role == "toolResult" && !row.tool_call_id.is_empty() {
        message["toolCallId"] = json!(row.tool_call_id);
        message["toolName"] = json!(row.tool_name);
        message["isError"] = json!(row.tool_error);
    }
    if !row.run_id.is_empty() {
        // v4 moved a message's run into its transcript metadata.
        if user_text {
            message["__openclaw"]["runId"] = json!(row.run_id);
        } else {
            message["runId"] = json!(row.run_id);
        }
    }
    if row.status == MessageStatus::Complete as i32 && role == "assistant" {
        let stop = if row.tool_calls.is_empty() {
            "stop"
        } else {
            "toolUse"
        };
        message["stopReason"] = json!(stop);
    } else if row.status == MessageStatus::Aborted as i32 {
        message["stopReason"] = json!("aborted");
    } else if row.status == MessageStatus::Error as i32 {
        message["stopReason"] = json!("error");
        message["errorMessage"] = json!(row.error);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(key: &str) -> Session {
        Session {
            session_key: key.into(),
            agent_id: "main".into(),
            session_id: "s-1".into(),
            created_at_ms: 10,
            updated_at_ms: 20,
            message_count: 2,
            ..Default::default()
        }
    }

    #[test]
    fn rows_tell_the_truth() {
        let config = EdgeConfig::default();
        let main = row(&session("agent:main:main"), &[], &config);
        assert_eq!(main["isMain"], json!(true));
        assert_eq!(main["hasActiveRun"], json!(false));
        assert!(main.get("status").is_none());
        assert!(main.get("label").is_none());
        let mut labelled = session("agent:main:work");
        labelled.label = "Work".into();
        let busy = row(&labelled, &["r1".to_owned()], &config);
        assert_eq!(busy["isMain"], json!(false));
        assert_eq!(busy["hasActiveRun"], json!(true));
        assert_eq!(busy["status"], json!("running"));
        assert_eq!(busy["displayName"], json!("Work"));
        assert_eq!(busy["sessionId"], json!("s-1"));
        let group = row(&session("agent:main:telegram:group:1"), &[], &config);
        assert_eq!(group["chatType"], json!("group"));
    }

    #[test]
    fn messages_by_role() {
        let mut user = TranscriptMessage {
            id: "m1".into(),
            seq: 1,
            role: "user".into(),
            content: "héllo".into(),
            created_at_ms: 5,
            ..Default::default()
        };
        assert_eq!(message(&user, true, None)["content"], json!("héllo"));
        assert_eq!(
            message(&user, false, Some(2))["content"],
            json!([{ "type": "text", "text": "hé" }])
        );
        user.role = "tool".into();
        user.status = MessageStatus::Error as i32;
        user.error = "boom".into();
        let tool = message(&user, true, None);
        assert_eq!(tool["role"], json!("toolResult"));
        assert_eq!(tool["stopReason"], json!("error"));
        assert_eq!(tool["__openclaw"], json!({ "id": "m1", "seq": 1 }));
    }

    #[test]
    fn tool_steps_and_results_show_as_openclaw_reads_them() {
        let step = TranscriptMessage {
            role: "assistant".into(),
            content: "Looking.".into(),
            status: MessageStatus::Complete as i32,
            tool_calls: vec![clawgate_proto::session::ToolCallRecord {
                id: "c1".into(),
                name: "sessions_list".into(),
                arguments_json: r#"{"limit":2}"#.into(),
            }],
            ..Default::default()
        };
        let shown = message(&step, true, None);
        assert_eq!(
            shown["content"],
            json!([
                { "type": "text", "text": "Looking." },
                { "type": "toolCall", "id": "c1", "name": "sessions_list", "arguments": { "limit": 2 } },
            ])
        );
        assert_eq!(shown["stopReason"], json!("toolUse"));
        let result = TranscriptMessage {
            role: "tool".into(),
            content: "[]".into(),
            tool_call_id: "c1".into(),
            tool_name: "sessions_list".into(),
            ..Default::default()
        };
        let shown = message(&result, true, None);
        assert_eq!(shown["role"], json!("toolResult"));
        assert_eq!(
            (&shown["toolCallId"], &shown["toolName"], &shown["isError"]),
            (&json!("c1"), &json!("sessions_list"), &json!(false))
        );
    }
}
