//! The node's connect options and one handshake attempt (§2): open the
//! WebSocket, wait for `connect.challenge`, send the signed `connect` request
//! with role `node`, and read its `res` (hello-ok, or the error and the close
//! frame that follows it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::identity::{NodeIdentity, SignedFields};
use super::types::{CODE_CLOSED, CODE_IO, CODE_TIMEOUT, CloseInfo, ConnectFailure};

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for the close frame that follows a connect error.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Deliberate faults in the device proof, for negative gateway tests.
#[derive(Debug, Clone, Default)]
pub struct ProofOverrides {
    /// Send no `device` object at all (a device-less node).
    pub omit_device: bool,
    /// `device.signedAt` to sign and send instead of the challenge `ts`.
    pub signed_at_ms: Option<u64>,
    /// `device.nonce` to sign and send instead of the challenge nonce.
    pub nonce: Option<String>,
    /// Sign with this key while presenting the node's own id and public key.
    pub sign_with: Option<NodeIdentity>,
}

/// Everything a node declares on connect.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub identity: NodeIdentity,
    /// Shared gateway token: sent as `auth.token` and signed. Empty ⇒ no
    /// `auth.token` (the signed token is then `device_token` or `""`).
    pub token: String,
    /// Sent as `auth.deviceToken` when set (e.g. `hello-ok.auth.deviceToken`).
    pub device_token: Option<String>,
    /// 3 (sends `minProtocol = maxProtocol = 3`) or 4 (`4..4`).
    pub protocol: u32,
    /// Overrides `protocol` with an explicit `[minProtocol, maxProtocol]`.
    pub protocol_range: Option<(u32, u32)>,
    /// Like the real node host (v4 §1.3): on a 4..4 protocol mismatch whose
    /// `details.expectedProtocol` is 3, retry on 3..3; if that legacy connect
    /// is answered with `protocol > 3`, close 1012 and reconnect on 4..4.
    pub node_host_fallback: bool,
    /// `client.id`, default `"node-host"`.
    pub client_id: String,
    /// `client.mode`, default `"node"`.
    pub client_mode: String,
    /// `client.platform`, default `"linux"`.
    pub platform: String,
    pub device_family: Option<String>,
    pub display_name: Option<String>,
    pub instance_id: Option<String>,
    /// `client.version`, default `"1.0.0-refnode"`.
    pub version: String,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
    /// `permissions`, name → bool.
    pub permissions: Map<String, Value>,
    pub path_env: Option<String>,
    pub proof: ProofOverrides,
    /// Wait for `connect.challenge`, default 15 s.
    pub challenge_timeout: Duration,
    /// Wait for the connect `res`, default 15 s.
    pub hello_timeout: Duration,
    /// Default timeout of [`Connected::call`](super::Connected::call), 10 s.
    pub call_timeout: Duration,
    /// Capacity of the event channel (events beyond it are counted and dropped).
    pub event_buffer: usize,
}

impl NodeOptions {
    /// Defaults: protocol 3, `node-host`/`node`, platform `linux`, no caps,
    /// commands or permissions.
    pub fn new(identity: NodeIdentity, token: impl Into<String>) -> Self {
        Self {
            identity,
            token: token.into(),
            device_token: None,
            protocol: 3,
            protocol_range: None,
            node_host_fallback: false,
            client_id: "node-host".into(),
            client_mode: "node".into(),
            platform: "linux".into(),
            device_family: None,
            display_name: None,
            instance_id: None,
            version: "1.0.0-refnode".into(),
            caps: Vec::new(),
            commands: Vec::new(),
            permissions: Map::new(),
            path_env: None,
            proof: ProofOverrides::default(),
            challenge_timeout: Duration::from_secs(15),
            hello_timeout: Duration::from_secs(15),
            call_timeout: Duration::from_secs(10),
            event_buffer: 1024,
        }
    }

