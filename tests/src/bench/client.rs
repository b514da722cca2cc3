//! The load clients: OpenClaw sockets with small buffers, each driven by one task.
//!
//! Every socket connects, completes the OpenClaw handshake as the local backend
//! client (`gateway-client` in `backend` mode, the device-less operator that keeps
//! its scopes over loopback) and then reads until told to stop. On the way it
//! - counts every `agent`/`chat` event frame in [`Counters`] (a cheap byte test,
//!   no JSON parsing, so that thousands of sockets cost little client CPU);
//! - when tracking latency, records which tokens each `agent` assistant frame
//!   carried and when it arrived ([`TokenReceipt`]);
//! - when it is a sender, starts one run after the other (`chat.send` with a
//!   fresh session per run) until its sending deadline, each run's message being
//!   [`run_message`], so the mock model's echo numbers its tokens.
//!
//! Client memory per socket stays small: tungstenite's read and write buffers are
//! 4 KiB instead of the library's 128 KiB default.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::stats::TokenReceipt;
use crate::ws::openclaw_connect_params;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Counters shared by every socket of a phase.
#[derive(Debug, Default)]
pub struct Counters {
    /// `agent` and `chat` event frames received.
    pub event_frames: AtomicU64,
    /// Every other frame (responses, ticks, …).
    pub other_frames: AtomicU64,
    /// Sockets that ended before they were told to stop.
    pub ended_early: AtomicU64,
    pub runs_started: AtomicU64,
    pub runs_finished: AtomicU64,
    /// `chat.send` answered with an error, or runs that did not end in time.
    pub run_errors: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Client WebSocket settings: 4 KiB buffers.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

/// Opens a socket and completes the OpenClaw handshake within `limit`.
pub async fn connect(url: &str, token: &str, limit: Duration) -> anyhow::Result<Ws> {
    tokio::time::timeout(limit, async {
        let mut ws = open(url).await?;
        let challenge = next_json(&mut ws).await?;
        if challenge["event"] != "connect.challenge" {
            bail!("expected connect.challenge, got {challenge}");
        }
        let request = json!({
            "type": "req", "id": "connect", "method": "connect",
            "params": openclaw_connect_params(token),
        });
        ws.send(Message::Text(request.to_string().into())).await?;
        loop {
            let frame = next_json(&mut ws).await?;
            if frame["type"] == "res" && frame["id"] == "connect" {
                if frame["ok"] != true {
                    bail!("connect refused: {frame}");
                }
                return Ok(ws);
            }
        }
    })
    .await
    .context("handshake timed out")?
}

/// Opens the WebSocket, retrying while the edge answers 503 (its budget of
/// sockets per address still in the handshake is spent); the caller bounds the
/// time.
pub(super) async fn open(url: &str) -> anyhow::Result<Ws> {
    let mut backoff = Duration::from_millis(5);
    loop {
        match tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await {
            Ok((ws, _)) => return Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response))
                if response.status() == 503 =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            Err(err) => return Err(err).with_context(|| format!("cannot connect to {url}")),
        }
    }
}

pub(super) async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection ended")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => bail!("connection closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The message of a run: its id, then the numbers 1..=tokens. The mock model
/// echoes it word by word, so reply token `i` is the text `i`.
pub fn run_message(run_id: &str, tokens: u32) -> String {
    let mut message = String::with_capacity(run_id.len() + tokens as usize * 5);
    message.push_str(run_id);
    for token in 1..=tokens {
        message.push(' ');
        message.push_str(&token.to_string());
    }
    message
}

/// What a socket does besides reading.
#[derive(Debug, Clone)]
pub struct SocketPlan {
    pub track_latency: bool,
    pub sender: Option<SenderPlan>,
}

/// A socket that starts runs one after the other.
#[derive(Debug, Clone)]
pub struct SenderPlan {
    /// Makes run ids unique: `r<nonce>-<slot>-<n>`.
    pub nonce: String,
    pub slot: usize,
    pub tokens_per_run: u32,
    /// No run starts after this.
    pub stop_sending_at: Instant,
    /// A run that has not ended after this long is given up.
    pub run_timeout: Duration,
}

