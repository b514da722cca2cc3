//! Agent turns over OpenClaw sockets, for the tool-turn scenario
//! ([`super::tool_turn`]): each turn a `chat.send`, timed from its frame
//! written to its terminal `chat` event read, many in flight per socket if
//! asked. Also the operator sockets themselves (the shared token, or an API
//! key per user so a socket receives only its own runs' events).
//!
//! Only `chat` events and responses are parsed; `agent` frames are skipped by
//! a byte test, so the client costs little next to the gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

use super::client::{Ws, next_json, open};
use super::phases::HANDSHAKE_LIMIT;
use crate::ws::openclaw_connect_params;

/// One turn to run.
#[derive(Debug, Clone)]
pub struct TurnSpec {
    /// Also the message, the idempotency key and so the OpenClaw run id.
    pub run_id: String,
    pub session_key: String,
    /// Whether the model is to call a tool in it (for the analysis).
    pub tool: bool,
}

/// How a turn ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Final,
    /// A terminal event other than `final` (`error`, `aborted`).
    Failed,
    Refused,
    TimedOut,
    /// Its socket ended first.
    Lost,
}

#[derive(Debug, Clone)]
pub struct TurnRecord {
    pub spec: TurnSpec,
    /// Just before its `chat.send` frame was written.
    pub sent_at: Instant,
    /// When the `chat.send` response (the run accepted) was read.
    pub accepted_at: Option<Instant>,
    /// When its terminal event (or refusal) was read, or it was given up.
    pub ended_at: Instant,
    pub outcome: Outcome,
    /// The text of the final message, or the error of a refusal or failure.
    pub text: Option<String>,
}

/// Connects to `url` as an OpenClaw operator with `token` and `scopes`.
pub async fn connect_as(url: &str, token: &str, scopes: &[&str]) -> anyhow::Result<Ws> {
    tokio::time::timeout(HANDSHAKE_LIMIT, async {
        let mut ws = open(url).await?;
        let challenge = next_json(&mut ws).await?;
        ensure!(
            challenge["event"] == "connect.challenge",
            "expected connect.challenge, got {challenge}"
        );
        let mut params = openclaw_connect_params(token);
        params["scopes"] = json!(scopes);
        request(&mut ws, "connect", params).await?;
        Ok(ws)
    })
    .await
    .context("handshake timed out")?
}

/// Sends a request and waits for its successful response's payload.
async fn request(ws: &mut Ws, method: &str, params: Value) -> anyhow::Result<Value> {
    let id = format!("req-{method}");
    let frame = json!({"type": "req", "id": id, "method": method, "params": params});
    ws.send(Message::Text(frame.to_string().into())).await?;
    loop {
        let frame = next_json(ws).await?;
        if frame["type"] == "res" && frame["id"] == id.as_str() {
            if frame["ok"] != true {
                bail!("{method} refused: {frame}");
            }
            return Ok(frame["payload"].clone());
        }
    }
}

/// One API key per user, made by an admin socket of the shared token.
pub async fn user_keys(url: &str, token: &str, users: &[String]) -> anyhow::Result<Vec<String>> {
    let mut admin = connect_as(url, token, &["operator.admin"]).await?;
    let mut keys = Vec::with_capacity(users.len());
    for user in users {
        let params = json!({
            "name": user,
            "scopes": ["operator.read", "operator.write"],
            "userId": user,
        });
        let created = request(&mut admin, "api_keys.create", params).await?;
        let key = created["key"].as_str().context("api_keys.create: no key")?;
        keys.push(key.to_owned());
    }
    let _ = admin.close(None).await;
    Ok(keys)
}

fn send_frame(spec: &TurnSpec) -> Message {
    let frame = json!({
        "type": "req", "id": format!("send-{}", spec.run_id), "method": "chat.send",
        "params": {
            "sessionKey": spec.session_key,
            "message": spec.run_id,
            "idempotencyKey": spec.run_id,
        },
    });
    Message::Text(frame.to_string().into())
}

/// What one frame tells of a turn.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Its `chat.send` was answered `ok`.
    Accepted,
    /// It ended so, with the final text or the error.
    Ended(Outcome, Option<String>),
}

/// What one frame says about a turn in flight, by run id. Only `chat` events
/// and responses are parsed.
fn step(text: &str) -> Option<(String, Step)> {
    let chat = text.contains("\"event\":\"chat\"");
    if !chat && !text.contains("\"type\":\"res\"") {
        return None;
    }
    let frame: Value = serde_json::from_str(text).ok()?;
    if chat {
        let payload = &frame["payload"];
        let (outcome, text) = match payload["state"].as_str()? {
            "final" => (Outcome::Final, &payload["message"]["content"][0]["text"]),
            "error" => (Outcome::Failed, &payload["errorMessage"]),
            "aborted" => (Outcome::Failed, &payload["state"]),
            _ => return None,
        };
        let run_id = payload["runId"].as_str()?.to_owned();
        return Some((
            run_id,
            Step::Ended(outcome, text.as_str().map(str::to_owned)),
        ));
    }
    let run_id = frame["id"].as_str()?.strip_prefix("send-")?.to_owned();
    if frame["ok"] == true {
        return Some((run_id, Step::Accepted));
    }
    let error = Some(frame["error"].to_string());
    Some((run_id, Step::Ended(Outcome::Refused, error)))
}

