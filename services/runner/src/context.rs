//! A run's transcript: the context sent to the model, built from the session's
//! rows, and the rows a run writes.
//!
//! Invariants: the context never holds a tool result without the assistant
//! message that called it, nor an assistant tool call without a result (a
//! missing one is stood in for by an error result), so a resumed conversation
//! is always one a provider accepts; empty turns (a run aborted before any
//! text) are left out. Rows a run writes are idempotent by (run, role, part).

use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::session::{
    AppendMessageRequest, SessionApi as _, SessionClient, TranscriptMessage,
};

use crate::provider::{ChatMessage, ToolCall};

/// Attempts at writing a row before giving up (and logging).
const TRANSCRIPT_WRITE_ATTEMPTS: u32 = 3;

/// The part of the row a reaper writes for a run whose runner died: past any
/// part the run wrote itself.
pub(crate) const LOST_RUN_PART: u32 = u32::MAX;

/// What the model reads for a call whose result was never recorded.
const MISSING_RESULT: &str = "no result was recorded for this tool call";

/// The transcript rows the model sees, oldest first, after an optional system prompt.
pub(crate) fn context_messages(
    system_prompt: Option<&str>,
    rows: &[TranscriptMessage],
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(rows.len() + 1);
    if let Some(prompt) = system_prompt.filter(|prompt| !prompt.is_empty()) {
        messages.push(ChatMessage::new("system", prompt));
    }
    let mut index = 0;
    while index < rows.len() {
        let row = &rows[index];
        index += 1;
        match row.role.as_str() {
            "assistant" if !row.tool_calls.is_empty() => {
                // Its results are the tool rows right after it.
                let mut results = Vec::new();
                while let Some(next) = rows.get(index).filter(|next| next.role == "tool") {
                    results.push(next);
                    index += 1;
                }
                let calls: Vec<ToolCall> = row
                    .tool_calls
                    .iter()
                    .map(|call| ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        arguments_json: call.arguments_json.clone(),
                    })
                    .collect();
                let answers: Vec<ChatMessage> = calls
                    .iter()
                    .map(|call| {
                        match results.iter().find(|result| result.tool_call_id == call.id) {
                            Some(result) => ChatMessage::tool_result(
                                &call.id,
                                result.content.clone(),
                                result.tool_error,
                            ),
                            None => ChatMessage::tool_result(&call.id, MISSING_RESULT, true),
                        }
                    })
                    .collect();
                messages.push(ChatMessage::assistant_with_calls(
                    row.content.clone(),
                    calls,
                ));
                messages.extend(answers);
            }
            // A result without its call (cut off by the history limit, or orphaned).
            "tool" => {}
            "user" | "assistant" | "system" if !row.content.is_empty() => {
                messages.push(ChatMessage::new(row.role.clone(), row.content.clone()));
            }
            _ => {}
        }
    }
    messages
}

/// Appends a transcript row, retrying with backoff; failures are logged.
pub(crate) async fn write_turn(
    session: &SessionClient,
    principal: &Principal,
    request: AppendMessageRequest,
) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=TRANSCRIPT_WRITE_ATTEMPTS {
        match session.append_message(principal, request.clone()).await {
            Ok(_) => return,
            Err(err) if attempt < TRANSCRIPT_WRITE_ATTEMPTS => {
                tracing::warn!(error = %err, attempt, "transcript write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
            Err(err) => {
                tracing::error!(error = %err, "transcript row could not be written");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clawgate_proto::session::ToolCallRecord;

    use super::*;

    fn row(role: &str, content: &str) -> TranscriptMessage {
        TranscriptMessage {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    fn call(id: &str) -> ToolCallRecord {
        ToolCallRecord {
            id: id.into(),
            name: "sessions_list".into(),
            arguments_json: "{}".into(),
        }
    }

    fn result(id: &str, content: &str) -> TranscriptMessage {
        TranscriptMessage {
            tool_call_id: id.into(),
            ..row("tool", content)
        }
    }

    #[test]
    fn context_skips_orphans_and_empty_turns() {
        let rows = [
            result("gone", "{}"),
            row("user", "hi"),
            row("assistant", ""),
            row("assistant", "hello"),
            row("user", "again"),
        ];
        let messages = context_messages(Some("be brief"), &rows);
        let roles: Vec<_> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(messages[3].content, "again");
    }

    #[test]
    fn tool_steps_come_back_with_every_result() {
        let step = TranscriptMessage {
            tool_calls: vec![call("c1"), call("c2")],
            ..row("assistant", "Looking.")
        };
        let rows = [
            row("user", "list"),
            step,
            result("c2", "second"),
            row("assistant", "Done."),
        ];
        let messages = context_messages(None, &rows);
        let shape: Vec<(&str, &str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str(), m.tool_call_id.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                ("user", "list", ""),
                ("assistant", "Looking.", ""),
                ("tool", MISSING_RESULT, "c1"),
                ("tool", "second", "c2"),
                ("assistant", "Done.", ""),
            ]
        );
        assert_eq!(messages[1].tool_calls.len(), 2);
        assert!(messages[2].is_error);
        assert!(!messages[3].is_error);
    }
}