/// What a socket task hands back.
#[derive(Debug, Default)]
pub struct SocketResult {
    pub receipts: Vec<TokenReceipt>,
    /// Why the socket ended before it was told to stop.
    pub ended: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Agent,
    Chat,
    Other,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Which event a frame is, without parsing it: the `"event":"…"` member is
/// looked for near the start first, then anywhere.
fn classify(text: &str) -> Kind {
    const AGENT: &str = "\"event\":\"agent\"";
    const CHAT: &str = "\"event\":\"chat\"";
    let bytes = text.as_bytes();
    let head = &bytes[..bytes.len().min(64)];
    if contains(head, AGENT.as_bytes()) {
        Kind::Agent
    } else if contains(head, CHAT.as_bytes()) {
        Kind::Chat
    } else if text.contains(AGENT) {
        Kind::Agent
    } else if text.contains(CHAT) {
        Kind::Chat
    } else {
        Kind::Other
    }
}

struct Sender {
    plan: SenderPlan,
    runs: u64,
    /// Run id and `chat.send` request id of the run in flight.
    current: Option<(String, String)>,
    /// When to start the next run (after an error) or give up the current one.
    next_action_at: Option<tokio::time::Instant>,
}

impl Sender {
    async fn start_run(&mut self, ws: &mut Ws, counters: &Counters) -> anyhow::Result<()> {
        self.current = None;
        self.next_action_at = None;
        if Instant::now() >= self.plan.stop_sending_at {
            return Ok(());
        }
        self.runs += 1;
        let run_id = format!("r{}-{}-{}", self.plan.nonce, self.plan.slot, self.runs);
        let request_id = format!("send-{}", self.runs);
        let request = json!({
            "type": "req", "id": request_id, "method": "chat.send",
            "params": {
                "sessionKey": format!("bench-{}-{}-{}", self.plan.nonce, self.plan.slot, self.runs),
                "message": run_message(&run_id, self.plan.tokens_per_run),
                "idempotencyKey": run_id,
            },
        });
        ws.send(Message::Text(request.to_string().into())).await?;
        bump(&counters.runs_started);
        self.current = Some((run_id, request_id));
        self.next_action_at = Some(tokio::time::Instant::now() + self.plan.run_timeout);
        Ok(())
    }

