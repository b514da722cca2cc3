//! What the behaviour suite cannot see through the API: the stored rows after a
//! soft delete, the schema's append-only guard, re-running migrations, and a
//! gRPC server refusing a call that carries no principal at all.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use clawgate_proto::pb::session::v1::session_service_client::SessionServiceClient;
use clawgate_proto::session::{AppendMessageRequest, DeleteSessionRequest, GetSessionRequest};
use clawgate_proto::{ErrorCode, ServiceError};
use clawgate_runtime::db::Database;
use clawgate_session::{SCHEMA, SessionService};
use support::{Harness, principal};

async fn transcript_survives_soft_delete_and_cannot_be_rewritten(harness: Harness) {
    let api = harness.api();
    let alice = principal("t1", "alice");
    for content in ["one", "two"] {
        api.append_message(
            &alice,
            AppendMessageRequest {
                session_key: "main".into(),
                role: "user".into(),
                content: content.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let deleted = api
        .delete_session(
            &alice,
            DeleteSessionRequest {
                session_key: "main".into(),
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted);

    let db = Database::connect(harness.database_url(), SCHEMA)
        .await
        .unwrap();
    let kept: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id \
         WHERE s.session_key = 'main' AND s.deleted_at IS NOT NULL",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(kept, 2);
    for statement in [
        "UPDATE messages SET content = 'rewritten'",
        "DELETE FROM messages",
    ] {
        let refused = sqlx::query(statement).execute(db.pool()).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_transcript_survives_soft_delete_and_cannot_be_rewritten() {
    transcript_survives_soft_delete_and_cannot_be_rewritten(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_transcript_survives_soft_delete_and_cannot_be_rewritten() {
    transcript_survives_soft_delete_and_cannot_be_rewritten(Harness::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_rerun_cleanly_on_both_backends() {
    for harness in [Harness::sqlite().await, Harness::postgres().await] {
        let again = SessionService::connect(harness.database_url())
            .await
            .unwrap();
        again.migrate().await.unwrap();
        again.migrate().await.unwrap();
        again.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_database_urls_are_errors_without_secrets() {
    let err = SessionService::connect("mysql://app:hunter2@db/x")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(!err.message.contains("hunter2"));
    let err = SessionService::connect("postgres://app:hunter2@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.retryable);
    assert!(!err.message.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_server_refuses_a_call_without_principal() {
    let harness = Harness::grpc().await;
    let addr = harness.grpc_addr().unwrap();
    let mut raw = SessionServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let status = raw
        .get_session(GetSessionRequest {
            session_key: "main".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(ServiceError::from(status).code, ErrorCode::Unauthorized);

    // The same server serves the same call once a principal is attached.
    let alice = principal("t1", "alice");
    let found = harness
        .api()
        .get_session(
            &alice,
            GetSessionRequest {
                session_key: "main".into(),
            },
        )
        .await;
    assert_eq!(found.unwrap_err().code, ErrorCode::NotFound);
}
