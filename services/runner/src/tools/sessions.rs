//! The session tools: `sessions_list` (the user's sessions, newest first) and
//! `sessions_history` (a session's recent transcript), both reading through
//! the session service as the run's user, so a model sees exactly what its
//! user could read and nothing of other users or tenants.

use async_trait::async_trait;
use clawgate_proto::session::{ListMessagesRequest, ListSessionsRequest, SessionApi as _};
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

const MAX_SESSIONS: u64 = 50;
const DEFAULT_SESSIONS: u64 = 20;
const MAX_MESSAGES: u64 = 100;
const DEFAULT_MESSAGES: u64 = 20;

/// `limit` of `arguments`: within `1..=max`, `default` when absent.
fn limit(arguments: &Value, default: u64, max: u64) -> Result<u32, ToolOutput> {
    match arguments.get("limit") {
        None | Some(Value::Null) => Ok(default as u32),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n as u32),
            _ => Err(ToolOutput::error(format!(
                "limit must be an integer from 1 to {max}"
            ))),
        },
    }
}

pub struct SessionsList;

#[async_trait]
impl Tool for SessionsList {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sessions_list".to_owned(),
            description: "Lists the user's chat sessions, most recently active first: key, \
                label, agent, message count, last activity and a preview of the last message."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SESSIONS,
                        "description": "How many sessions (default 20)."},
                    "search": {"type": "string",
                        "description": "Only sessions whose key or label contains this text."},
                },
                "additionalProperties": false,
            }),
        }
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput {
        let limit = match limit(&arguments, DEFAULT_SESSIONS, MAX_SESSIONS) {
            Ok(limit) => limit,
            Err(output) => return output,
        };
        let search = match arguments.get("search") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(_) => return ToolOutput::error("search must be a string"),
        };
        let request = ListSessionsRequest {
            limit,
            search,
            ..Default::default()
        };
        match context
            .session
            .list_sessions(&context.principal, request)
            .await
        {
            Ok(listed) => {
                let sessions: Vec<Value> = listed
                    .sessions
                    .iter()
                    .map(|session| {
                        json!({
                            "sessionKey": session.session_key,
                            "label": session.label,
                            "agentId": session.agent_id,
                            "messageCount": session.message_count,
                            "updatedAtMs": session.updated_at_ms,
                            "preview": session.last_message_preview,
                        })
                    })
                    .collect();
                ToolOutput::json(&json!({"sessions": sessions, "total": listed.total}))
            }
            Err(err) => {
                ToolOutput::error(format!("the sessions could not be listed: {}", err.message))
            }
        }
    }
}

pub struct SessionsHistory;

#[async_trait]
impl Tool for SessionsHistory {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sessions_history".to_owned(),
            description: "Reads the most recent messages of one of the user's sessions \
                (oldest first), with each message's role and text."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "sessionKey": {"type": "string",
                        "description": "The session, as sessions_list names it."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_MESSAGES,
                        "description": "How many messages (default 20)."},
                },
                "required": ["sessionKey"],
                "additionalProperties": false,
            }),
        }
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> ToolOutput {
        let Some(session_key) = arguments
            .get("sessionKey")
            .and_then(Value::as_str)
            .filter(|key| !key.trim().is_empty())
        else {
            return ToolOutput::error("sessionKey is required (a string)");
        };
        let limit = match limit(&arguments, DEFAULT_MESSAGES, MAX_MESSAGES) {
            Ok(limit) => limit,
            Err(output) => return output,
        };
        let request = ListMessagesRequest {
            session_key: session_key.to_owned(),
            limit,
        };
        match context
            .session
            .list_messages(&context.principal, request)
            .await
        {
            Ok(listed) => {
                let messages: Vec<Value> = listed
                    .messages
                    .iter()
                    .filter(|message| !message.content.is_empty())
                    .map(|message| {
                        json!({
                            "role": message.role,
                            "text": message.content,
                            "atMs": message.created_at_ms,
                        })
                    })
                    .collect();
                ToolOutput::json(&json!({"sessionKey": session_key, "messages": messages}))
            }
            Err(err) => {
                ToolOutput::error(format!("the history could not be read: {}", err.message))
            }
        }
    }
}