    /// Sets `protocol`.
    pub fn with_protocol(mut self, protocol: u32) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets `commands`.
    pub fn with_commands<S: Into<String>>(mut self, commands: impl IntoIterator<Item = S>) -> Self {
        self.commands = commands.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `caps`.
    pub fn with_caps<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.caps = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `display_name`.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The `[minProtocol, maxProtocol]` sent by default.
    pub fn range(&self) -> (u32, u32) {
        self.protocol_range
            .unwrap_or((self.protocol, self.protocol))
    }

    /// The signed token: `auth.token ?? auth.deviceToken ?? ""`.
    fn signed_token(&self) -> &str {
        if !self.token.is_empty() {
            &self.token
        } else {
            self.device_token.as_deref().unwrap_or_default()
        }
    }

    /// The `connect` params for the challenge `nonce`/`ts`, offering `range`.
    pub fn connect_params(
        &self,
        nonce: &str,
        challenge_ts: Option<u64>,
        range: (u32, u32),
    ) -> Value {
        let mut client = Map::new();
        client.insert("id".into(), json!(self.client_id));
        if let Some(name) = &self.display_name {
            client.insert("displayName".into(), json!(name));
        }
        client.insert("version".into(), json!(self.version));
        client.insert("platform".into(), json!(self.platform));
        if let Some(family) = &self.device_family {
            client.insert("deviceFamily".into(), json!(family));
        }
        client.insert("mode".into(), json!(self.client_mode));
        if let Some(instance) = &self.instance_id {
            client.insert("instanceId".into(), json!(instance));
        }

        let mut params = Map::new();
        params.insert("minProtocol".into(), json!(range.0));
        params.insert("maxProtocol".into(), json!(range.1));
        params.insert("client".into(), Value::Object(client));
        params.insert("caps".into(), json!(self.caps));
        params.insert("commands".into(), json!(self.commands));
        params.insert(
            "permissions".into(),
            Value::Object(self.permissions.clone()),
        );
        if let Some(path) = &self.path_env {
            params.insert("pathEnv".into(), json!(path));
        }
        params.insert("role".into(), json!("node"));
        params.insert("scopes".into(), json!([]));
        let mut auth = Map::new();
        if !self.token.is_empty() {
            auth.insert("token".into(), json!(self.token));
        }
        if let Some(device_token) = &self.device_token {
            auth.insert("deviceToken".into(), json!(device_token));
        }
        if !auth.is_empty() {
            params.insert("auth".into(), Value::Object(auth));
        }
        if !self.proof.omit_device {
            params.insert("device".into(), self.device_proof(nonce, challenge_ts));
        }
        Value::Object(params)
    }

    /// `device {id, publicKey, signature, signedAt, nonce}` over the v3 payload.
    fn device_proof(&self, nonce: &str, challenge_ts: Option<u64>) -> Value {
        let signed_at = self
            .proof
            .signed_at_ms
            .or(challenge_ts)
            .unwrap_or_else(now_ms);
        let nonce = self.proof.nonce.as_deref().unwrap_or(nonce);
        let device_id = self.identity.device_id();
        let fields = SignedFields {
            client_id: &self.client_id,
            client_mode: &self.client_mode,
            role: "node",
            scopes: &[],
            signed_at_ms: signed_at,
            token: self.signed_token(),
            nonce,
        };
        let payload = fields.v3_payload(
            &device_id,
            &self.platform,
            self.device_family.as_deref().unwrap_or_default(),
        );
        let signer = self.proof.sign_with.as_ref().unwrap_or(&self.identity);
        json!({
            "id": device_id,
            "publicKey": self.identity.public_key_b64url(),
            "signature": signer.sign(&payload),
            "signedAt": signed_at,
            "nonce": nonce,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A successful handshake: the open stream, the hello-ok payload and the
/// challenge payload.
pub(crate) struct Handshake {
    pub stream: WsStream,
    pub hello: Value,
    pub challenge: Value,
}

/// A random UUIDv4 string, the request id format of the reference client.
pub(crate) fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The JSON object of a text (or binary) frame; `None` for other frames.
pub(crate) fn frame_json(message: &Message) -> Option<Value> {
    let text = match message {
        Message::Text(text) => text.as_str().to_owned(),
        Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => return None,
    };
    serde_json::from_str(&text).ok()
}

/// How the stream ended, from a close message (or its absence).
pub(crate) fn close_info(message: Option<&Message>, fallback: &str) -> CloseInfo {
    match message {
        Some(Message::Close(Some(frame))) => CloseInfo {
            code: Some(u16::from(frame.code)),
            reason: frame.reason.as_str().to_owned(),
        },
        Some(Message::Close(None)) => CloseInfo {
            code: None,
            reason: "close frame without code".into(),
        },
        _ => CloseInfo {
            code: None,
            reason: fallback.to_owned(),
        },
    }
}

/// One connect attempt offering `range`.
pub(crate) async fn handshake(
    url: &str,
    opts: &NodeOptions,
    range: (u32, u32),
) -> Result<Handshake, ConnectFailure> {
    let fail = |code: &str, message: String| ConnectFailure::client(code, message, range);
    let (mut stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|error| fail(CODE_IO, format!("cannot connect to {url}: {error}")))?;

    // 1. the challenge
    let deadline = Instant::now() + opts.challenge_timeout;
    let challenge = loop {
        let message = match timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(fail(CODE_TIMEOUT, "no connect.challenge".into())),
            Ok(None) => return Err(closed(range, None, "ended before the challenge")),
            Ok(Some(Err(error))) => {
                return Err(closed(range, None, &format!("read failed: {error}")));
            }
            Ok(Some(Ok(message))) => message,
        };
        if let Message::Close(_) = message {
            return Err(closed(range, Some(&message), ""));
        }
        if let Some(frame) = frame_json(&message)
            && frame["type"] == "event"
            && frame["event"] == "connect.challenge"
        {
            break frame.get("payload").cloned().unwrap_or(Value::Null);
        }
    };
    let nonce = challenge["nonce"].as_str().unwrap_or_default().to_owned();
    let ts = challenge["ts"].as_u64();

    // 2. the connect request
    let id = uuid_v4();
    let request = json!({
        "type": "req",
        "id": id,
        "method": "connect",
        "params": opts.connect_params(&nonce, ts, range),
    });
    stream
        .send(Message::text(request.to_string()))
        .await
        .map_err(|error| fail(CODE_IO, format!("cannot send connect: {error}")))?;

    // 3. its response
    let deadline = Instant::now() + opts.hello_timeout;
    let res = loop {
        let message = match timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(fail(CODE_TIMEOUT, "no connect response".into())),
            Ok(None) => return Err(closed(range, None, "ended before the connect response")),
            Ok(Some(Err(error))) => {
                return Err(closed(range, None, &format!("read failed: {error}")));
            }
            Ok(Some(Ok(message))) => message,
        };
        if let Message::Close(_) = message {
            return Err(closed(range, Some(&message), ""));
        }
        if let Some(frame) = frame_json(&message)
            && frame["type"] == "res"
            && frame["id"] == id.as_str()
        {
            break frame;
        }
    };
    if res["ok"] == true {
        return Ok(Handshake {
            stream,
            hello: res.get("payload").cloned().unwrap_or(Value::Null),
            challenge,
        });
    }

    let error = &res["error"];
    let mut failure = ConnectFailure {
        code: error["code"].as_str().unwrap_or_default().to_owned(),
        message: error["message"].as_str().unwrap_or_default().to_owned(),
        details: error.get("details").cloned().unwrap_or(Value::Null),
        close: None,
        offered: range,
    };
    failure.close = wait_close(&mut stream).await;
    Err(failure)
}

/// A [`CODE_CLOSED`] failure, with the close frame if there was one.
fn closed(range: (u32, u32), message: Option<&Message>, fallback: &str) -> ConnectFailure {
    let close = close_info(message, fallback);
    let mut failure = ConnectFailure::client(
        CODE_CLOSED,
        format!("connection closed during the handshake: {close:?}"),
        range,
    );
    failure.close = Some(close);
    failure
}

/// The close frame (or end of stream) that follows a connect error.
async fn wait_close(stream: &mut WsStream) -> Option<CloseInfo> {
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(close_info(None, "ended without a close frame")),
            Ok(Some(Err(error))) => {
                return Some(close_info(None, &format!("read failed: {error}")));
            }
            Ok(Some(Ok(message @ Message::Close(_)))) => {
                return Some(close_info(Some(&message), ""));
            }
            Ok(Some(_)) => {}
        }
    }
}
