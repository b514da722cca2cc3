//! The producer side of a socket's outbound queue: encodes frames, numbers
//! broadcast events, and applies the slow-consumer policy.
//!
//! Invariants:
//! - frame `seq` counts broadcast events of this connection from 1; a droppable
//!   event skipped for backpressure still takes its number, so the client sees
//!   the gap (OpenClaw §8.2);
//! - an event is admitted while the queued backlog is within the bound
//!   (`socket_queue_bytes`); a non-droppable event over the bound closes the
//!   socket with 1008 `slow consumer`; responses get twice the bound (they are
//!   already limited by the number of requests in flight);
//! - after a close frame is queued nothing else is.

use std::sync::Arc;

use serde_json::Value;

use crate::frames::{self, CLOSE_POLICY, ErrorShape};
use crate::queue::{ByteQueue, Refused};

/// What the writer task sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One encoded JSON frame.
    Text(String),
    /// Start WebSocket pings (after the handshake).
    StartPing,
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
}

impl EventOut {
    pub fn broadcast(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Broadcast,
        }
    }

    pub fn droppable(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Droppable,
        }
    }

    pub fn targeted(event: &'static str, payload: Value) -> Self {
        Self {
            event,
            payload,
            delivery: Delivery::Targeted,
        }
    }
}

pub type OutQueue = ByteQueue<Outbound>;

/// Writes frames of one connection into its outbound queue.
#[derive(Debug)]
pub struct Out {
    queue: Arc<OutQueue>,
    seq: u64,
    closing: bool,
    /// Whether broadcast events carry a `seq` (OpenClaw yes, goclaw no).
    numbered: bool,
}

impl Out {
    pub fn new(queue: Arc<OutQueue>) -> Self {
        Self {
            queue,
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
        let limit = self.queue.limit();
        if out.delivery == Delivery::Droppable && self.queue.backlog() > limit {
            tracing::debug!(event = out.event, ?seq, "dropped for a slow consumer");
            return;
        }
        let text = frames::encode_event(out.event, &out.payload, seq);
        self.push(text, limit);
    }

    /// Queues an event frame that is neither numbered nor droppable
    /// (`connect.challenge`).
    pub fn unnumbered(&mut self, event: &str, payload: &Value) {
        if self.closing {
            return;
        }
        let text = frames::encode_event(event, payload, None);
        self.push(text, self.queue.limit());
    }

    /// Queues a `res` frame.
    pub fn response(&mut self, id: &str, payload: Option<&Value>, error: Option<&ErrorShape>) {
        if self.closing {
            return;
        }
        let text = frames::encode_res(id, payload, error);
        self.push(text, self.queue.limit().saturating_mul(2));
    }

    /// Asks the writer to start pinging.
    pub fn start_ping(&mut self) {
        if !self.closing {
            let _ = self.queue.push_within(Outbound::StartPing, 0, usize::MAX);
        }
    }

    /// Queues a close frame after everything already queued.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        let _ = self
            .queue
            .push_within(Outbound::Close(code, reason.to_owned()), 0, usize::MAX);
        self.queue.close();
    }

    /// Closes without a close frame of our own (the client closed, or went away);
    /// the writer drains what is queued and ends the WebSocket.
    pub fn close_quietly(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.queue.close();
    }

    /// Drops whatever is queued and closes at once.
    pub fn close_now(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.queue
            .replace_and_close(Outbound::Close(code, reason.to_owned()), 0);
    }

    fn push(&mut self, text: String, limit: usize) {
        let size = text.len();
        match self.queue.push_within(Outbound::Text(text), size, limit) {
            Ok(()) => {}
            Err(Refused::Full) => {
                tracing::info!(backlog = self.queue.backlog(), "closing slow consumer");
                self.close_now(CLOSE_POLICY, "slow consumer");
            }
            Err(Refused::Closed) => self.closing = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Popped;
    use serde_json::json;

    fn texts(queue: &OutQueue) -> Vec<Outbound> {
        match queue.try_pop_all() {
            Some(Popped::Items(items)) => items,
            _ => Vec::new(),
        }
    }

    #[test]
    fn numbers_broadcasts_only() {
        let queue = Arc::new(OutQueue::new(1 << 20));
        let mut out = Out::new(queue.clone());
        out.unnumbered("connect.challenge", &json!({}));
        out.event(EventOut::broadcast("tick", json!({})));
        out.event(EventOut::targeted("agent", json!({})));
        out.event(EventOut::droppable("chat", json!({})));
        let frames = texts(&queue);
        let seqs: Vec<Option<u64>> = frames
            .iter()
            .map(|frame| match frame {
                Outbound::Text(text) => serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64)),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![None, Some(1), None, Some(2)]);
    }

    #[test]
    fn slow_consumer_drops_droppable_and_closes_on_required() {
        let queue = Arc::new(OutQueue::new(64));
        let mut out = Out::new(queue.clone());
        out.event(EventOut::broadcast("tick", json!({"pad": "x".repeat(80)})));
        assert!(queue.backlog() > 64);
        out.event(EventOut::droppable("chat", json!({})));
        assert_eq!(out.last_seq(), 2, "the skipped delta keeps its seq");
        assert!(!out.is_closing());
        out.event(EventOut::broadcast("agent", json!({})));
        assert!(out.is_closing());
        assert_eq!(
            texts(&queue),
            vec![Outbound::Close(1008, "slow consumer".into())]
        );
    }

    #[test]
    fn responses_get_more_room() {
        let queue = Arc::new(OutQueue::new(100));
        let mut out = Out::new(queue.clone());
        out.event(EventOut::broadcast("tick", json!({"pad": "x".repeat(80)})));
        assert!(queue.backlog() > 100);
        out.response("1", Some(&json!({})), None);
        assert!(!out.is_closing());
    }
}
