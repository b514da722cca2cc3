use super::*;
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

#[test]
fn chat_send_params() {
    let config = EdgeConfig::default();
    let writer = principal("operator", &[SCOPE_WRITE]);
    let params = json!({"sessionKey": "Main", "message": "hi\u{7}", "idempotencyKey": "k1"});
    match parse("chat.send", &params, &writer, &config) {
        Ok(Some(Call::ChatSend(req))) => {
            assert_eq!(req.session_key, "agent:main:main");
            assert_eq!(req.agent_id, "main");
            assert_eq!(req.message, "hi");
            assert_eq!(req.idempotency_key, "k1");
        }
        other => panic!("{other:?}"),
    }
    let missing = json!({"sessionKey": "main", "message": "hi"});
    let err = parse("chat.send", &missing, &writer, &config).unwrap_err();
    assert!(
        err.message.starts_with("invalid chat.send params: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("idempotencyKey"));
    let typed = json!({"sessionKey": 5, "message": "hi", "idempotencyKey": "k"});
    assert!(parse("chat.send", &typed, &writer, &config).is_err());
    let extra = json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k", "x": 1});
    assert!(
        parse("chat.send", &extra, &writer, &config)
            .unwrap_err()
            .message
            .contains("'x'")
    );
    let routed =
        json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k", "originatingTo": "x"});
    assert!(parse("chat.send", &routed, &writer, &config).is_err());
    assert_eq!(parse("nope", &json!({}), &writer, &config), Ok(None));
}

#[test]
fn other_params() {
    let config = EdgeConfig::default();
    let reader = principal("operator", &[SCOPE_READ]);
    match parse(
        "chat.history",
        &json!({"sessionKey": "x"}),
        &reader,
        &config,
    ) {
        Ok(Some(Call::ChatHistory {
            session_key, limit, ..
        })) => {
            assert_eq!(session_key, "agent:main:x");
            assert_eq!(limit, 200);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse(
            "chat.history",
            &json!({"sessionKey": "x", "limit": 0}),
            &reader,
            &config
        )
        .is_err()
    );
    assert!(parse("chat.abort", &json!({}), &reader, &config).is_err());
    assert!(parse("sessions.list", &json!({"limit": "5"}), &reader, &config).is_err());
    assert!(parse("status", &json!([]), &reader, &config).is_err());
}
