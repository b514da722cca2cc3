//! What an OpenClaw connection subscribed to sessions receives: `sessions.changed`
//! and `session.message`, projected from the session service's
//! [`SessionChange`]s and from run lifecycle events.
//!
//! - `sessions.subscribe` ⇒ every visible session's changes (`sessions.changed`
//!   with the change's `reason`, or `phase` start/end/error of a run) and
//!   every visible session's messages (`session.message`);
//! - `sessions.messages.subscribe {key}` ⇒ that session's messages.
//!
//! v4 adds the full row as `session` next to the flattened row fields (v3 has
//! only the flattened ones), and numbers these targeted events like every
//! other (the connection's [`crate::out::Out`] decides).
//!
//! Invariants: nothing is sent to a connection that does not see events
//! (checked by the caller) nor for a session of a user whose runs the
//! connection does not see (the hub delivers only those); each event is
//! sent once however the connection subscribed; message subscriptions are
//! bounded ([`MAX_MESSAGE_KEYS`]) and a subscription beyond that is refused.

use std::collections::HashSet;

use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::{RunEvent, SessionChange, run_event};
use serde_json::{Map, Value, json};

use crate::config::EdgeConfig;
use crate::methods::{Subscription, session_row};
use crate::out::EventOut;

/// Sessions one connection may follow with `sessions.messages.subscribe`.
pub const MAX_MESSAGE_KEYS: usize = 256;

/// A connection's session subscriptions.
#[derive(Debug, Default)]
pub struct Subscriptions {
    all: bool,
    keys: HashSet<String>,
}

impl Subscriptions {
    /// Applies `change`; the answer to send.
    pub fn apply(&mut self, change: Subscription) -> Result<Value, ServiceError> {
        match change {
            Subscription::Sessions(on) => {
                self.all = on;
                Ok(json!({ "subscribed": on }))
            }
            Subscription::Messages { key, on: true } => {
                if !self.keys.contains(&key) && self.keys.len() >= MAX_MESSAGE_KEYS {
                    return Err(ServiceError::new(
                        clawgate_proto::ErrorCode::ResourceExhausted,
                        format!("at most {MAX_MESSAGE_KEYS} session message subscriptions"),
                    ));
                }
                self.keys.insert(key.clone());
                Ok(json!({ "subscribed": true, "key": key }))
            }
            Subscription::Messages { key, on: false } => {
                self.keys.remove(&key);
                Ok(json!({ "subscribed": false, "key": key }))
            }
            // Node events are a node's (its connection routes them elsewhere).
            Subscription::NodeChat { .. }
            | Subscription::NodeEvent { .. }
            | Subscription::NodeResult(_) => {
                Err(ServiceError::forbidden("unauthorized role: operator"))
            }
        }
    }

    /// The events of `change` for this connection.
    pub fn on_change(
        &self,
        change: &SessionChange,
        v4: bool,
        config: &EdgeConfig,
    ) -> Vec<EventOut> {
        let mut out = Vec::new();
        let is_message = change.reason == "message";
        let wants_message = self.all || self.keys.contains(&change.session_key);
        if is_message && !wants_message || !is_message && !self.all {
            return out;
        }
        // Whether a run is in flight is not part of a change: left out
        // rather than guessed.
        let row = change.session.as_ref().map(|session| {
            let mut row = session_row::row(session, &[], config);
            row.remove("hasActiveRun");
            row
        });
        let mut base = Map::new();
        base.insert("sessionKey".into(), json!(change.session_key));
        base.insert("agentId".into(), json!(agent_of(change, config)));
        if is_message {
            let Some(message) = &change.message else {
                return out;
            };
            let mut payload = base.clone();
            payload.insert("message".into(), session_row::message(message, v4, None));
            payload.insert("messageId".into(), json!(message.id));
            payload.insert("messageSeq".into(), json!(message.seq));
            // The run that wrote it (a user turn is the run's input, not its
            // output).
            if !message.run_id.is_empty() && message.role != "user" {
                payload.insert("runId".into(), json!(message.run_id));
            }
            with_row(&mut payload, row.as_ref(), v4);
            out.push(EventOut::targeted(
                "session.message",
                Value::Object(payload),
            ));
            // The message is the change (a subscriber re-reads the session
            // after it, as after a run's end).
            return out;
        }
        base.insert("reason".into(), json!(change.reason));
        base.insert("ts".into(), json!(change.ts_ms));
        with_row(&mut base, row.as_ref(), v4);
        out.push(EventOut::targeted("sessions.changed", Value::Object(base)));
        out
    }

    /// The `sessions.changed` of a run's start or end, for a connection
    /// subscribed to every session.
    pub fn on_run(&self, event: &RunEvent, config: &EdgeConfig) -> Option<EventOut> {
        if !self.all {
            return None;
        }
        let phase = match event.kind.as_ref()? {
            run_event::Kind::Start(_) => "start",
            run_event::Kind::End(_) => "end",
            run_event::Kind::Error(_) => "error",
            _ => return None,
        };
        let agent = match event.agent_id.as_str() {
            "" => {
                crate::session_key::agent_of(&event.session_key).unwrap_or(&config.default_agent_id)
            }
            agent => agent,
        };
        Some(EventOut::targeted(
            "sessions.changed",
            json!({
                "sessionKey": event.session_key,
                "agentId": agent,
                "phase": phase,
                "runId": event.run_id,
                "ts": event.ts_ms,
            }),
        ))
    }
}

fn agent_of<'a>(change: &'a SessionChange, config: &'a EdgeConfig) -> &'a str {
    match change.agent_id.as_str() {
        "" => crate::session_key::agent_of(&change.session_key).unwrap_or(&config.default_agent_id),
        agent => agent,
    }
}

/// The row fields OpenClaw repeats at the top of a session event.
const FLATTENED: [&str; 9] = [
    "kind",
    "chatType",
    "createdAt",
    "updatedAt",
    "archived",
    "pinned",
    "unread",
    "sessionId",
    "status",
];

/// Adds the row's headline fields (flattened, `label`/`displayName` `null`
/// when unset; v4 also the whole row as `session`), never overwriting the
/// event's own.
fn with_row(payload: &mut Map<String, Value>, row: Option<&Map<String, Value>>, v4: bool) {
    let Some(row) = row else {
        return;
    };
    for key in FLATTENED {
        if let Some(value) = row.get(key)
            && !payload.contains_key(key)
        {
            payload.insert(key.to_owned(), value.clone());
        }
    }
    for key in ["label", "displayName"] {
        let value = row.get(key).cloned().unwrap_or(Value::Null);
        payload.entry(key).or_insert(value);
    }
    if v4 {
        payload.insert("session".into(), Value::Object(row.clone()));
    }
}

#[cfg(test)]
#[path = "session_events_tests.rs"]
mod tests;
