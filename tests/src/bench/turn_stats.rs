//! What the tool-turn scenario makes of its turns ([`super::turns`]): each
//! turn checked against the mock model's record of it (its requests, by the
//! run id the turn's message is, and when each answer was complete), the model
//! time taken off its end-to-end latency, percentiles and errors by kind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::stats::{Percentiles, percentiles};
use super::target::MockHost;
use super::turns::{Outcome, TurnRecord};

#[derive(Debug, Default, Clone)]
pub struct ModelSide {
    requests: usize,
    /// Requests whose answer the mock completed, and their total time.
    answered: usize,
    model_time: Duration,
    /// The turn's tool result (role `tool`) was the tool's success.
    tool_ok: bool,
}

/// Whether a request's last message is a successful `sessions_list` result.
fn tool_result_ok(body: &Value) -> bool {
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else {
        return false;
    };
    last["role"] == "tool"
        && last["content"]
            .as_str()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .is_some_and(|c| c["sessions"].is_array())
}

pub fn model_sides(mock: &MockHost) -> HashMap<String, ModelSide> {
    let requests = mock.requests();
    let mut ends: HashMap<usize, Instant> = HashMap::new();
    for end in mock.answer_ends() {
        ends.insert(end.request, end.at);
    }
    let mut sides: HashMap<String, ModelSide> = HashMap::new();
    for (index, recorded) in requests.iter().enumerate() {
        let Some(run_id) = recorded.last_user_message() else {
            continue;
        };
        let side = sides.entry(run_id).or_default();
        side.requests += 1;
        if let Some(end) = ends.get(&index) {
            side.answered += 1;
            side.model_time += end.saturating_duration_since(recorded.received_at);
        }
        side.tool_ok |= tool_result_ok(&recorded.body);
    }
    sides
}

/// Errors of a set of turns, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnErrors {
    pub refused: usize,
    /// Terminal event `error` or `aborted`.
    pub failed: usize,
    pub timed_out: usize,
    /// Lost with their socket.
    pub lost: usize,
    /// A `final` event without the expected reply.
    pub wrong_reply: usize,
    /// A tool turn whose tool result was not a session list.
    pub tool_failed: usize,
    /// Model requests other than 2 (tool turn) or 1 (plain turn), or an
    /// answer the mock did not complete.
    pub wrong_model_steps: usize,
}

impl TurnErrors {
    pub fn total(&self) -> usize {
        self.refused
            + self.failed
            + self.timed_out
            + self.lost
            + self.wrong_reply
            + self.tool_failed
            + self.wrong_model_steps
    }
}

/// Figures of a set of turns of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct TurnStats {
    pub turns: usize,
    /// Turns that ended `final` with the reply, their model steps all
    /// answered, and (tool turns) a successful tool result.
    pub ok: usize,
    pub errors: usize,
    pub error_kinds: TurnErrors,
    /// What the first refused or failed turn was told.
    pub first_error: Option<String>,
    /// `chat.send` written → its `ok` response read (the run accepted).
    pub accepted_ms: Option<Percentiles>,
    /// `chat.send` written → terminal `chat` event read.
    pub end_to_end_ms: Option<Percentiles>,
    /// The mock's own time (all model steps of the turn).
    pub model_ms: Option<Percentiles>,
    /// End to end − model time: what the gateway adds.
    pub overhead_ms: Option<Percentiles>,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The figures of `records` (turns of one kind), checking each against the
