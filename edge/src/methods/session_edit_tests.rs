use clawgate_proto::Principal;
use serde_json::json;

use super::*;
use crate::methods::decl::{Handler, parse_with};

fn parse_as(name: &'static str, params: Value, style: Style) -> Result<Call, ServiceError> {
    let method = METHODS.iter().find(|m| m.name == name).expect("declared");
    assert!(matches!(method.handler, Handler::Call(_)));
    let principal = Principal::default();
    parse_with(name, &params, style, &principal, parse)
}

fn parse_oc(name: &'static str, params: Value) -> Result<Call, ServiceError> {
    parse_as(name, params, Style::Camel)
}

#[test]
fn describe_and_get_canonicalize_keys() {
    assert_eq!(
        parse_oc("sessions.describe", json!({"key": "S", "agentId": "Ops"})).unwrap(),
        Call::Describe {
            key: "agent:ops:s".into(),
            last_message: false
        }
    );
    assert_eq!(
        parse_oc("sessions.get", json!({"sessionKey": "main", "limit": 5})).unwrap(),
        Call::Get {
            key: "agent:main:main".into(),
            limit: 5,
            v4: true
        }
    );
    let err = parse_oc("sessions.get", json!({})).unwrap_err();
    assert!(err.message.contains("key is required"), "{}", err.message);
    let err = parse_oc(
        "sessions.describe",
        json!({"key": "x", "includeDerivedTitles": true}),
    )
    .unwrap_err();
    assert!(err.message.contains("not supported"), "{}", err.message);
}

#[test]
fn preview_bounds() {
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let Call::Preview {
        keys,
        limit,
        max_chars,
    } = parse_oc("sessions.preview", json!({"keys": keys})).unwrap()
    else {
        panic!("a preview");
    };
    assert_eq!(keys.len(), MAX_PREVIEW_KEYS);
    assert_eq!((limit, max_chars), (12, 240));
    for bad in [
        json!({"keys": []}),
        json!({}),
        json!({"keys": ["a"], "maxChars": 5}),
    ] {
        assert!(parse_oc("sessions.preview", bad).is_err());
    }
}

#[test]
fn patch_keeps_only_labels() {
    assert_eq!(
        parse_oc("sessions.patch", json!({"key": "w", "label": null})).unwrap(),
        Call::Patch {
            key: "agent:main:w".into(),
            agent_id: "main".into(),
            label: Some(String::new())
        }
    );
    let err = parse_oc("sessions.patch", json!({"key": "w", "model": "x"})).unwrap_err();
    assert!(
        err.message.contains("model is not a session setting"),
        "{}",
        err.message
    );
    let err = parse_as("sessions.label", json!({"key": "w"}), Style::Snake).unwrap_err();
    assert!(err.message.contains("label is required"), "{}", err.message);
    assert!(
        parse_as(
            "sessions.label",
            json!({"key": "w", "label": "L"}),
            Style::Snake
        )
        .is_ok()
    );
}

#[test]
fn delete_refuses_the_main_session() {
    let err = parse_oc("sessions.delete", json!({"key": "main"})).unwrap_err();
    assert!(err.message.contains("Cannot delete the main session"));
    assert_eq!(
        parse_oc(
            "sessions.delete",
            json!({"key": "x", "deleteTranscript": false})
        )
        .unwrap(),
        Call::Delete {
            key: "agent:main:x".into()
        }
    );
    let err = parse_oc("sessions.reset", json!({"key": "x", "reason": "later"})).unwrap_err();
    assert!(err.message.contains("reason must be"));
}

#[test]
fn create_names_a_dashboard_session() {
    let Call::Create { key, agent_id, .. } =
        parse_oc("sessions.create", json!({"agentId": "ops"})).unwrap()
    else {
        panic!("a create");
    };
    assert!(key.starts_with("agent:ops:dashboard:"), "{key}");
    assert_eq!(agent_id, "ops");
    assert!(parse_oc("sessions.create", json!({"message": "hi"})).is_err());
}
