//! Turns `RunEvent`s into goclaw events. Following the goclaw protocol page, the
//! event names are top level: `run.started`, `chunk`, `tool.call`,
//! `tool.result`, `run.completed` (goclaw's code nests them in `agent` events).
//!
//! Invariants: one frame per run event, in run order, none droppable (`chunk`
//! carries increments, so a dropped one would corrupt the text); every frame names
//! its `runId`, `sessionKey` and `userId` (as goclaw's `AgentEvent` does; admins
//! receive the runs of every user of their tenant and tell them apart by it);
//! `run.completed` also ends aborted and failed runs,
//! with `status` `cancelled` / `error`; goclaw events carry no frame seq.

use clawgate_proto::pb::common::v1::{RunEvent, RunOutcome, Usage, run_event};
use serde_json::{Value, json};

use crate::out::EventOut;

/// goclaw's usage object.
pub fn usage_json(usage: Option<&Usage>) -> Value {
    let usage = usage.cloned().unwrap_or_default();
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

fn json_or_string(raw: &str) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// The frame `event` produces on a goclaw connection.
pub fn project(event: &RunEvent) -> Option<EventOut> {
    let (name, mut payload) = match event.kind.as_ref()? {
        run_event::Kind::Start(_) => {
            let mut payload = json!({});
            if !event.agent_id.is_empty() {
                payload["agentId"] = json!(event.agent_id);
            }
            ("run.started", payload)
        }
        run_event::Kind::Assistant(delta) => {
            if delta.delta.is_empty() {
                return None;
            }
            ("chunk", json!({ "content": delta.delta }))
        }
        run_event::Kind::Thinking(delta) => {
            if delta.delta.is_empty() {
                return None;
            }
            ("thinking", json!({ "content": delta.delta }))
        }
        run_event::Kind::ToolStart(tool) => (
            "tool.call",
            json!({
                "name": tool.name,
                "id": tool.tool_call_id,
                "arguments": json_or_string(&tool.arguments_json),
            }),
        ),
        run_event::Kind::ToolResult(tool) => (
            "tool.result",
            json!({
                "name": tool.name,
                "id": tool.tool_call_id,
                "is_error": tool.is_error,
                "result": json_or_string(&tool.result_json),
            }),
        ),
        run_event::Kind::End(end) => {
            let aborted = end.outcome == RunOutcome::Aborted as i32;
            let mut payload = json!({
                "content": end.text,
                "usage": usage_json(end.usage.as_ref()),
                "status": if aborted { "cancelled" } else { "completed" },
            });
            if !end.stop_reason.is_empty() {
                payload["stopReason"] = json!(end.stop_reason);
            }
            ("run.completed", payload)
        }
        run_event::Kind::Error(error) => (
            "run.completed",
            json!({
                "content": error.text,
                "status": "error",
                "error": error.message,
                "errorKind": if error.kind.is_empty() { "unknown" } else { &error.kind },
            }),
        ),
    };
    payload["runId"] = json!(event.run_id);
    payload["sessionKey"] = json!(event.session_key);
    if !event.user_id.is_empty() {
        payload["userId"] = json!(event.user_id);
    }
    Some(EventOut::broadcast(name, payload))
}

/// Whether `event` ends its run.
pub fn is_terminal(event: &RunEvent) -> bool {
    matches!(
        event.kind,
        Some(run_event::Kind::End(_) | run_event::Kind::Error(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::Delivery;
    use clawgate_proto::pb::common::v1::{
        AssistantDelta, LifecycleEnd, LifecycleError, LifecycleStart, ToolStart,
    };

    fn ev(kind: run_event::Kind) -> RunEvent {
        RunEvent {
            run_id: "r1".into(),
            user_id: "alice".into(),
            session_key: "agent:main:ws:direct:x".into(),
            seq: 1,
            kind: Some(kind),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_payloads() {
        let start = project(&ev(run_event::Kind::Start(LifecycleStart::default()))).expect("frame");
        assert_eq!(start.event, "run.started");
        assert_eq!(start.payload["runId"], "r1");
        assert_eq!(start.payload["userId"], "alice");
        assert_eq!(start.delivery, Delivery::Broadcast);

        let chunk = project(&ev(run_event::Kind::Assistant(AssistantDelta {
            delta: "hel".into(),
            offset: 0,
        })))
        .expect("frame");
        assert_eq!(chunk.event, "chunk");
        assert_eq!(chunk.payload["content"], "hel");

        let tool = project(&ev(run_event::Kind::ToolStart(ToolStart {
            tool_call_id: "c".into(),
            name: "n".into(),
            arguments_json: "{\"a\":1}".into(),
        })))
        .expect("frame");
        assert_eq!(tool.event, "tool.call");
        assert_eq!(tool.payload["arguments"]["a"], 1);

        let end = ev(run_event::Kind::End(LifecycleEnd {
            outcome: RunOutcome::Aborted as i32,
            text: "part".into(),
            ..Default::default()
        }));
        assert!(is_terminal(&end));
        let done = project(&end).expect("frame");
        assert_eq!(done.event, "run.completed");
        assert_eq!(done.payload["status"], "cancelled");
        assert_eq!(done.payload["content"], "part");

        let failed = project(&ev(run_event::Kind::Error(LifecycleError {
            message: "boom".into(),
            ..Default::default()
        })))
        .expect("frame");
        assert_eq!(failed.payload["status"], "error");
        assert_eq!(failed.payload["error"], "boom");
    }
}
