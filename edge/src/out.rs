//! A socket's outbound queue: encodes frames, numbers broadcast events, and
//! applies the slow-consumer policy. It is owned by the socket's task; the
//! [`crate::writer::Wire`] of the same task takes frames from it.
//!
//! Invariants:
//! - frame `seq` counts broadcast events of this connection from 1; a droppable
//!   event skipped for backpressure still takes its number, so the client sees
//!   the gap (OpenClaw §8.2);
//! - the backlog is the bytes of frames queued and not yet taken by the writer;
//!   an event is admitted while the backlog is within the bound
//!   (`socket_queue_bytes`), so the backlog never exceeds the bound by more than
//!   one frame; a non-droppable event over the bound drops the backlog and closes
//!   the socket with 1008 `slow consumer`; responses get twice the bound (they
//!   are already limited by the number of requests in flight);
//! - after a close frame is queued, or the queue is closed quietly, nothing else
//!   is queued; the close frame is the last item;
//! - an idle queue holds no allocation ([`Out::release_spare`]).

use std::collections::VecDeque;

use serde_json::Value;

use crate::frames::{self, CLOSE_POLICY, ErrorShape};

/// What the writer sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One encoded JSON frame.
    Text(String),
    /// A close frame; the writer stops after it.
    Close(u16, String),
}

/// How an event may be treated under backpressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Broadcast event, numbered, never dropped.
    Broadcast,
    /// Broadcast event, numbered, skipped (keeping its number) when the client is slow.
    Droppable,
    /// Targeted event: no `seq`, never dropped.
    Targeted,
}

/// One event a projection produced, before numbering and encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOut {
    pub event: &'static str,
    pub payload: Value,
    pub delivery: Delivery,
    /// The frame's `stateVersion`, if it carries one.
    pub state_version: Option<Value>,
}

impl EventOut {
    pub fn broadcast(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Broadcast,
            state_version: None,
        }
    }

    pub fn droppable(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Droppable,
            state_version: None,
        }
    }

    pub fn targeted(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Targeted,
            state_version: None,
        }
    }

    /// The same event carrying `stateVersion`.
    pub fn with_state_version(mut self, state_version: Value) -> Self {
        self.state_version = Some(state_version);
        self
    }
}

/// Writes frames of one connection into its outbound queue.
#[derive(Debug)]
pub struct Out {
    items: VecDeque<Outbound>,
    /// Bytes of the frames in `items`.
    backlog: usize,
    /// The bound of the backlog (`socket_queue_bytes`).
    limit: usize,
    seq: u64,
    closing: bool,
    /// Whether broadcast events carry a `seq` (OpenClaw yes, goclaw no).
    numbered: bool,
}

