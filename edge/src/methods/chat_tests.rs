use super::*;
use crate::methods::decl::parse_with;
use clawgate_proto::principal::{SCOPE_READ, SCOPE_WRITE};

fn principal(role: &str, scopes: &[&str]) -> Principal {
    Principal {
        tenant_id: "t".into(),
        user_id: "u".into(),
        role: role.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn send(params: &Value, principal: &Principal) -> Result<StartRunRequest, ServiceError> {
    parse_with("chat.send", params, Style::Camel, principal, parse_send)
}

/// Whether `method`'s OpenClaw parser refuses `params`.
fn refused(method: &str, params: Value, principal: &Principal) -> bool {
    let declared = crate::methods::find(method).expect("declared");
    let Handler::Call(parse) = declared.handler else {
        panic!("{method} is not a call");
    };
    parse_with(declared.name, &params, Style::Camel, principal, parse).is_err()
}

#[test]
fn chat_send_params() {
    let writer = principal("operator", &[SCOPE_WRITE]);
    let params = json!({"sessionKey": "Main", "message": "hi\u{7}", "idempotencyKey": "k1"});
    match send(&params, &writer) {
        Ok(req) => {
            assert_eq!(req.session_key, "agent:main:main");
            assert_eq!(req.agent_id, "main");
            assert_eq!(req.message, "hi");
            assert_eq!(req.idempotency_key, "k1");
        }
        other => panic!("{other:?}"),
    }
    let missing = json!({"sessionKey": "main", "message": "hi"});
    let err = send(&missing, &writer).unwrap_err();
    assert!(
        err.message.starts_with("invalid chat.send params: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("idempotencyKey"));
    let typed = json!({"sessionKey": 5, "message": "hi", "idempotencyKey": "k"});
    assert!(send(&typed, &writer).is_err());
    let extra = json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k", "x": 1});
    assert!(send(&extra, &writer).unwrap_err().message.contains("'x'"));
    let routed =
        json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k", "originatingTo": "x"});
    assert!(send(&routed, &writer).is_err());
    assert!(crate::methods::find("nope").is_none());
}

#[test]
fn other_params() {
    let reader = principal("operator", &[SCOPE_READ]);
    let params = json!({"sessionKey": "x"});
    match parse_with(
        "chat.history",
        &params,
        Style::Camel,
        &reader,
        parse_history,
    ) {
        Ok(Call::History {
            session_key, limit, ..
        }) => {
            assert_eq!(session_key.as_deref(), Some("agent:main:x"));
            assert_eq!(limit, 200);
        }
        other => panic!("{other:?}"),
    }
    assert!(refused(
        "chat.history",
        json!({"sessionKey": "x", "limit": 0}),
        &reader
    ));
    assert!(refused("chat.abort", json!({}), &reader));
    assert!(refused("sessions.list", json!({"limit": "5"}), &reader));
    assert!(refused("status", json!([]), &reader));
}

fn goclaw_send(params: Value) -> Result<StartRunRequest, ServiceError> {
    let principal = Principal::default();
    parse_with("chat.send", &params, Style::Snake, &principal, parse_send)
}

#[test]
fn goclaw_chat_send_defaults() {
    let req = goclaw_send(json!({"message": "hi"})).expect("valid");
    assert!(
        req.session_key.starts_with("agent:main:ws:direct:"),
        "{}",
        req.session_key
    );
    assert_eq!(req.agent_id, "main");
    assert!(!req.idempotency_key.is_empty());
    let req = goclaw_send(json!({"message": "hi", "agentId": "Ops"})).expect("valid");
    assert!(req.session_key.starts_with("agent:ops:ws:direct:"));
    let req =
        goclaw_send(json!({"message": "hi", "sessionKey": "agent:sales:x", "idempotencyKey": "k"}))
            .expect("valid");
    assert_eq!(
        (req.agent_id.as_str(), req.idempotency_key.as_str()),
        ("sales", "k")
    );
    assert!(goclaw_send(json!({})).is_err());
    assert!(goclaw_send(json!({"message": 1})).is_err());
}
