//! What a [`RunEvent`] means beyond its fields, for the runner that publishes
//! it and the edges that project it: its bus payload (a [`BusMessage`]), and the
//! assistant text a run's deltas add up to.
//!
//! Invariant: [`decode_event`] reads back exactly what [`bus_payload`] wrote;
//! [`assistant_text`] only answers for a complete run of deltas (the first at
//! offset 0, no gap), so a partial history never passes for the whole text.

use bytes::Bytes;
use prost::Message as _;

use crate::pb::common::v1::{BusMessage, RunEvent, bus_message, run_event};

/// The bus payload of a run event.
pub fn bus_payload(event: &RunEvent) -> Bytes {
    BusMessage {
        body: Some(bus_message::Body::RunEvent(event.clone())),
    }
    .encode_to_vec()
    .into()
}

/// Decodes a bus payload holding a run event (anything else is `None`).
pub fn decode_event(payload: &[u8]) -> Option<RunEvent> {
    match BusMessage::decode(payload).ok()?.body? {
        bus_message::Body::RunEvent(event) => Some(event),
        _ => None,
    }
}

/// The assistant text the deltas of `events` add up to, when they are complete
/// from the start (the first delta at offset 0, no gap); `None` otherwise.
pub fn assistant_text(events: &[RunEvent]) -> Option<String> {
    let mut text = String::new();
    for event in events {
        if let Some(run_event::Kind::Assistant(delta)) = &event.kind {
            if delta.offset != text.len() as u64 {
                return None;
            }
            text.push_str(&delta.delta);
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::common::v1::AssistantDelta;

    fn delta(seq: u64, offset: u64, text: &str) -> RunEvent {
        RunEvent {
            seq,
            kind: Some(run_event::Kind::Assistant(AssistantDelta {
                delta: text.into(),
                offset,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn text_is_known_only_without_gaps() {
        assert_eq!(
            assistant_text(&[delta(2, 0, "ab"), delta(3, 2, "c")]).as_deref(),
            Some("abc")
        );
        assert_eq!(assistant_text(&[delta(3, 2, "c")]), None);
        assert_eq!(assistant_text(&[]).as_deref(), Some(""));
    }

    #[test]
    fn payload_round_trips() {
        let event = delta(1, 0, "x");
        assert_eq!(decode_event(&bus_payload(&event)), Some(event));
    }
}
