//! A WebSocket test client that speaks the v3 framing of both dialects.
//!
//! It is written from the protocol description, not from the server's code, so a
//! server bug cannot be mirrored by the client.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames read while looking for something else, in arrival order.
    backlog: std::collections::VecDeque<Value>,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

impl WsClient {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_headers(url, &[]).await
    }

    /// Connects with extra HTTP headers on the upgrade request (e.g. proxy headers).
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
                tokio_tungstenite::tungstenite::http::HeaderValue::from_str(value)?,
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        Ok(Self {
            stream,
            next_id: 0,
            backlog: Default::default(),
        })
    }

    /// Every frame that arrives within `window` (after the backlog), without
    /// failing when none does or when the connection ends.
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut frames: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            match message {
                Message::Text(text) => {
                    frames.extend(serde_json::from_str::<Value>(&text).ok());
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        frames
    }

    pub async fn send_json(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.send_text(frame.to_string()).await
    }

    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.stream.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next JSON frame (from the backlog first).
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(frame);
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> anyhow::Result<Value> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next())
                .await
                .context("timed out waiting for a frame")?
                .context("connection ended")??;
            match message {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Binary(bytes) => return Ok(serde_json::from_slice(&bytes)?),
                Message::Close(frame) => bail!("connection closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for the server to close the connection; frames before the close are dropped.
    pub async fn expect_close(&mut self) -> anyhow::Result<Closed> {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next())
                .await
                .context("timed out waiting for close")?;
            match next {
                Some(Ok(Message::Close(frame))) => return Ok(closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    return Ok(Closed {
                        code: None,
                        reason: err.to_string(),
                    });
                }
                None => {
                    return Ok(Closed {
                        code: None,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// Sends a request and returns its response, keeping events that arrive first.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        self.send_json(&json!({"type": "req", "id": id, "method": method, "params": params}))
            .await?;
        self.response(&id).await
    }

    /// The response with request id `id`; other frames are kept for later.
    pub async fn response(&mut self, id: &str) -> anyhow::Result<Value> {
        if let Some(pos) = self
            .backlog
            .iter()
            .position(|f| f["type"] == "res" && f["id"] == id)
        {
            return Ok(self.backlog.remove(pos).unwrap_or_default());
        }
        loop {
            let frame = self.recv_wire().await?;
            if frame["type"] == "res" && frame["id"] == id {
                return Ok(frame);
            }
            self.backlog.push_back(frame);
        }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> anyhow::Result<String> {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        self.send_json(&json!({"type": "req", "id": id, "method": method, "params": params}))
            .await?;
        Ok(id)
    }

    /// The next event frame for which `pick` is true; other frames are kept.
    pub async fn event_where(&mut self, pick: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        if let Some(pos) = self
            .backlog
            .iter()
            .position(|f| f["type"] == "event" && pick(f))
        {
            return Ok(self.backlog.remove(pos).unwrap_or_default());
        }
        loop {
            let frame = self.recv_wire().await?;
            if frame["type"] == "event" && pick(&frame) {
                return Ok(frame);
            }
            self.backlog.push_back(frame);
        }
    }

    /// The next event named `name`.
    pub async fn event(&mut self, name: &str) -> anyhow::Result<Value> {
        self.event_where(|f| f["event"] == name).await
    }

    /// OpenClaw handshake: reads the challenge, connects with the shared token.
    /// Returns the `hello-ok` payload.
    pub async fn openclaw_handshake(&mut self, token: &str) -> anyhow::Result<Value> {
        let challenge = self.event("connect.challenge").await?;
        anyhow::ensure!(
            challenge["payload"]["nonce"].is_string(),
            "challenge without nonce: {challenge}"
        );
        let res = self
            .request("connect", openclaw_connect_params(token))
            .await?;
        anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
        Ok(res["payload"].clone())
    }

    /// goclaw handshake with the shared token. Returns the connect payload.
    pub async fn goclaw_handshake(&mut self, token: &str, user_id: &str) -> anyhow::Result<Value> {
        let res = self
            .request("connect", json!({"token": token, "user_id": user_id}))
            .await?;
        anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
        Ok(res["payload"].clone())
    }

    /// Creates an API key from this (admin) socket with `params` (goclaw or
    /// OpenClaw `api_keys.create` params); returns `(id, key)`.
    pub async fn create_api_key(&mut self, params: Value) -> anyhow::Result<(String, String)> {
        let res = self.request("api_keys.create", params).await?;
        anyhow::ensure!(res["ok"] == true, "api_keys.create failed: {res}");
        let field = |name: &str| res["payload"][name].as_str().unwrap_or_default().to_owned();
        let (id, key) = (field("id"), field("key"));
        anyhow::ensure!(key.starts_with("clawgate_") && !id.is_empty(), "{res}");
        Ok((id, key))
    }

    /// A goclaw operator socket of `user` at `url`, through an operator-scoped
    /// API key bound to `user` that this (admin) socket creates.
    pub async fn operator_socket(&mut self, url: &str, user: &str) -> anyhow::Result<WsClient> {
        let (_, key) = self
            .create_api_key(json!({
                "name": user,
                "scopes": ["operator.read", "operator.write"],
                "owner_id": user,
            }))
            .await?;
        let mut ws = WsClient::connect(url).await?;
        let res = ws.request("connect", json!({"token": key})).await?;
        anyhow::ensure!(res["ok"] == true, "connect with the key failed: {res}");
        anyhow::ensure!(res["payload"]["role"] == "operator", "{res}");
        anyhow::ensure!(res["payload"]["user_id"] == user, "{res}");
        Ok(ws)
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Connect params of the local backend client (`gateway-client` in `backend`
/// mode over loopback) using the shared token. It is the one device-less
/// operator that keeps its requested scopes in late v3; every other device-less
/// shared-token operator gets none.
pub fn openclaw_connect_params(token: &str) -> Value {
    json!({
        "minProtocol": 3,
        "maxProtocol": 3,
        "client": {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"},
        "role": "operator",
        "scopes": ["operator.read", "operator.write"],
        "auth": {"token": token},
    })
}

fn closed(frame: Option<CloseFrame>) -> Closed {
    match frame {
        Some(frame) => Closed {
            code: Some(u16::from(frame.code)),
            reason: frame.reason.to_string(),
        },
        None => Closed {
            code: None,
            reason: String::new(),
        },
    }
}
