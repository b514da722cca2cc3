use super::*;
use crate::out::Delivery;
use clawgate_proto::pb::common::v1::{
    AssistantDelta, LifecycleEnd, LifecycleError, LifecycleStart, ToolStart,
};

fn ev(seq: u64, kind: run_event::Kind) -> RunEvent {
    RunEvent {
        tenant_id: "t".into(),
        user_id: "u".into(),
        session_key: "agent:main:main".into(),
        run_id: "run-1".into(),
        seq,
        ts_ms: 1000 + seq as i64,
        kind: Some(kind),
        ..Default::default()
    }
}

fn assistant(seq: u64, offset: u64, delta: &str) -> RunEvent {
    ev(
        seq,
        run_event::Kind::Assistant(AssistantDelta {
            delta: delta.into(),
            offset,
        }),
    )
}

fn end(seq: u64, outcome: RunOutcome, text: &str) -> RunEvent {
    ev(
        seq,
        run_event::Kind::End(LifecycleEnd {
            outcome: outcome as i32,
            stop_reason: if outcome == RunOutcome::Aborted {
                "rpc"
            } else {
                "stop"
            }
            .into(),
            text: text.into(),
            ..Default::default()
        }),
    )
}

/// `(event, state or stream, text)` of each frame.
fn summary(frames: &[EventOut]) -> Vec<(String, String, String)> {
    frames
        .iter()
        .map(|frame| {
            let p = &frame.payload;
            let kind = p
                .get("state")
                .or_else(|| p.get("stream"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let text = p
                .pointer("/message/content/0/text")
                .or_else(|| p.pointer("/data/text"))
                .or_else(|| p.pointer("/data/phase"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (frame.event.to_owned(), kind, text)
        })
        .collect()
}

fn s(event: &str, kind: &str, text: &str) -> (String, String, String) {
    (event.into(), kind.into(), text.into())
}

#[test]
fn deltas_are_throttled_full_text_and_flushed_before_final() {
    let mut p = Projector::new(false, Protocol::V3);
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut frames = Vec::new();
    frames.extend(p.project(
        &ev(
            1,
            run_event::Kind::Start(LifecycleStart { started_at_ms: 1 }),
        ),
        ms(0),
    ));
    frames.extend(p.project(&assistant(2, 0, "a"), ms(0)));
    frames.extend(p.project(&assistant(3, 1, "b"), ms(40)));
    frames.extend(p.project(&assistant(4, 2, "c"), ms(80)));
    frames.extend(p.project(&assistant(5, 3, "d"), ms(160)));
    frames.extend(p.project(&assistant(6, 4, "e"), ms(200)));
    frames.extend(p.project(&end(7, RunOutcome::Completed, "abcde"), ms(210)));
    assert_eq!(
        summary(&frames),
        vec![
            s("agent", "lifecycle", "start"),
            s("agent", "assistant", "a"),
            s("chat", "delta", "a"),
            s("agent", "assistant", "ab"),
            s("agent", "assistant", "abc"),
            s("agent", "assistant", "abcd"),
            s("chat", "delta", "abcd"),
            s("agent", "assistant", "abcde"),
            s("chat", "delta", "abcde"),
            s("agent", "lifecycle", "end"),
            s("chat", "final", "abcde"),
        ]
    );
    let chat_seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f.event == "chat")
        .map(|f| f.payload["seq"].as_u64().unwrap_or_default())
        .collect();
    assert_eq!(chat_seqs, vec![2, 5, 6, 7], "chat seq follows the run seq");
    assert!(
        frames
            .iter()
            .filter(|f| f.payload["state"] == "delta")
            .all(|f| f.delivery == Delivery::Droppable)
    );
    assert_eq!(frames.last().map(|f| f.delivery), Some(Delivery::Broadcast));
    assert_eq!(p.live_runs(), 0);
}

#[test]
fn abort_carries_partial_text_without_a_flush() {
    let mut p = Projector::new(false, Protocol::V3);
    let now = Instant::now();
    p.project(&assistant(1, 0, "par"), now);
    let held = p.project(&assistant(2, 3, "tial"), now);
    assert_eq!(held.len(), 1, "throttled: only the agent frame");
    let frames = p.project(&end(3, RunOutcome::Aborted, "partial"), now);
    assert_eq!(
        summary(&frames),
        vec![
            s("agent", "lifecycle", "end"),
            s("chat", "aborted", "partial")
        ]
    );
    assert_eq!(frames[0].payload["data"]["status"], "cancelled");
    assert_eq!(frames[0].payload["data"]["aborted"], true);
    assert_eq!(frames[1].payload["stopReason"], "rpc");
}

#[test]
fn error_flushes_then_reports() {
    let mut p = Projector::new(false, Protocol::V3);
    let now = Instant::now();
    p.project(&assistant(1, 0, "x"), now);
    p.project(&assistant(2, 1, "y"), now);
    let frames = p.project(
        &ev(
            3,
            run_event::Kind::Error(LifecycleError {
                message: "model failed".into(),
                kind: "rate_limit".into(),
                text: "xy".into(),
                ..Default::default()
            }),
        ),
        now,
    );
    assert_eq!(
        summary(&frames),
        vec![
            s("chat", "delta", "xy"),
            s("agent", "lifecycle", "error"),
            s("chat", "error", "xy"),
        ]
    );
    assert_eq!(frames[2].payload["errorMessage"], "model failed");
    assert_eq!(frames[2].payload["errorKind"], "rate_limit");
}

#[test]
fn tool_start_flushes_and_tool_events_need_the_cap() {
    let tool = || {
        ev(
            3,
            run_event::Kind::ToolStart(ToolStart {
                tool_call_id: "c1".into(),
                name: "search".into(),
                arguments_json: r#"{"q":1}"#.into(),
            }),
        )
    };
    let now = Instant::now();
    let mut plain = Projector::new(false, Protocol::V3);
    plain.project(&assistant(1, 0, "a"), now);
    plain.project(&assistant(2, 1, "b"), now);
    assert_eq!(
        summary(&plain.project(&tool(), now)),
        vec![s("chat", "delta", "ab")]
    );

    let mut with_cap = Projector::new(true, Protocol::V3);
    let frames = with_cap.project(&tool(), now);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].delivery, Delivery::Targeted);
    assert_eq!(frames[0].payload["data"]["args"]["q"], 1);
}

#[test]
fn a_gap_stops_deltas_but_not_the_final() {
    let mut p = Projector::new(false, Protocol::V3);
    let now = Instant::now();
    assert!(p.project(&assistant(4, 10, "late"), now).is_empty());
    assert!(p.project(&assistant(5, 14, "r"), now).is_empty());
    let frames = p.project(&end(6, RunOutcome::Completed, "0123456789later"), now);
    assert_eq!(
        summary(&frames),
        vec![
            s("agent", "lifecycle", "end"),
            s("chat", "final", "0123456789later")
        ]
    );
}

#[test]
fn run_state_is_bounded() {
    let mut p = Projector::new(false, Protocol::V3);
    let now = Instant::now();
    for i in 0..(MAX_RUNS + 10) {
        let mut event = assistant(1, 0, "x");
        event.run_id = format!("run-{i}");
        p.project(&event, now);
    }
    assert_eq!(p.live_runs(), MAX_RUNS);
}

#[test]
fn runs_of_two_users_with_one_run_id_stay_apart_and_foreign_ones_are_labelled() {
    // An admin ("u") receives its own run-1 and bob's run-1, interleaved.
    let mut p = Projector::new(false, Protocol::V3).with_own_user("u");
    let now = Instant::now();
    let of_bob = |mut event: RunEvent| {
        event.user_id = "bob".into();
        event
    };
    let own = p.project(&assistant(1, 0, "mine"), now);
    assert!(own.iter().all(|f| f.payload.get("userId").is_none()));
    let bobs = p.project(&of_bob(assistant(1, 0, "his")), now);
    assert!(!bobs.is_empty());
    assert!(
        bobs.iter().all(|f| f.payload["userId"] == "bob"),
        "{bobs:?}"
    );
    assert_eq!(p.live_runs(), 2);
    let later = now + DELTA_THROTTLE;
    assert_eq!(
        summary(&p.project(&of_bob(assistant(2, 3, " text")), later)),
        vec![
            s("agent", "assistant", "his text"),
            s("chat", "delta", "his text")
        ]
    );
    assert_eq!(
        summary(&p.project(&end(3, RunOutcome::Completed, "mine!"), later)),
        vec![s("agent", "lifecycle", "end"), s("chat", "final", "mine!")]
    );
    assert_eq!(p.live_runs(), 1, "bob's run is still tracked");
    // Without an own user (e.g. tests, replay of own runs) nothing is labelled.
    let mut plain = Projector::new(false, Protocol::V3);
    let frames = plain.project(&of_bob(assistant(1, 0, "x")), now);
    assert!(frames.iter().all(|f| f.payload.get("userId").is_none()));
}

#[test]
fn v4_deltas_carry_the_text_since_the_last_delta_and_final_keeps_the_message() {
    let mut p = Projector::new(false, Protocol::V4);
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut frames = Vec::new();
    let mut agent_start = ev(
        1,
        run_event::Kind::Start(LifecycleStart { started_at_ms: 1 }),
    );
    agent_start.agent_id = "main".into();
    frames.extend(p.project(&agent_start, ms(0)));
    let main = |mut event: RunEvent| {
        event.agent_id = "main".into();
        event
    };
    frames.extend(p.project(&main(assistant(2, 0, "ab")), ms(0)));
    frames.extend(p.project(&main(assistant(3, 2, "cd")), ms(40)));
    frames.extend(p.project(&main(assistant(4, 4, "ef")), ms(200)));
    // A rewrite of text already sent: the next delta replaces everything.
    frames.extend(p.project(&main(assistant(5, 1, "X")), ms(400)));
    // The runner's end carries no text: v4 `final` keeps the streamed one.
    frames.extend(p.project(&main(end(6, RunOutcome::Completed, "")), ms(410)));
    let chats: Vec<&Value> = frames
        .iter()
        .filter(|f| f.event == "chat")
        .map(|f| &f.payload)
        .collect();
    let deltas: Vec<(&str, bool)> = chats
        .iter()
        .filter(|c| c["state"] == "delta")
        .map(|c| {
            (
                c["deltaText"].as_str().unwrap_or("<none>"),
                c["replace"] == json!(true),
            )
        })
        .collect();
    assert_eq!(deltas, vec![("ab", false), ("cdef", false), ("aX", true)]);
    let last = chats.last().expect("final");
    assert_eq!(last["state"], "final");
    assert_eq!(last["message"]["content"][0]["text"], "aX");
    assert_eq!(
        chats.iter().filter(|c| c["state"] == "final").count(),
        1,
        "exactly one terminal state"
    );
    assert!(
        frames.iter().all(|f| f.payload["agentId"] == "main"),
        "v4 payloads name the agent"
    );
    // v3 sends neither `deltaText` nor `agentId`, and no message on an empty end.
    let mut v3 = Projector::new(false, Protocol::V3);
    let mut frames = v3.project(&agent_start, ms(0));
    frames.extend(v3.project(&main(assistant(2, 0, "ab")), ms(0)));
    frames.extend(v3.project(&main(end(3, RunOutcome::Completed, "")), ms(10)));
    assert!(
        frames
            .iter()
            .all(|f| f.payload.get("deltaText").is_none() && f.payload.get("agentId").is_none())
    );
    assert!(
        frames
            .last()
            .expect("final")
            .payload
            .get("message")
            .is_none()
    );
}