    /// Looks at a frame that may concern the run in flight; true when the next
    /// run should start now.
    fn observe(&mut self, text: &str, kind: Kind, counters: &Counters) -> bool {
        let Some((run_id, request_id)) = &self.current else {
            return false;
        };
        match kind {
            Kind::Agent => false,
            Kind::Chat if text.contains(run_id.as_str()) => {
                let Ok(frame) = serde_json::from_str::<Value>(text) else {
                    return false;
                };
                let payload = &frame["payload"];
                let terminal = payload["runId"] == run_id.as_str()
                    && matches!(
                        payload["state"].as_str(),
                        Some("final" | "aborted" | "error")
                    );
                if terminal {
                    if payload["state"] == "final" {
                        bump(&counters.runs_finished);
                    } else {
                        bump(&counters.run_errors);
                    }
                }
                terminal
            }
            Kind::Chat => false,
            Kind::Other if text.contains(request_id.as_str()) => {
                let Ok(frame) = serde_json::from_str::<Value>(text) else {
                    return false;
                };
                if frame["type"] == "res"
                    && frame["id"] == request_id.as_str()
                    && frame["ok"] != true
                {
                    tracing::warn!(%frame, "chat.send refused");
                    bump(&counters.run_errors);
                    // Try again shortly, not in a tight loop.
                    self.current = None;
                    self.next_action_at =
                        Some(tokio::time::Instant::now() + Duration::from_millis(200));
                }
                false
            }
            Kind::Other => false,
        }
    }
}

/// The token indices an `agent` assistant frame carries in its `delta`.
fn assistant_tokens(text: &str) -> Option<(String, Vec<u32>)> {
    if !text.contains("\"stream\":\"assistant\"") {
        return None;
    }
    let frame: Value = serde_json::from_str(text).ok()?;
    let payload = &frame["payload"];
    if payload["stream"] != "assistant" {
        return None;
    }
    let run_id = payload["runId"].as_str()?.to_owned();
    let delta = payload["data"]["delta"].as_str()?;
    let tokens = delta
        .split_whitespace()
        .filter_map(|word| word.parse::<u32>().ok())
        .collect();
    Some((run_id, tokens))
}

/// Reads (and, for a sender, sends) until `stop` turns true or the socket ends.
pub async fn drive(
    mut ws: Ws,
    plan: SocketPlan,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> SocketResult {
    let mut result = SocketResult::default();
    let mut sender = plan.sender.map(|plan| Sender {
        plan,
        runs: 0,
        current: None,
        next_action_at: None,
    });
    if let Some(sender) = &mut sender
        && let Err(err) = sender.start_run(&mut ws, &counters).await
    {
        result.ended = Some(format!("cannot send: {err}"));
    }
    while result.ended.is_none() && !*stop.borrow() {
        let action_at = sender.as_ref().and_then(|s| s.next_action_at);
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = sleep_until(action_at) => {
                if let Some(sender) = &mut sender {
                    if sender.current.is_some() {
                        // The run did not end in time.
                        bump(&counters.run_errors);
                    }
                    if let Err(err) = sender.start_run(&mut ws, &counters).await {
                        result.ended = Some(format!("cannot send: {err}"));
                    }
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let received_at = Instant::now();
                    let kind = classify(&text);
                    if kind == Kind::Other {
                        bump(&counters.other_frames);
                    } else {
                        bump(&counters.event_frames);
                    }
                    if plan.track_latency
                        && kind == Kind::Agent
                        && let Some((run_id, tokens)) = assistant_tokens(&text)
                        && !tokens.is_empty()
                    {
                        result.receipts.push(TokenReceipt { run_id, tokens, received_at });
                    }
                    if let Some(sender) = &mut sender
                        && sender.observe(&text, kind, &counters)
                        && let Err(err) = sender.start_run(&mut ws, &counters).await
                    {
                        result.ended = Some(format!("cannot send: {err}"));
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    result.ended = Some(format!("closed by the server: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => result.ended = Some(err.to_string()),
                None => result.ended = Some("connection ended".to_owned()),
            },
        }
    }
    if result.ended.is_some() {
        bump(&counters.ended_early);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    result
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_without_parsing() {
        assert_eq!(
            classify(r#"{"type":"event","event":"agent","payload":{}}"#),
            Kind::Agent
        );
        assert_eq!(
            classify(r#"{"type":"event","event":"chat","payload":{}}"#),
            Kind::Chat
        );
        let late = format!(
            r#"{{"payload":{{"x":"{}"}},"event":"chat"}}"#,
            "y".repeat(100)
        );
        assert_eq!(classify(&late), Kind::Chat);
        assert_eq!(
            classify(r#"{"type":"event","event":"tick","payload":{}}"#),
            Kind::Other
        );
        // Quotes inside strings are escaped, so text cannot look like a member.
        assert_eq!(
            classify(r#"{"type":"res","payload":{"t":"\"event\":\"chat\""}}"#),
            Kind::Other
        );
    }

    #[test]
    fn run_message_numbers_tokens() {
        assert_eq!(run_message("rx-0-1", 3), "rx-0-1 1 2 3");
        let frame = json!({"type":"event","event":"agent","payload":{
            "runId":"rx-0-1","stream":"assistant","data":{"text":"rx-0-1 1 2 ","delta":"1 2 "}}});
        let (run, tokens) = assistant_tokens(&frame.to_string()).expect("assistant frame");
        assert_eq!(run, "rx-0-1");
        assert_eq!(tokens, vec![1, 2]);
    }
}
