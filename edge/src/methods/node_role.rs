//! Methods only a node calls (OpenClaw §4.1, §5.7):
//! - `node.invoke.result {id, nodeId, ok, payload?, payloadJSON?, error?:
//!   {code?, message?}}` → `{ok: true}`, or `{ok: true, ignored: true}` for a
//!   late or unknown id: the answer goes back to whichever process called
//!   (the connection answers at once: a node answering many calls is not
//!   held to the in-flight limit of spawned calls);
//! - `node.event {event, payload?, payloadJSON?}` → `{ok, event, handled}`:
//!   `chat.subscribe` / `chat.unsubscribe` (`{sessionKey}`) make the node's
//!   connection receive (or stop receiving) that session's `chat` and `agent`
//!   events, wherever its runs are; other events are acknowledged with
//!   `handled: false` and a reason.
//!
//! Invariants: `nodeId` must be the caller's own id (its device); a node
//! answers only calls delivered to its own socket.

use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::NodeInvokeResult;
use serde_json::Value;

use super::decl::{Handler, Method, Request, Scope, Subscription, Versions};
use crate::session_key;

const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

pub const METHODS: &[Method] = &[
    Method {
        name: "node.invoke.result",
        openclaw: Some(Scope::Node),
        goclaw: None,
        handler: Handler::Subscribe(parse_result),
        versions: Versions::ALL,
    },
    Method {
        name: "node.event",
        openclaw: Some(Scope::Node),
        goclaw: None,
        handler: Handler::Subscribe(parse_event),
        versions: Versions::ALL,
    },
];

fn own_node(request: &Request<'_>, node_id: &str) -> Result<(), ServiceError> {
    if node_id == request.principal.device_id {
        Ok(())
    } else {
        Err(ServiceError::invalid("nodeId mismatch"))
    }
}

/// JSON text of `payloadJSON`, else of `payload`; empty for none.
fn payload_text(
    request: &Request<'_>,
    obj: &crate::params::Obj<'_>,
) -> Result<String, ServiceError> {
    let invalid = |why: String| request.invalid(why);
    let text = match obj.opt_str("payloadJSON").map_err(invalid)? {
        Some(text) => {
            serde_json::from_str::<Value>(text)
                .map_err(|_| request.invalid("at /payloadJSON: not JSON".to_owned()))?;
            text.to_owned()
        }
        None => match obj.raw("payload") {
            None | Some(Value::Null) => String::new(),
            Some(payload) => payload.to_string(),
        },
    };
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(request.invalid(format!("payload larger than {MAX_PAYLOAD_BYTES} bytes")));
    }
    Ok(text)
}

fn parse_result(request: &Request<'_>) -> Result<Subscription, ServiceError> {
    let obj = request.closed(&["id", "nodeId", "ok", "payload", "payloadJSON", "error"])?;
    let invalid = |why: String| request.invalid(why);
    let id = obj.req_nonempty_str("id").map_err(invalid)?;
    let node_id = obj.req_nonempty_str("nodeId").map_err(invalid)?;
    own_node(request, node_id)?;
    let ok = obj
        .opt_bool("ok")
        .map_err(invalid)?
        .ok_or_else(|| request.invalid("must have required property 'ok'".to_owned()))?;
    let payload_json = payload_text(request, &obj)?;
    let (mut error_code, mut error_message) = (String::new(), String::new());
    if let Some(error) = obj.opt_obj("error").map_err(invalid)? {
        error.closed(&["code", "message"]).map_err(invalid)?;
        error_code = error
            .opt_str_len("code", 128)
            .map_err(invalid)?
            .unwrap_or_default()
            .to_owned();
        error_message = error
            .opt_str_len("message", 4096)
            .map_err(invalid)?
            .unwrap_or_default()
            .to_owned();
    }
    if !ok && error_code.is_empty() {
        error_code = "UNAVAILABLE".to_owned();
    }
    Ok(Subscription::NodeResult(Box::new(NodeInvokeResult {
        id: id.to_owned(),
        node_id: node_id.to_owned(),
        ok,
        payload_json,
        error_code,
        error_message,
        ..Default::default()
    })))
}

fn parse_event(request: &Request<'_>) -> Result<Subscription, ServiceError> {
    let obj = request.closed(&["event", "payload", "payloadJSON"])?;
    let invalid = |why: String| request.invalid(why);
    let event = obj.req_str_len("event", 128).map_err(invalid)?.to_owned();
    let on = match event.as_str() {
        "chat.subscribe" => true,
        "chat.unsubscribe" => false,
        _ => {
            payload_text(request, &obj)?;
            return Ok(Subscription::NodeEvent { event });
        }
    };
    let text = payload_text(request, &obj)?;
    let payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let raw = payload
        .get("sessionKey")
        .and_then(Value::as_str)
        .filter(|key| !key.trim().is_empty() && key.len() <= 512)
        .ok_or_else(|| request.invalid("at /payload/sessionKey: required".to_owned()))?;
    let config = request.config;
    let key = session_key::canonicalize(raw, &config.default_agent_id, &config.main_key)
        .map_err(|err| request.invalid(err.to_string()))?;
    Ok(Subscription::NodeChat { key, on })
}
