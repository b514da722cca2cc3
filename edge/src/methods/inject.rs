//! `chat.inject`: appends an assistant note to a session's transcript without
//! running the agent (both dialects: `{sessionKey, message, label?}` ⇒
//! `{ok:true, messageId}`; a label is kept as a `[label]` line before the
//! message). Once answered, the note is published on the user's run topics
//! ([`Notice::Note`]); OpenClaw connections that see the user's runs show it as
//! a `chat` final of run `inject-<messageId>` with `seq` 0.
//!
//! Invariants: the session must exist (a note does not create one); the note
//! belongs to the caller's own user (the session service scopes by principal);
//! the message is sanitized and not empty; a label has at most 100 characters.

use clawgate_proto::pb::common::v1::TranscriptNote;
use clawgate_proto::session::{AppendMessageRequest, GetSessionRequest, MessageStatus, SessionApi};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use serde_json::json;

use super::decl::{Method, Outcome, Request, Role, Runs, Scope, job};
use crate::notify::Notice;
use crate::params::Style;
use crate::session_key;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[Method::call(
    "chat.inject",
    Some(Scope::Admin),
    Some(Role::Operator),
    |r| parse_inject(r).map(job),
)];

const MAX_LABEL_CHARS: usize = 100;

/// A validated `chat.inject`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inject {
    pub session_key: String,
    pub agent_id: String,
    /// The stored content (label line included).
    pub content: String,
}

fn parse_inject(request: &Request<'_>) -> Result<Inject, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let config = request.config;
    let obj = request.closed(&["sessionKey", "message", "label"])?;
    let key = obj.req_str_len("sessionKey", 512).map_err(bad)?;
    let message: String = obj
        .req_str("message")
        .map_err(bad)?
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect();
    if message.trim().is_empty() {
        return Err(bad("message is required".into()));
    }
    let label = obj.opt_str("label").map_err(bad)?.map(str::trim);
    if label.is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS) {
        return Err(bad(format!(
            "at /label: must NOT have more than {MAX_LABEL_CHARS} characters"
        )));
    }
    let session_key = session_key::canonicalize(key, &config.default_agent_id, &config.main_key)
        .map_err(|err| bad(err.to_string()))?;
    let agent_id = session_key::agent_of(&session_key)
        .unwrap_or(&config.default_agent_id)
        .to_owned();
    let content = match label.filter(|l| !l.is_empty()) {
        Some(label) => format!("[{label}]\n\n{message}"),
        None => message,
    };
    Ok(Inject {
        session_key,
        agent_id,
        content,
    })
}

impl Runs for Inject {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        match inject(state, principal, self).await {
            Ok((result, note)) => Outcome {
                result: Ok(result),
                notices: vec![Notice::Note(note)],
            },
            Err(err) => Outcome::from(Err(err)),
        }
    }
}

async fn inject(
    state: &EdgeState,
    principal: &Principal,
    call: Inject,
) -> Result<(serde_json::Value, TranscriptNote), ServiceError> {
    let session = &state.services.session;
    let get = GetSessionRequest {
        session_key: call.session_key.clone(),
    };
    match session.get_session(principal, get).await {
        Ok(_) => {}
        Err(err) if err.code == ErrorCode::NotFound => {
            return Err(ServiceError::invalid(format!(
                "session not found: {}",
                call.session_key
            )));
        }
        Err(err) => return Err(err),
    }
    let append = AppendMessageRequest {
        session_key: call.session_key.clone(),
        role: "assistant".into(),
        content: call.content,
        status: MessageStatus::Complete as i32,
        agent_id: call.agent_id.clone(),
        ..Default::default()
    };
    let row = session.append_message(principal, append).await?;
    let note = TranscriptNote {
        tenant_id: principal.tenant_id.clone(),
        user_id: principal.user_id.clone(),
        session_key: row.session_key.clone(),
        agent_id: call.agent_id,
        message_id: row.id.clone(),
        text: row.content,
        ts_ms: row.created_at_ms,
    };
    Ok((json!({ "ok": true, "messageId": row.id }), note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::decl::parse_with;
    use serde_json::Value;

    fn parse(params: Value) -> Result<Inject, ServiceError> {
        let principal = Principal::default();
        parse_with(
            "chat.inject",
            &params,
            Style::Camel,
            &principal,
            parse_inject,
        )
    }

    #[test]
    fn inject_params() {
        let call = parse(json!({"sessionKey": "Main", "message": "note\u{7}", "label": "cron"}))
            .expect("valid");
        assert_eq!(
            call,
            Inject {
                session_key: "agent:main:main".into(),
                agent_id: "main".into(),
                content: "[cron]\n\nnote".into(),
            }
        );
        let long = "x".repeat(101);
        for (params, expected) in [
            (json!({"message": "m"}), "required property 'sessionKey'"),
            (json!({"sessionKey": "s"}), "required property 'message'"),
            (
                json!({"sessionKey": "s", "message": " "}),
                "message is required",
            ),
            (
                json!({"sessionKey": "s", "message": "m", "label": long}),
                "more than 100",
            ),
            (
                json!({"sessionKey": "s", "message": "m", "x": 1}),
                "unexpected property 'x'",
            ),
        ] {
            let err = parse(params.clone()).expect_err("refused");
            assert!(
                err.message.starts_with("invalid chat.inject params: "),
                "{err:?}"
            );
            assert!(err.message.contains(expected), "{params}: {err:?}");
        }
    }
}
