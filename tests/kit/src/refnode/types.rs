//! The values the reference node hands to a test: RPC errors, connect failures,
//! pushed events, how a connection ended, and the node-invoke request and reply
//! types (`node.invoke.request` event, `node.invoke.result` answer, §5.7).

use std::time::Duration;

use serde_json::{Map, Value, json};

/// Client-side error code: no response (or no frame) within the time allowed.
pub const CODE_TIMEOUT: &str = "TIMEOUT";
/// Client-side error code: the connection ended before the answer.
pub const CODE_CLOSED: &str = "CLOSED";
/// Client-side error code: the WebSocket could not be opened or written.
pub const CODE_IO: &str = "IO";

/// A `res{ok:false}` (§1.3 error shape), or a client-side failure with one of
/// [`CODE_TIMEOUT`], [`CODE_CLOSED`], [`CODE_IO`].
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: String,
    pub message: String,
    /// `error.details`, `Value::Null` when absent.
    pub details: Value,
    /// `res.payload`, which an error response may carry too.
    pub payload: Option<Value>,
}

impl RpcError {
    pub(crate) fn client(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            details: Value::Null,
            payload: None,
        }
    }

    /// From a `res` frame with `ok:false`.
    pub(crate) fn from_res(frame: &Value) -> Self {
        let error = &frame["error"];
        Self {
            code: error["code"].as_str().unwrap_or_default().to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            details: error.get("details").cloned().unwrap_or(Value::Null),
            payload: frame.get("payload").cloned(),
        }
    }

    /// `details.code`, if any.
    pub fn details_code(&self) -> Option<&str> {
        self.details["code"].as_str()
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.details.is_null() {
            write!(f, " (details {})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

/// How a connection ended. `code: None` means no close frame arrived (the TCP
/// connection dropped, or a read failed); `reason` then says what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseInfo {
    pub code: Option<u16>,
    pub reason: String,
}

/// Why [`RefNode::connect`](super::RefNode::connect) did not end in hello-ok.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectFailure {
    /// `error.code` of the connect `res` (`NOT_PAIRED`, `INVALID_REQUEST`, …),
    /// or a client-side [`CODE_TIMEOUT`] / [`CODE_CLOSED`] / [`CODE_IO`].
    pub code: String,
    pub message: String,
    /// `error.details` (`Value::Null` when absent), e.g.
    /// `{code:"PAIRING_REQUIRED", requestId, …}`.
    pub details: Value,
    /// The close frame the gateway sent after the error, if one came within
    /// the wait (`code: None` if the socket ended without one).
    pub close: Option<CloseInfo>,
    /// The `[minProtocol, maxProtocol]` of the last connect attempt.
    pub offered: (u32, u32),
}

impl ConnectFailure {
    pub(crate) fn client(code: &str, message: impl Into<String>, offered: (u32, u32)) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            details: Value::Null,
            close: None,
            offered,
        }
    }

    /// `details.code` (`PAIRING_REQUIRED`, `DEVICE_AUTH_SIGNATURE_INVALID`, …).
    pub fn details_code(&self) -> Option<&str> {
        self.details["code"].as_str()
    }

    /// `details.requestId` of a pairing failure.
    pub fn request_id(&self) -> Option<&str> {
        self.details["requestId"].as_str()
    }

    /// Whether this is a protocol-mismatch refusal (v3 or v4 shape).
    pub fn is_protocol_mismatch(&self) -> bool {
        self.details_code() == Some("PROTOCOL_MISMATCH")
            || self.message.contains("protocol mismatch")
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connect failed: {}: {}", self.code, self.message)?;
        if !self.details.is_null() {
            write!(f, " (details {})", self.details)?;
        }
        if let Some(close) = &self.close {
            write!(f, " (closed {:?} {:?})", close.code, close.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectFailure {}

/// One pushed `event` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event`.
    pub name: String,
    /// `payload`, `Value::Null` when absent.
    pub payload: Value,
    /// Frame `seq`, absent on targeted events such as `node.invoke.request`.
    pub seq: Option<u64>,
    /// The whole frame.
    pub frame: Value,
}

impl Event {
    pub(crate) fn from_frame(frame: Value) -> Self {
        Self {
            name: frame["event"].as_str().unwrap_or_default().to_owned(),
            payload: frame.get("payload").cloned().unwrap_or(Value::Null),
            seq: frame["seq"].as_u64(),
            frame,
        }
    }
}

/// A `node.invoke.request` the node received.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeRequest {
    /// The invoke id the result must echo.
    pub id: String,
    pub node_id: String,
    pub command: String,
    /// `paramsJSON` parsed; `Value::Null` when null or absent, the raw string
    /// as `Value::String` if it is not JSON.
    pub params: Value,
    /// `paramsJSON` as received.
    pub params_json: Option<String>,
    pub timeout_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    /// The whole event payload.
    pub raw: Value,
}

impl InvokeRequest {
    pub(crate) fn from_payload(payload: &Value) -> Self {
        let params_json = payload["paramsJSON"].as_str().map(str::to_owned);
        let params = match &params_json {
            Some(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            None => Value::Null,
        };
        Self {
            id: payload["id"].as_str().unwrap_or_default().to_owned(),
            node_id: payload["nodeId"].as_str().unwrap_or_default().to_owned(),
            command: payload["command"].as_str().unwrap_or_default().to_owned(),
            params,
            params_json,
            timeout_ms: payload["timeoutMs"].as_u64(),
            idempotency_key: payload["idempotencyKey"].as_str().map(str::to_owned),
            raw: payload.clone(),
        }
    }
}

/// What the node does with an invoke request.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeReply {
    /// `ok:true` with `payloadJSON` = the value serialized (what node hosts send).
    Ok(Value),
    /// `ok:true` with the value inline as `payload`.
    OkInline(Value),
    /// `ok:false` with `error:{code, message}`.
    Error { code: String, message: String },
    /// Never answer (to test the gateway's invoke timeout).
    NoAnswer,
    /// Answer `reply` after `delay`.
    Delayed(Duration, Box<InvokeReply>),
    /// Send these exact `node.invoke.result` params (e.g. a wrong `nodeId`).
    Raw(Value),
}

impl InvokeReply {
    /// `ok:true`, payload sent as `payloadJSON`.
    pub fn ok(payload: Value) -> Self {
        Self::Ok(payload)
    }

    /// `ok:false` with `error:{code, message}`.
    pub fn error(code: &str, message: &str) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// This reply, sent after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Self::Delayed(delay, Box::new(self))
    }

    /// The `node.invoke.result` params for `request` (after any delay), or
    /// `None` for [`InvokeReply::NoAnswer`].
    pub(crate) fn result_params(self, request: &InvokeRequest) -> Option<Value> {
        let mut params = Map::new();
        params.insert("id".into(), json!(request.id));
        params.insert("nodeId".into(), json!(request.node_id));
        match self {
            Self::Ok(payload) => {
                params.insert("ok".into(), json!(true));
                params.insert("payloadJSON".into(), json!(payload.to_string()));
            }
            Self::OkInline(payload) => {
                params.insert("ok".into(), json!(true));
                params.insert("payload".into(), payload);
            }
            Self::Error { code, message } => {
                params.insert("ok".into(), json!(false));
                params.insert("error".into(), json!({"code": code, "message": message}));
            }
            Self::Raw(raw) => return Some(raw),
            Self::NoAnswer | Self::Delayed(..) => return None,
        }
        Some(Value::Object(params))
    }
}

/// The node's answer to one invoke, and the gateway's response to it
/// (`{ok:true}`, or `{ok:true, ignored:true}` for late or unknown ids).
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeAnswer {
    /// The invoke id answered.
    pub invoke_id: String,
    pub command: String,
    /// The `node.invoke.result` params sent.
    pub sent: Value,
    pub response: Result<Value, RpcError>,
}
