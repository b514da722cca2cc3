//! A transcript note (`chat.inject`) as OpenClaw shows it: a `chat` final of
//! run `inject-<messageId>` with `seq` 0 and the note as the assistant message
//! (reference §5.2; no `agent` event: no run ran).

use clawgate_proto::pb::common::v1::TranscriptNote;
use serde_json::json;

use crate::out::EventOut;

/// The `chat` event of `note`.
pub fn chat_final(note: &TranscriptNote) -> EventOut {
    let mut payload = json!({
        "runId": format!("inject-{}", note.message_id),
        "sessionKey": note.session_key,
        "seq": 0,
        "state": "final",
        "message": {
            "role": "assistant",
            "content": [{ "type": "text", "text": note.text }],
            "timestamp": note.ts_ms,
        },
    });
    if !note.agent_id.is_empty() {
        payload["agentId"] = json!(note.agent_id);
    }
    EventOut::broadcast("chat", payload)
}
