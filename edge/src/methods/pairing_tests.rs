use super::*;
use crate::methods::decl::parse_with;

/// Parses as a connection of `style` would: `Ok(None)` for a method its
/// dialect is not offered.
fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let Some(declared) = METHODS.iter().find(|m| m.name == method) else {
        return Ok(None);
    };
    let offered = match style {
        Style::Camel => declared.openclaw.is_some(),
        Style::Snake => declared.goclaw.is_some(),
    };
    if !offered {
        return Ok(None);
    }
    let principal = Principal::default();
    parse_with(
        declared.name,
        params,
        style,
        &principal,
        |request| match style {
            Style::Camel => parse_openclaw(request),
            Style::Snake => parse_goclaw(request),
        },
    )
}

fn openclaw(method: &str, params: Value) -> Result<Option<Call>, ServiceError> {
    parse(method, &params, Style::Camel)
}

fn goclaw(method: &str, params: Value) -> Result<Option<Call>, ServiceError> {
    parse(method, &params, Style::Snake)
}

#[test]
fn openclaw_params_are_closed_and_required() {
    assert_eq!(
        openclaw("device.pair.list", json!({})),
        Ok(Some(Call::List))
    );
    assert!(openclaw("device.pair.list", json!({"x": 1})).is_err());
    assert_eq!(
        openclaw("device.pair.approve", json!({"requestId": "r"})),
        Ok(Some(Call::Approve {
            request_id: "r".into(),
            code: String::new(),
        }))
    );
    assert!(openclaw("device.pair.reject", json!({})).is_err());
    assert!(openclaw("device.pair.approve", json!({"requestId": ""})).is_err());
    assert!(openclaw("device.pair.remove", json!({"deviceId": "d", "x": 1})).is_err());
    assert_eq!(
        openclaw(
            "device.token.rotate",
            json!({"deviceId": "d", "role": "operator"})
        ),
        Ok(Some(Call::Rotate {
            device_id: "d".into(),
            role: "operator".into(),
            scopes: Vec::new()
        }))
    );
    assert!(openclaw("device.token.revoke", json!({"deviceId": "d"})).is_err());
    // goclaw's methods are unknown to OpenClaw connections, and the other way round.
    assert_eq!(openclaw("device.pair.request", json!({})), Ok(None));
    assert_eq!(goclaw("device.token.rotate", json!({})), Ok(None));
}

#[test]
fn goclaw_parameter_names() {
    assert_eq!(
        goclaw(
            "device.pair.request",
            json!({"senderId": "s1", "channel": "telegram", "chatId": "c", "accountId": "a"})
        ),
        Ok(Some(Call::Request {
            sender_id: "s1".into(),
            channel: "telegram".into(),
            chat_id: "c".into(),
            account_id: "a".into(),
        }))
    );
    assert_eq!(
        goclaw(
            "device.pair.approve",
            json!({"code": "abcd2345", "approvedBy": "x"})
        ),
        Ok(Some(Call::Approve {
            request_id: String::new(),
            code: "ABCD2345".into()
        }))
    );
    assert_eq!(
        goclaw("device.pair.revoke", json!({"senderId": "s1"})),
        Ok(Some(Call::RevokeSender {
            sender_id: "s1".into(),
            channel: "browser".into()
        }))
    );
    assert_eq!(
        goclaw("browser.pairing.status", json!({"sender_id": "s1", "x": 1})),
        Ok(Some(Call::Status {
            sender_id: "s1".into()
        }))
    );
    assert!(goclaw("browser.pairing.status", json!({"senderId": "s1"})).is_err());
    assert!(goclaw("device.pair.approve", json!({})).is_err());
}

#[test]
fn token_summaries_hold_no_secret() {
    let token = DeviceTokenInfo {
        device_id: "d".into(),
        role: "operator".into(),
        created_at_ms: 1,
        revoked_at_ms: 2,
        token: "secret".into(),
        ..Default::default()
    };
    let summary = token_summary(&token);
    assert!(!summary.to_string().contains("secret"));
    assert_eq!(summary["revokedAtMs"], 2);
    assert!(summary.get("rotatedAtMs").is_none());
}
