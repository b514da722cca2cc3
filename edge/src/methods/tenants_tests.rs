use super::*;

fn call(method: &str, params: Value, style: Style) -> Result<Option<Call>, ServiceError> {
    parse(method, &params, style)
}

#[test]
fn tenant_params() {
    assert_eq!(
        call("tenants.list", json!({}), Style::Camel),
        Ok(Some(Call::List))
    );
    assert!(call("tenants.list", json!({"x": 1}), Style::Camel).is_err());
    assert_eq!(
        call("tenants.list", json!({"x": 1}), Style::Snake),
        Ok(Some(Call::List)),
        "goclaw ignores unknown keys"
    );
    assert_eq!(
        call("tenants.get", json!({"tenant_id": "t2"}), Style::Snake),
        Ok(Some(Call::Get {
            tenant_id: "t2".into()
        }))
    );
    assert_eq!(
        call("tenants.get", json!({"tenantId": "t2"}), Style::Snake),
        Ok(Some(Call::Get {
            tenant_id: "t2".into()
        }))
    );
    assert_eq!(
        call("tenants.get", json!({}), Style::Camel),
        Ok(Some(Call::Get {
            tenant_id: String::new()
        }))
    );
    assert!(call("tenants.get", json!({"tenant_id": "t2"}), Style::Camel).is_err());
    let err = call("tenants.get", json!({"tenantId": 5}), Style::Camel).unwrap_err();
    assert_eq!(
        err.message,
        "invalid tenants.get params: at /tenantId: must be string"
    );
    assert_eq!(
        call(
            "tenants.create",
            json!({"slug": "acme", "name": " Acme "}),
            Style::Camel
        ),
        Ok(Some(Call::Create {
            id: String::new(),
            slug: "acme".into(),
            name: "Acme".into()
        }))
    );
    let err = call("tenants.create", json!({"name": "Acme"}), Style::Snake).unwrap_err();
    assert!(
        err.message.contains("required property 'slug'"),
        "{}",
        err.message
    );
    assert!(
        call(
            "tenants.create",
            json!({"slug": "", "name": "n"}),
            Style::Snake
        )
        .is_err()
    );
    assert!(
        call(
            "tenants.create",
            json!({"slug": "s".repeat(MAX_ID_CHARS + 1), "name": "n"}),
            Style::Snake
        )
        .is_err()
    );
    assert_eq!(
        call(
            "tenants.update",
            json!({"tenantId": "t", "status": "disabled"}),
            Style::Camel
        ),
        Ok(Some(Call::Update {
            tenant_id: "t".into(),
            name: None,
            status: Some("disabled".into())
        }))
    );
    let err = call(
        "tenants.update",
        json!({"tenantId": "t", "status": "gone"}),
        Style::Camel,
    )
    .unwrap_err();
    assert!(
        err.message.contains("/status: must be equal to one of"),
        "{}",
        err.message
    );
    assert!(call("tenants.update", json!({"name": "n"}), Style::Camel).is_err());
    assert!(
        call(
            "tenants.update",
            json!({"tenantId": "t", "name": ""}),
            Style::Camel
        )
        .is_err()
    );
    assert_eq!(call("chat.send", json!({}), Style::Camel), Ok(None));
}

#[test]
fn user_params_per_dialect() {
    let snake =
        json!({"tenant_id": "t", "user_id": "carol", "role": "operator", "display_name": "Carol"});
    let expected = Call::AddUser {
        tenant_id: "t".into(),
        user_id: "carol".into(),
        role: "operator".into(),
        display_name: "Carol".into(),
    };
    assert_eq!(
        call("tenants.users.add", snake.clone(), Style::Snake),
        Ok(Some(expected.clone()))
    );
    let err = call("tenants.users.add", snake, Style::Camel).unwrap_err();
    assert!(
        err.message.contains("unexpected property"),
        "{}",
        err.message
    );
    let camel =
        json!({"tenantId": "t", "userId": "carol", "role": "operator", "displayName": "Carol"});
    assert_eq!(
        call("tenants.users.add", camel.clone(), Style::Camel),
        Ok(Some(expected.clone()))
    );
    assert_eq!(
        call("tenants.users.add", camel, Style::Snake),
        Ok(Some(expected)),
        "goclaw takes camelCase too"
    );
    let err = call(
        "tenants.users.add",
        json!({"userId": "carol", "role": "owner"}),
        Style::Camel,
    )
    .unwrap_err();
    assert!(err.message.contains("/role"), "{}", err.message);
    assert!(
        call(
            "tenants.users.add",
            json!({"userId": "carol"}),
            Style::Camel
        )
        .is_err()
    );
    assert!(call("tenants.users.add", json!({"role": "viewer"}), Style::Snake).is_err());
    assert_eq!(
        call(
            "tenants.users.remove",
            json!({"user_id": "carol"}),
            Style::Snake
        ),
        Ok(Some(Call::RemoveUser {
            tenant_id: String::new(),
            user_id: "carol".into()
        }))
    );
    let err = call("tenants.users.remove", json!({"userId": ""}), Style::Camel).unwrap_err();
    assert_eq!(
        err.message,
        "invalid tenants.users.remove params: at /userId: must NOT have fewer than 1 characters"
    );
    assert_eq!(
        call("tenants.users.list", json!({}), Style::Camel),
        Ok(Some(Call::ListUsers {
            tenant_id: String::new()
        }))
    );
}

#[test]
fn answers_per_dialect() {
    let tenant = Tenant {
        id: "t".into(),
        slug: "acme".into(),
        created_at_ms: 5,
        ..Default::default()
    };
    assert_eq!(tenant_json(&tenant, Style::Camel)["createdAtMs"], 5);
    assert_eq!(tenant_json(&tenant, Style::Snake)["created_at_ms"], 5);
    let user = User {
        tenant_id: "t".into(),
        user_id: "carol".into(),
        display_name: "Carol".into(),
        ..Default::default()
    };
    let camel = user_json(&user, Style::Camel);
    assert_eq!(
        (camel["userId"].as_str(), camel["displayName"].as_str()),
        (Some("carol"), Some("Carol"))
    );
    let snake = user_json(&user, Style::Snake);
    assert_eq!(
        (snake["user_id"].as_str(), snake["tenant_id"].as_str()),
        (Some("carol"), Some("t"))
    );
}