/// mock's side and the expected `reply`.
pub fn turn_stats(
    records: &[&TurnRecord],
    sides: &HashMap<String, ModelSide>,
    reply: &str,
) -> TurnStats {
    let mut errors = TurnErrors::default();
    let mut first_error = None;
    let (mut end_to_end, mut model, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    let mut accepted = Vec::new();
    for record in records {
        match record.outcome {
            Outcome::Final => {}
            Outcome::Failed => errors.failed += 1,
            Outcome::Refused => errors.refused += 1,
            Outcome::TimedOut => errors.timed_out += 1,
            Outcome::Lost => errors.lost += 1,
        }
        if record.outcome != Outcome::Final {
            first_error.get_or_insert_with(|| {
                let text = record.text.as_deref().unwrap_or_default();
                format!("{:?}: {text}", record.outcome)
            });
            continue;
        }
        let side = sides.get(&record.spec.run_id).cloned().unwrap_or_default();
        let steps = if record.spec.tool { 2 } else { 1 };
        let mut ok = true;
        if !record
            .text
            .as_deref()
            .is_some_and(|text| text.contains(reply))
        {
            errors.wrong_reply += 1;
            ok = false;
        }
        if record.spec.tool && !side.tool_ok {
            errors.tool_failed += 1;
            ok = false;
        }
        if side.requests != steps || side.answered != steps {
            errors.wrong_model_steps += 1;
            ok = false;
        }
        if ok {
            let total = record.ended_at.saturating_duration_since(record.sent_at);
            end_to_end.push(ms(total));
            if let Some(at) = record.accepted_at {
                accepted.push(ms(at.saturating_duration_since(record.sent_at)));
            }
            model.push(ms(side.model_time));
            overhead.push(ms(total.saturating_sub(side.model_time)));
        }
    }
    let ok = end_to_end.len();
    TurnStats {
        turns: records.len(),
        ok,
        errors: errors.total(),
        error_kinds: errors,
        first_error,
        accepted_ms: percentiles(accepted),
        end_to_end_ms: percentiles(end_to_end),
        model_ms: percentiles(model),
        overhead_ms: percentiles(overhead),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bench::turns::TurnSpec;

    #[test]
    fn a_tool_result_is_ok_when_it_lists_sessions() {
        let after = json!({"messages": [
            {"role": "user", "content": "tt-x-seq-tool-1"},
            {"role": "assistant", "tool_calls": [{"id": "call_1"}]},
            {"role": "tool", "content": "{\"sessions\":[]}"},
        ]});
        assert!(tool_result_ok(&after));
        let failed = json!({"messages": [{"role": "tool", "content": "limit must be an integer"}]});
        assert!(!tool_result_ok(&failed));
        assert!(!tool_result_ok(
            &json!({"messages": [{"role": "user", "content": "x"}]})
        ));
    }

    #[test]
    fn overhead_is_end_to_end_minus_model_time() {
        let t0 = Instant::now();
        let record = |run_id: &str, tool: bool, ended_ms: u64, reply: &str| TurnRecord {
            spec: TurnSpec {
                run_id: run_id.to_owned(),
                session_key: format!("s-{run_id}"),
                tool,
            },
            sent_at: t0,
            accepted_at: Some(t0 + Duration::from_millis(1)),
            ended_at: t0 + Duration::from_millis(ended_ms),
            outcome: Outcome::Final,
            text: Some(reply.to_owned()),
        };
        let side = |requests: usize, model_ms: u64, tool_ok: bool| ModelSide {
            requests,
            answered: requests,
            model_time: Duration::from_millis(model_ms),
            tool_ok,
        };
        let records = [
            record("a", true, 10, "done"),
            record("b", true, 20, "done"),
            record("c", true, 5, "other"),
            record("d", true, 5, "done"),
        ];
        let sides = HashMap::from([
            ("a".to_owned(), side(2, 4, true)),
            ("b".to_owned(), side(2, 4, true)),
            ("c".to_owned(), side(2, 1, true)),
            ("d".to_owned(), side(1, 1, false)),
        ]);
        let all: Vec<&TurnRecord> = records.iter().collect();
        let stats = turn_stats(&all, &sides, "done");
        assert_eq!((stats.turns, stats.ok, stats.errors), (4, 2, 3));
        assert_eq!(stats.error_kinds.wrong_reply, 1);
        assert_eq!(stats.error_kinds.tool_failed, 1);
        assert_eq!(stats.error_kinds.wrong_model_steps, 1);
        let overhead = stats.overhead_ms.expect("samples");
        assert_eq!((overhead.p50, overhead.max), (6.0, 16.0));
        assert_eq!(stats.model_ms.expect("samples").max, 4.0);
        assert_eq!(stats.accepted_ms.expect("samples").p50, 1.0);
    }
}