/// Runs `turns` on `ws`, at most `in_flight` at a time, in order, once `start`
/// (if any) lets every socket go. Returns a record per turn and why the socket
/// ended early, if it did.
pub async fn drive_turns(
    mut ws: Ws,
    turns: Vec<TurnSpec>,
    in_flight: usize,
    run_timeout: Duration,
    start: Option<Arc<Barrier>>,
) -> (Vec<TurnRecord>, Option<String>) {
    let mut pending: VecDeque<TurnSpec> = turns.into();
    // Run id → the turn, when it was sent and accepted.
    let mut active: HashMap<String, (TurnSpec, Instant, Option<Instant>)> = HashMap::new();
    let mut records = Vec::with_capacity(pending.len());
    let mut ended: Option<String> = None;
    if let Some(start) = start {
        start.wait().await;
    }
    while ended.is_none() && (!pending.is_empty() || !active.is_empty()) {
        while active.len() < in_flight
            && let Some(spec) = pending.pop_front()
        {
            let sent_at = Instant::now();
            if let Err(err) = ws.send(send_frame(&spec)).await {
                ended = Some(format!("cannot send: {err}"));
                pending.push_front(spec);
                break;
            }
            active.insert(spec.run_id.clone(), (spec, sent_at, None));
        }
        if ended.is_some() {
            break;
        }
        let oldest = active.values().map(|(_, sent, _)| *sent).min();
        let deadline = oldest.map_or_else(Instant::now, |sent| sent + run_timeout);
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                let late: Vec<String> = active
                    .iter()
                    .filter(|(_, (_, sent, _))| now >= *sent + run_timeout)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in late {
                    if let Some((spec, sent_at, accepted_at)) = active.remove(&id) {
                        let outcome = Outcome::TimedOut;
                        records.push(TurnRecord { spec, sent_at, accepted_at, ended_at: now, outcome, text: None });
                    }
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    match step(&text) {
                        Some((run_id, Step::Accepted)) => {
                            if let Some((_, _, accepted_at)) = active.get_mut(&run_id) {
                                *accepted_at = Some(at);
                            }
                        }
                        Some((run_id, Step::Ended(outcome, text))) => {
                            if let Some((spec, sent_at, accepted_at)) = active.remove(&run_id) {
                                records.push(TurnRecord { spec, sent_at, accepted_at, ended_at: at, outcome, text });
                            }
                        }
                        None => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => ended = Some(format!("closed by the server: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(err)) => ended = Some(err.to_string()),
                None => ended = Some("connection ended".to_owned()),
            },
        }
    }
    let now = Instant::now();
    let lost = active
        .into_values()
        .chain(pending.into_iter().map(|spec| (spec, now, None)));
    for (spec, sent_at, accepted_at) in lost {
        records.push(TurnRecord {
            spec,
            sent_at,
            accepted_at,
            ended_at: now,
            outcome: Outcome::Lost,
            text: None,
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    (records, ended)
}

/// The most intervals `[sent, ended]` open at once.
pub fn peak_in_flight(records: &[TurnRecord]) -> usize {
    let mut edges: Vec<(Instant, i64)> = Vec::with_capacity(records.len() * 2);
    for record in records.iter().filter(|r| r.outcome != Outcome::Lost) {
        edges.push((record.sent_at, 1));
        edges.push((record.ended_at, -1));
    }
    // Ends before starts at the same instant.
    edges.sort();
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, step) in edges {
        open += step;
        peak = peak.max(open);
    }
    usize::try_from(peak).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(run_id: &str, outcome: Outcome, text: Option<&str>) -> Option<(String, Step)> {
        let step = Step::Ended(outcome, text.map(str::to_owned));
        Some((run_id.to_owned(), step))
    }

    #[test]
    fn steps_are_read_from_chat_events_and_responses() {
        let final_frame = json!({"type": "event", "event": "chat", "payload": {
            "runId": "tt-x-seq-tool-1", "state": "final",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}}});
        assert_eq!(
            step(&final_frame.to_string()),
            ended("tt-x-seq-tool-1", Outcome::Final, Some("hi"))
        );
        let error = json!({"type": "event", "event": "chat", "payload": {
            "runId": "r", "state": "error", "errorMessage": "boom"}});
        assert_eq!(
            step(&error.to_string()),
            ended("r", Outcome::Failed, Some("boom"))
        );
        let delta = json!({"type": "event", "event": "chat", "payload": {
            "runId": "r", "state": "delta"}});
        assert_eq!(step(&delta.to_string()), None);
        let refused = json!({"type": "res", "id": "send-r", "ok": false, "error": {"code": "X"}});
        assert_eq!(
            step(&refused.to_string()),
            ended("r", Outcome::Refused, Some(r#"{"code":"X"}"#))
        );
        let accepted = json!({"type": "res", "id": "send-r", "ok": true, "payload": {}});
        assert_eq!(
            step(&accepted.to_string()),
            Some(("r".to_owned(), Step::Accepted))
        );
        let agent = json!({"type": "event", "event": "agent", "payload": {"runId": "r"}});
        assert_eq!(step(&agent.to_string()), None);
    }

    #[test]
    fn peak_counts_overlapping_turns() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let record = |sent: u64, ended: u64| TurnRecord {
            spec: TurnSpec {
                run_id: "r".to_owned(),
                session_key: "s".to_owned(),
                tool: true,
            },
            sent_at: at(sent),
            accepted_at: None,
            ended_at: at(ended),
            outcome: Outcome::Final,
            text: None,
        };
        let records = [record(0, 10), record(1, 5), record(6, 12), record(11, 20)];
        assert_eq!(peak_in_flight(&records), 2);
        assert_eq!(peak_in_flight(&[]), 0);
    }
}
