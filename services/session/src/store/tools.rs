//! The `tools` column of a transcript row: an assistant row's tool calls, or
//! a tool row's call id, tool name and outcome, as JSON text (`''` for rows
//! without either).
//!
//! Invariant: decoding never fails a read; a value this build cannot read
//! (written by a newer one) reads as a row without tool data.

use clawgate_proto::session::{ToolCallRecord, TranscriptMessage};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    calls: Vec<Call>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    call_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    is_error: bool,
}

#[derive(Serialize, Deserialize)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// The column's value for a row with these calls or this tool result.
pub fn encode(calls: &[ToolCallRecord], call_id: &str, name: &str, is_error: bool) -> String {
    if calls.is_empty() && call_id.is_empty() {
        return String::new();
    }
    let stored = Stored {
        calls: calls
            .iter()
            .map(|call| Call {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments_json.clone(),
            })
            .collect(),
        call_id: call_id.to_owned(),
        name: name.to_owned(),
        is_error,
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// Fills `message`'s tool fields from the column's value.
pub fn decode(text: &str, message: &mut TranscriptMessage) {
    if text.is_empty() {
        return;
    }
    let Ok(stored) = serde_json::from_str::<Stored>(text) else {
        tracing::warn!(row = %message.id, "unreadable tool data on a transcript row");
        return;
    };
    message.tool_calls = stored
        .calls
        .into_iter()
        .map(|call| ToolCallRecord {
            id: call.id,
            name: call.name,
            arguments_json: call.arguments,
        })
        .collect();
    message.tool_call_id = stored.call_id;
    message.tool_name = stored.name;
    message.tool_error = stored.is_error;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_results_round_trip() {
        let calls = [ToolCallRecord {
            id: "c1".into(),
            name: "sessions_list".into(),
            arguments_json: r#"{"limit":3}"#.into(),
        }];
        let mut row = TranscriptMessage::default();
        decode(&encode(&calls, "", "", false), &mut row);
        assert_eq!(row.tool_calls, calls);
        let mut row = TranscriptMessage::default();
        decode(&encode(&[], "c1", "sessions_list", true), &mut row);
        assert_eq!(
            (
                row.tool_call_id.as_str(),
                row.tool_name.as_str(),
                row.tool_error
            ),
            ("c1", "sessions_list", true)
        );
        assert_eq!(encode(&[], "", "", false), "");
        let mut row = TranscriptMessage::default();
        decode("{not json", &mut row);
        assert!(row.tool_calls.is_empty());
    }
}
