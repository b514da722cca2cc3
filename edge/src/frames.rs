//! The three frame shapes shared by both dialects (`req`, `res`, `event`): parsing
//! what a client sends and encoding what the edge sends, plus the close codes.
//!
//! Invariants: OpenClaw request frames are closed objects (extra keys, a non-string
//! or empty `id`/`method`, a `type` other than `req` make the frame invalid);
//! goclaw request frames are read leniently, as goclaw's Go decoder does. Encoding
//! never fails: payloads are `serde_json::Value`s.

use clawgate_proto::ServiceError;
use serde::Serialize;
use serde_json::{Map, Value};

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// A request frame. Its `Debug` leaves the params out: they may hold secrets
/// (`secrets.set`, credentials), and request params are never logged.
#[derive(Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub method: String,
    /// `{}` when the frame had none.
    pub params: Value,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// What a text frame turned out to be.
#[derive(Debug)]
pub enum Inbound {
    /// Not JSON at all.
    NotJson(String),
    /// JSON, but not a valid request frame. `id` is the frame's id when readable.
    Invalid {
        id: Option<String>,
        reason: String,
    },
    Request(Request),
}

const REQ_KEYS: [&str; 4] = ["type", "id", "method", "params"];

/// Parses a frame by OpenClaw's closed `RequestFrame` schema.
pub fn parse_openclaw(text: &str) -> Inbound {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return Inbound::NotJson(err.to_string()),
    };
    let Value::Object(map) = value else {
        return invalid(None, "must be object");
    };
    let id = map.get("id").and_then(Value::as_str).map(str::to_owned);
    if let Some(key) = map.keys().find(|key| !REQ_KEYS.contains(&key.as_str())) {
        return invalid(id, &format!("at root: unexpected property '{key}'"));
    }
    match map.get("type") {
        Some(Value::String(kind)) if kind == "req" => {}
        Some(_) => return invalid(id, "at /type: must be equal to constant 'req'"),
        None => return invalid(id, "at root: must have required property 'type'"),
    }
    let id = match map.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::String(_)) => {
            return invalid(None, "at /id: must NOT have fewer than 1 characters");
        }
        Some(_) => return invalid(None, "at /id: must be string"),
        None => return invalid(None, "at root: must have required property 'id'"),
    };
    let method = match map.get("method") {
        Some(Value::String(method)) if !method.is_empty() => method.clone(),
        Some(Value::String(_)) => {
            return invalid(
                Some(id),
                "at /method: must NOT have fewer than 1 characters",
            );
        }
        Some(_) => return invalid(Some(id), "at /method: must be string"),
        None => return invalid(Some(id), "at root: must have required property 'method'"),
    };
    let params = map
        .get("params")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    Inbound::Request(Request { id, method, params })
}

/// Parses a frame the way goclaw does: unknown keys are ignored, a `type` other
/// than `req` is "unexpected frame type".
pub fn parse_goclaw(text: &str) -> Inbound {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return Inbound::NotJson(err.to_string()),
    };
    let Value::Object(map) = value else {
        return invalid(None, "invalid frame: must be object");
    };
    let id = match map.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return invalid(None, "invalid frame: id must be a string"),
    };
    if map.get("type").and_then(Value::as_str) != Some("req") {
        return invalid(id, "unexpected frame type");
    }
    let method = match map.get("method") {
        Some(Value::String(method)) if !method.is_empty() => method.clone(),
        _ => return invalid(id, "invalid frame: method is required"),
    };
    let params = match map.get("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(params) => params.clone(),
    };
    Inbound::Request(Request {
        id: id.unwrap_or_default(),
        method,
        params,
    })
}

fn invalid(id: Option<String>, reason: &str) -> Inbound {
    Inbound::Invalid {
        id,
        reason: reason.to_owned(),
    }
}

/// The `error` object of a `res` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorShape {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    fn from_service(err: &ServiceError, code: &'static str) -> Self {
        Self {
            code,
            message: err.message.clone(),
            details: err.details.clone(),
            retryable: err.retryable.then_some(true),
            retry_after_ms: err.retry_after_ms,
        }
    }

    /// The error in OpenClaw's code set.
    pub fn openclaw(err: &ServiceError) -> Self {
        Self::from_service(err, err.code.openclaw_code())
    }

    /// The error in goclaw's code set. A refusal whose details name goclaw's
    /// `TENANT_ACCESS_REVOKED` (unknown or disabled tenant, no or removed
    /// membership) carries that code, as goclaw sends it.
    pub fn goclaw(err: &ServiceError) -> Self {
        let revoked = err
            .details
            .as_ref()
            .is_some_and(|d| d["code"] == TENANT_ACCESS_REVOKED);
        let code = if revoked {
            TENANT_ACCESS_REVOKED
        } else {
            err.code.goclaw_code()
        };
        Self::from_service(err, code)
    }
}

