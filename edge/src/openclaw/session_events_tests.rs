use clawgate_proto::pb::common::v1::{LifecycleStart, RunEvent, SessionChange, run_event};
use clawgate_proto::session::{Session, TranscriptMessage};
use serde_json::json;

use super::*;

fn change(reason: &str, key: &str) -> SessionChange {
    SessionChange {
        user_id: "u".into(),
        session_key: key.into(),
        agent_id: "main".into(),
        reason: reason.into(),
        ts_ms: 7,
        session: Some(Session {
            session_key: key.into(),
            agent_id: "main".into(),
            session_id: "sid".into(),
            label: "L".into(),
            ..Default::default()
        }),
        message: (reason == "message").then(|| TranscriptMessage {
            id: "m1".into(),
            seq: 3,
            role: "user".into(),
            content: "hi".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn names(events: &[EventOut]) -> Vec<&str> {
    events.iter().map(|e| e.event).collect()
}

#[test]
fn unsubscribed_connections_get_nothing() {
    let subs = Subscriptions::default();
    let config = EdgeConfig::default();
    for reason in ["create", "patch", "message", "delete"] {
        assert!(
            subs.on_change(&change(reason, "agent:main:a"), true, &config)
                .is_empty()
        );
    }
}

#[test]
fn message_subscriptions_are_per_key() {
    let mut subs = Subscriptions::default();
    let config = EdgeConfig::default();
    let answer = subs
        .apply(Subscription::Messages {
            key: "agent:main:a".into(),
            on: true,
        })
        .unwrap();
    assert_eq!(answer, json!({"subscribed": true, "key": "agent:main:a"}));
    let events = subs.on_change(&change("message", "agent:main:a"), true, &config);
    assert_eq!(names(&events), ["session.message"]);
    let payload = &events[0].payload;
    assert_eq!(payload["message"]["content"], json!("hi"));
    assert_eq!(payload["messageSeq"], json!(3));
    assert_eq!(payload["session"]["sessionId"], json!("sid"));
    assert_eq!(payload["label"], json!("L"));
    assert!(payload.get("hasActiveRun").is_none());
    assert!(
        subs.on_change(&change("message", "agent:main:b"), true, &config)
            .is_empty()
    );
    // A key subscription does not bring session changes.
    assert!(
        subs.on_change(&change("patch", "agent:main:a"), true, &config)
            .is_empty()
    );
    subs.apply(Subscription::Messages {
        key: "agent:main:a".into(),
        on: false,
    })
    .unwrap();
    assert!(
        subs.on_change(&change("message", "agent:main:a"), true, &config)
            .is_empty()
    );
}

#[test]
fn all_sessions_get_changes_messages_and_run_phases() {
    let mut subs = Subscriptions::default();
    let config = EdgeConfig::default();
    subs.apply(Subscription::Sessions(true)).unwrap();
    let events = subs.on_change(&change("message", "agent:main:a"), false, &config);
    assert_eq!(names(&events), ["session.message"]);
    // v3 carries no `session` object and a parts array for user content.
    assert!(events[0].payload.get("session").is_none());
    assert!(events[0].payload["message"]["content"].is_array());
    let events = subs.on_change(&change("reset", "agent:main:a"), true, &config);
    assert_eq!(names(&events), ["sessions.changed"]);
    assert_eq!(events[0].payload["reason"], json!("reset"));
    assert_eq!(events[0].payload["ts"], json!(7));
    let start = RunEvent {
        session_key: "agent:main:a".into(),
        run_id: "r1".into(),
        kind: Some(run_event::Kind::Start(LifecycleStart::default())),
        ..Default::default()
    };
    let event = subs.on_run(&start, &config).expect("a phase");
    assert_eq!(event.payload["phase"], json!("start"));
    assert_eq!(event.payload["agentId"], json!("main"));
    subs.apply(Subscription::Sessions(false)).unwrap();
    assert!(subs.on_run(&start, &config).is_none());
}

#[test]
fn message_subscriptions_are_bounded() {
    let mut subs = Subscriptions::default();
    for i in 0..MAX_MESSAGE_KEYS {
        let key = format!("agent:main:{i}");
        subs.apply(Subscription::Messages { key, on: true })
            .unwrap();
    }
    let again = Subscription::Messages {
        key: "agent:main:0".into(),
        on: true,
    };
    assert!(subs.apply(again).is_ok());
    let one_more = Subscription::Messages {
        key: "agent:main:x".into(),
        on: true,
    };
    assert!(subs.apply(one_more).is_err());
}