impl Out {
    /// An empty queue whose backlog is bounded by `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            items: VecDeque::new(),
            backlog: 0,
            limit,
            seq: 0,
            closing: false,
            numbered: true,
        }
    }

    /// Stops numbering broadcast events (goclaw never sets `seq`).
    pub fn set_numbered(&mut self, numbered: bool) {
        self.numbered = numbered;
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The last frame seq handed out.
    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Bytes queued and not yet taken by the writer.
    #[cfg(test)]
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Queues an event frame according to its delivery class.
    pub fn event(&mut self, out: EventOut) {
        if self.closing {
            return;
        }
        let seq = match out.delivery {
            Delivery::Targeted => None,
            Delivery::Broadcast | Delivery::Droppable if self.numbered => {
                self.seq += 1;
                Some(self.seq)
            }
            Delivery::Broadcast | Delivery::Droppable => None,
        };
        if out.delivery == Delivery::Droppable && self.backlog > self.limit {
            tracing::debug!(event = out.event, ?seq, "dropped for a slow consumer");
            return;
        }
        let text = frames::encode_versioned_event(
            out.event,
            &out.payload,
            seq,
            out.state_version.as_ref(),
        );
        self.push(text, self.limit);
    }

    /// Queues an event frame that is neither numbered nor droppable
    /// (`connect.challenge`).
    pub fn unnumbered(&mut self, event: &str, payload: &Value) {
        if self.closing {
            return;
        }
        let text = frames::encode_event(event, payload, None);
        self.push(text, self.limit);
    }

    /// Queues a `res` frame.
    pub fn response(&mut self, id: &str, payload: Option<&Value>, error: Option<&ErrorShape>) {
        if self.closing {
            return;
        }
        let text = frames::encode_res(id, payload, error);
        self.push(text, self.limit.saturating_mul(2));
    }

    /// Queues a close frame after everything already queued.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.items
            .push_back(Outbound::Close(code, reason.to_owned()));
    }

    /// Closes without a close frame of our own (the client closed, or went away);
    /// the writer drains what is queued and ends the WebSocket.
    pub fn close_quietly(&mut self) {
        self.closing = true;
    }

    /// Drops whatever is queued and closes at once.
    pub fn close_now(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.items.clear();
        self.backlog = 0;
        self.items
            .push_back(Outbound::Close(code, reason.to_owned()));
    }

    /// Whether anything waits for the writer.
    pub(crate) fn has_queued(&self) -> bool {
        !self.items.is_empty()
    }

    /// Takes the oldest queued item (for the writer).
    pub(crate) fn pop(&mut self) -> Option<Outbound> {
        let item = self.items.pop_front()?;
        if let Outbound::Text(text) = &item {
            self.backlog -= text.len();
        }
        Some(item)
    }

    /// Frees the queue's buffer once it is empty, so an idle socket holds none.
    pub(crate) fn release_spare(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = VecDeque::new();
        }
    }

    fn push(&mut self, text: String, limit: usize) {
        if self.backlog > limit {
            tracing::info!(backlog = self.backlog, "closing slow consumer");
            self.close_now(CLOSE_POLICY, "slow consumer");
            return;
        }
        self.backlog += text.len();
        self.items.push_back(Outbound::Text(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drain(out: &mut Out) -> Vec<Outbound> {
        std::iter::from_fn(|| out.pop()).collect()
    }

    #[test]
    fn numbers_broadcasts_only() {
        let mut out = Out::new(1 << 20);
        out.unnumbered("connect.challenge", &json!({}));
        out.event(EventOut::broadcast("tick", json!({})));
        out.event(EventOut::targeted("agent", json!({})));
        out.event(EventOut::droppable("chat", json!({})));
        let seqs: Vec<Option<u64>> = drain(&mut out)
            .iter()
            .map(|frame| match frame {
                Outbound::Text(text) => serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64)),
                Outbound::Close(..) => None,
            })
            .collect();
        assert_eq!(seqs, vec![None, Some(1), None, Some(2)]);
        assert_eq!(out.backlog(), 0);
    }

    #[test]
    fn slow_consumer_drops_droppable_and_closes_on_required() {
        let mut out = Out::new(64);
        out.event(EventOut::broadcast("tick", json!({"pad": "x".repeat(80)})));
        assert!(out.backlog() > 64);
        out.event(EventOut::droppable("chat", json!({})));
        assert_eq!(out.last_seq(), 2, "the skipped delta keeps its seq");
        assert!(!out.is_closing());
        out.event(EventOut::broadcast("agent", json!({})));
        assert!(out.is_closing());
        assert_eq!(
            drain(&mut out),
            vec![Outbound::Close(1008, "slow consumer".into())]
        );
    }

    #[test]
    fn responses_get_more_room() {
        let mut out = Out::new(100);
        out.event(EventOut::broadcast("tick", json!({"pad": "x".repeat(80)})));
        assert!(out.backlog() > 100);
        out.response("1", Some(&json!({})), None);
        assert!(!out.is_closing());
    }

    #[test]
    fn nothing_follows_a_close() {
        let mut out = Out::new(100);
        out.unnumbered("a", &json!({}));
        out.close(1000, "bye");
        out.event(EventOut::broadcast("tick", json!({})));
        out.close_now(1008, "late");
        let items = drain(&mut out);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Outbound::Close(1000, "bye".into()));
    }

    #[test]
    fn an_idle_queue_holds_no_buffer() {
        let mut out = Out::new(100);
        out.unnumbered("a", &json!({}));
        drain(&mut out);
        out.release_spare();
        assert_eq!(out.items.capacity(), 0);
    }
}