/// goclaw's error code for a tenant the client may not (or no longer) enter.
const TENANT_ACCESS_REVOKED: &str = "TENANT_ACCESS_REVOKED";

#[derive(Serialize)]
struct ResFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorShape>,
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a str,
    payload: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(rename = "stateVersion", skip_serializing_if = "Option::is_none")]
    state_version: Option<&'a Value>,
}

/// Encodes a `res` frame. `ok` is true exactly when there is no error.
pub fn encode_res(id: &str, payload: Option<&Value>, error: Option<&ErrorShape>) -> String {
    let frame = ResFrame {
        kind: "res",
        id,
        ok: error.is_none(),
        payload,
        error,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// Encodes an `event` frame.
pub fn encode_event(event: &str, payload: &Value, seq: Option<u64>) -> String {
    encode_versioned_event(event, payload, seq, None)
}

/// Encodes an `event` frame with a `stateVersion` (`presence` and `health`
/// broadcasts).
pub fn encode_versioned_event(
    event: &str,
    payload: &Value,
    seq: Option<u64>,
    state_version: Option<&Value>,
) -> String {
    let frame = EventFrame {
        kind: "event",
        event,
        payload,
        seq,
        state_version,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goclaw_names_a_revoked_tenant_access() {
        let err = ServiceError::unauthorized("unauthorized: tenant access revoked")
            .with_details(serde_json::json!({"code": "TENANT_ACCESS_REVOKED"}));
        assert_eq!(ErrorShape::goclaw(&err).code, "TENANT_ACCESS_REVOKED");
        assert_eq!(ErrorShape::openclaw(&err).code, "INVALID_REQUEST");
        let other = ServiceError::unauthorized("nope");
        assert_eq!(ErrorShape::goclaw(&other).code, "UNAUTHORIZED");
    }
    use clawgate_proto::ErrorCode;
    use serde_json::json;

    fn reason(inbound: Inbound) -> (Option<String>, String) {
        match inbound {
            Inbound::Invalid { id, reason } => (id, reason),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn openclaw_accepts_a_minimal_request() {
        match parse_openclaw(r#"{"type":"req","id":"1","method":"health"}"#) {
            Inbound::Request(req) => {
                assert_eq!(req.id, "1");
                assert_eq!(req.method, "health");
                assert_eq!(req.params, json!({}));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openclaw_frames_are_closed() {
        let (id, why) = reason(parse_openclaw(
            r#"{"type":"req","id":"1","method":"health","extra":1}"#,
        ));
        assert_eq!(id.as_deref(), Some("1"));
        assert!(why.contains("unexpected property 'extra'"));
        let (id, why) = reason(parse_openclaw(r#"{"type":"req","id":7,"method":"health"}"#));
        assert_eq!(id, None);
        assert!(why.contains("/id"));
        let (_, why) = reason(parse_openclaw(r#"{"type":"event","id":"1","event":"x"}"#));
        assert!(why.contains("unexpected property 'event'"));
        let (_, why) = reason(parse_openclaw(r#"{"type":"res","id":"1","method":"x"}"#));
        assert!(why.contains("/type"));
        let (_, why) = reason(parse_openclaw(r#"{"type":"req","id":"1","method":""}"#));
        assert!(why.contains("/method"));
        let (_, why) = reason(parse_openclaw("[1]"));
        assert_eq!(why, "must be object");
        assert!(matches!(parse_openclaw("{nope"), Inbound::NotJson(_)));
    }

    #[test]
    fn goclaw_is_lenient_but_checks_type() {
        match parse_goclaw(r#"{"type":"req","id":"a","method":"status","x":1,"params":null}"#) {
            Inbound::Request(req) => assert_eq!(req.params, json!({})),
            other => panic!("{other:?}"),
        }
        let (id, why) = reason(parse_goclaw(r#"{"type":"event","id":"a","event":"x"}"#));
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(why, "unexpected frame type");
    }

    #[test]
    fn encodes_frames() {
        let res = encode_res("1", Some(&json!({"a":1})), None);
        assert_eq!(
            res,
            r#"{"type":"res","id":"1","ok":true,"payload":{"a":1}}"#
        );
        let err = ServiceError::new(ErrorCode::Unavailable, "later").retry_after(500);
        let res = encode_res("2", None, Some(&ErrorShape::openclaw(&err)));
        assert_eq!(
            res,
            r#"{"type":"res","id":"2","ok":false,"error":{"code":"UNAVAILABLE","message":"later","retryable":true,"retryAfterMs":500}}"#
        );
        let event = encode_event("tick", &json!({"ts":1}), Some(3));
        assert_eq!(
            event,
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":3}"#
        );
        let event = encode_event("connect.challenge", &json!({}), None);
        assert!(!event.contains("seq"));
    }
}
