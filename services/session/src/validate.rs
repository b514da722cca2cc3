//! Input rules of the session service: what a valid key, role, message and page
//! size are. Every request passes through here before it reaches the store, so
//! the store only ever sees values both backends accept the same way.

use clawgate_proto::ServiceError;
use clawgate_proto::session::{AppendMessageRequest, MessageStatus};

/// Longest session key, in characters.
pub const MAX_SESSION_KEY_CHARS: usize = 512;
/// Longest agent id or run id, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Longest session label, in characters.
pub const MAX_LABEL_CHARS: usize = 512;
/// Largest message content, in bytes (UTF-8).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// Largest error text of a message, in bytes (UTF-8).
pub const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Page size of `list_sessions` when the request gives none, and its ceiling.
pub const DEFAULT_SESSION_LIMIT: u32 = 100;
pub const MAX_SESSION_LIMIT: u32 = 1000;
/// Messages returned by `list_messages` when the request gives no limit, and the ceiling.
pub const DEFAULT_MESSAGE_LIMIT: u32 = 200;
pub const MAX_MESSAGE_LIMIT: u32 = 1000;
/// Characters of a message kept as its session's `last_message_preview`.
pub const PREVIEW_CHARS: usize = 160;

/// Who wrote a transcript message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

impl Role {
    pub fn parse(role: &str) -> Result<Self, ServiceError> {
        match role {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            "system" => Ok(Self::System),
            "tool" => Ok(Self::Tool),
            other => Err(ServiceError::invalid(format!(
                "invalid role {:?}: expected user, assistant, system or tool",
                truncate(other, 32)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Tool => "tool",
        }
    }

    /// Whether a message of this role becomes its session's preview. Tool output
    /// and system prompts do not.
    pub fn sets_preview(self) -> bool {
        matches!(self, Self::User | Self::Assistant)
    }
}

/// A session key: non-empty, at most [`MAX_SESSION_KEY_CHARS`], no control characters.
pub fn session_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() {
        return Err(ServiceError::invalid("session_key is required"));
    }
    if key.chars().count() > MAX_SESSION_KEY_CHARS {
        return Err(ServiceError::invalid(format!(
            "session_key is longer than {MAX_SESSION_KEY_CHARS} characters"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "session_key must not contain control characters",
        ));
    }
    Ok(())
}

/// An optional identifier (agent id, run id): at most [`MAX_ID_CHARS`], no control characters.
pub fn optional_id(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.chars().count() > MAX_ID_CHARS {
        return Err(ServiceError::invalid(format!(
            "{field} is longer than {MAX_ID_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

pub fn label(label: &str) -> Result<(), ServiceError> {
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(ServiceError::invalid(format!(
            "label is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    no_nul("label", label)
}

/// A listing's label or search text: at most as long as a label, no NUL.
pub fn filter_text(field: &str, text: &str) -> Result<(), ServiceError> {
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(ServiceError::invalid(format!(
            "{field} is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    no_nul(field, text)
}

/// Message content: at most [`MAX_CONTENT_BYTES`]; may be empty (an aborted turn).
pub fn content(content: &str) -> Result<(), ServiceError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ServiceError::invalid(format!(
            "content is larger than {MAX_CONTENT_BYTES} bytes"
        )));
    }
    no_nul("content", content)
}

pub fn error_text(error: &str) -> Result<(), ServiceError> {
    if error.len() > MAX_ERROR_BYTES {
        return Err(ServiceError::invalid(format!(
            "error is larger than {MAX_ERROR_BYTES} bytes"
        )));
    }
    no_nul("error", error)
}

/// Most tool calls one assistant row may carry.
pub const MAX_TOOL_CALLS: usize = 64;

/// A row's tool data: calls only on assistant rows, a call id and tool name
/// only on tool rows, bounded ids, names and arguments.
pub fn tool_data(role: Role, request: &AppendMessageRequest) -> Result<(), ServiceError> {
    if !request.tool_calls.is_empty() && role != Role::Assistant {
        return Err(ServiceError::invalid(
            "only assistant rows carry tool calls",
        ));
    }
    if request.tool_calls.len() > MAX_TOOL_CALLS {
        return Err(ServiceError::invalid(format!(
            "more than {MAX_TOOL_CALLS} tool calls on one row"
        )));
    }
    let mut arguments = 0;
    for call in &request.tool_calls {
        required_id("tool call id", &call.id)?;
        required_id("tool name", &call.name)?;
        no_nul("tool call arguments", &call.arguments_json)?;
        arguments += call.arguments_json.len();
    }
    if arguments > MAX_CONTENT_BYTES {
        return Err(ServiceError::invalid(format!(
            "tool call arguments are larger than {MAX_CONTENT_BYTES} bytes"
        )));
    }
    match role {
        Role::Tool => {
            optional_id("tool_call_id", &request.tool_call_id)?;
            optional_id("tool_name", &request.tool_name)
        }
        _ if !request.tool_call_id.is_empty() || !request.tool_name.is_empty() => Err(
            ServiceError::invalid("only tool rows carry tool_call_id and tool_name"),
        ),
        _ => Ok(()),
    }
}

fn required_id(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::invalid(format!("{field} is required")));
    }
    optional_id(field, value)
}

/// The stored status of a message; `UNSPECIFIED` means complete.
pub fn status(status: i32) -> Result<MessageStatus, ServiceError> {
    match MessageStatus::try_from(status) {
        Ok(MessageStatus::Unspecified) => Ok(MessageStatus::Complete),
        Ok(status) => Ok(status),
        Err(_) => Err(ServiceError::invalid(format!(
            "invalid message status {status}"
        ))),
    }
}

/// `requested`, or `default` when zero, capped at `max`.
pub fn page_size(requested: u32, default: u32, max: u32) -> i64 {
    i64::from(if requested == 0 {
        default
    } else {
        requested.min(max)
    })
}

/// The preview of a message: whitespace collapsed, at most [`PREVIEW_CHARS`].
pub fn preview(content: &str) -> String {
    let collapsed = content.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&collapsed, PREVIEW_CHARS).to_owned()
}

/// PostgreSQL cannot store NUL in TEXT; refuse it on both backends alike.
fn no_nul(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.contains('\0') {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

fn truncate(value: &str, chars: usize) -> &str {
    value
        .char_indices()
        .nth(chars)
        .map_or(value, |(end, _)| &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(session_key("main").is_ok());
        assert!(session_key("").is_err());
        assert!(session_key(&"k".repeat(MAX_SESSION_KEY_CHARS)).is_ok());
        assert!(session_key(&"k".repeat(MAX_SESSION_KEY_CHARS + 1)).is_err());
        assert!(session_key("a\nb").is_err());
    }

    #[test]
    fn previews_collapse_and_truncate() {
        assert_eq!(preview("  hello \n  world "), "hello world");
        let long = "é".repeat(PREVIEW_CHARS + 10);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 100, 1000), 100);
        assert_eq!(page_size(5, 100, 1000), 5);
        assert_eq!(page_size(5000, 100, 1000), 1000);
    }

    #[test]
    fn statuses() {
        assert_eq!(status(0).ok(), Some(MessageStatus::Complete));
        assert_eq!(status(2).ok(), Some(MessageStatus::Aborted));
        assert!(status(99).is_err());
    }
}
