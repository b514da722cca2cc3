use super::*;
use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{AuthClient, ClientInfo};
use std::sync::Arc;

fn service() -> AuthClient {
    AuthClient::local(Arc::new(AuthService::new(AuthConfig {
        gateway_token: GatewayToken::new("s3cret"),
        default_tenant_id: "default".into(),
        default_user_id: "owner".into(),
        owner_ids: vec!["alice".into()],
    })))
}

fn openclaw(token: Option<&str>) -> AuthenticateConnectRequest {
    AuthenticateConnectRequest {
        connection_id: "c1".into(),
        connect: Some(Connect::Openclaw(OpenClawConnect {
            client: Some(ClientInfo {
                id: "cli".into(),
                mode: "cli".into(),
                ..Default::default()
            }),
            scopes: vec!["operator.write".into()],
            token: token.map(str::to_owned),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn goclaw(token: &str, user: &str) -> AuthenticateConnectRequest {
    AuthenticateConnectRequest {
        connection_id: "c2".into(),
        connect: Some(Connect::Goclaw(GoclawConnect {
            token: token.into(),
            user_id: user.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn principal(response: AuthenticateConnectResponse) -> Principal {
    match response.outcome {
        Some(Outcome::Principal(p)) => p,
        other => panic!("expected a principal, got {other:?}"),
    }
}

#[tokio::test]
async fn openclaw_token_gives_default_tenant_and_requested_scopes() {
    let p = principal(
        service()
            .authenticate_connect(&Principal::default(), openclaw(Some("s3cret")))
            .await
            .expect("connect"),
    );
    assert_eq!(p.tenant_id, "default");
    assert_eq!(p.user_id, "owner");
    assert_eq!(p.role, "operator");
    assert_eq!(p.scopes, vec!["operator.write".to_owned()]);
    assert_eq!(p.connection_id, "c1");
}

#[tokio::test]
async fn openclaw_wrong_or_missing_token_is_refused_with_detail_code() {
    let auth = service();
    let err = auth
        .authenticate_connect(&Principal::default(), openclaw(Some("nope")))
        .await
        .expect_err("wrong token");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert_eq!(err.details.expect("details")["code"], "AUTH_TOKEN_MISMATCH");
    let err = auth
        .authenticate_connect(&Principal::default(), openclaw(None))
        .await
        .expect_err("no token");
    assert_eq!(err.details.expect("details")["code"], "AUTH_TOKEN_MISSING");
}

#[tokio::test]
async fn goclaw_roles_follow_owner_ids() {
    let auth = service();
    let alice = principal(
        auth.authenticate_connect(&Principal::default(), goclaw("s3cret", "alice"))
            .await
            .expect("alice"),
    );
    assert_eq!(
        (alice.user_id.as_str(), alice.role.as_str()),
        ("alice", "owner")
    );
    let bob = principal(
        auth.authenticate_connect(&Principal::default(), goclaw("s3cret", "bob"))
            .await
            .expect("bob"),
    );
    assert_eq!((bob.user_id.as_str(), bob.role.as_str()), ("bob", "admin"));
    let err = auth
        .authenticate_connect(&Principal::default(), goclaw("wrong", "bob"))
        .await
        .expect_err("wrong token");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let err = auth
        .authenticate_connect(&Principal::default(), goclaw("", "bob"))
        .await
        .expect_err("no token");
    assert_eq!(err.code, ErrorCode::Unauthorized);
}

#[test]
fn token_is_never_printed() {
    let token = GatewayToken::new("s3cret");
    assert!(!format!("{token:?}").contains("s3cret"));
    assert!(!GatewayToken::new("").matches(""));
}
