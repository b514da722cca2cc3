//! What the behaviour suite cannot see through the API: the stored rows after a
//! soft delete, the schema's append-only guard, row-level security for the app
//! role, the retention purge, re-running migrations, and a gRPC server refusing
//! a call that carries no principal at all.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use std::time::Duration;

use clawgate_proto::pb::session::v1::session_service_client::SessionServiceClient;
use clawgate_proto::session::{
    AppendMessageRequest, DeleteSessionRequest, GetSessionRequest, SessionApi,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::db::{Backend, Database};
use clawgate_session::{SCHEMA, SessionService};
use support::{Harness, append, principal};
use tokio_util::sync::CancellationToken;

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

/// The internal id of `user`'s session `key` in `tenant` and the id of its first message.
async fn ids_of(owner: &Database, tenant: &str, key: &str) -> (String, String) {
    let row: (String, String) = sqlx::query_as(
        "SELECT s.id, m.id FROM sessions s JOIN messages m ON m.session_id = s.id \
         WHERE s.tenant_id = $1 AND s.session_key = $2 ORDER BY m.seq LIMIT 1",
    )
    .bind(tenant)
    .bind(key)
    .fetch_one(owner.pool())
    .await
    .unwrap();
    row
}

/// Runs `statement` in a transaction of the app role with `app.tenant_id` forged
/// to `tenant` (if any): the rows it changed, or the error.
async fn as_tenant(
    app: &Database,
    tenant: Option<&str>,
    statement: &str,
) -> Result<u64, sqlx::Error> {
    let mut tx = app.pool().begin().await?;
    if let Some(tenant) = tenant {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
    }
    let changed = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(changed)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_row_level_security_confines_the_app_role_to_its_tenant() {
    let harness = Harness::postgres().await;
    let api = harness.api();
    for tenant in ["tenant-a", "tenant-b"] {
        append(
            api,
            &principal(tenant, "u"),
            "main",
            "user",
            &format!("{tenant} secret"),
        )
        .await;
    }
    let owner = harness.owner_database().await;
    let (b_session, b_message) = ids_of(&owner, "tenant-b", "main").await;
    let (a_session, _) = ids_of(&owner, "tenant-a", "main").await;
    let app = Database::connect(harness.service_url(), SCHEMA)
        .await
        .unwrap();
    assert!(!app.bypasses_rls().await.unwrap());

    // Without the tenant setting no row is visible, not even by tenant or id.
    for query in [
        "SELECT COUNT(*) FROM sessions",
        "SELECT COUNT(*) FROM messages",
        "SELECT COUNT(*) FROM sessions WHERE tenant_id = 'tenant-b'",
        "SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id",
    ] {
        let count: i64 = sqlx::query_scalar(query)
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(count, 0, "{query}");
    }
    // With it, that tenant's rows only.
    let mut tx = app.begin_tenant("tenant-a").await.unwrap();
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT tenant_id FROM sessions UNION ALL SELECT tenant_id FROM messages",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(tenants, ["tenant-a", "tenant-a"]);
    tx.commit().await.unwrap();

    // Forged to tenant A, statements addressing B's rows by id change nothing.
    let a = Some("tenant-a");
    for statement in [
        format!("UPDATE sessions SET label = 'forged', deleted_at = 1 WHERE id = '{b_session}'"),
        format!("DELETE FROM sessions WHERE id = '{b_session}'"),
        format!("UPDATE messages SET content = 'forged' WHERE id = '{b_message}'"),
        format!("DELETE FROM messages WHERE id = '{b_message}'"),
        "UPDATE sessions SET label = 'forged' WHERE tenant_id = 'tenant-b'".to_owned(),
    ] {
        assert_eq!(
            as_tenant(&app, a, &statement).await.unwrap(),
            0,
            "{statement}"
        );
    }
    // Rows for B (or for nobody) are refused, also by moving A's row to B.
    let now = clawgate_runtime::clock::now_ms();
    for (tenant, statement) in [
        (
            a,
            format!(
                "INSERT INTO sessions (id, tenant_id, user_id, session_key, created_at, updated_at) \
             VALUES ('smuggled', 'tenant-b', 'u', 'x', {now}, {now})"
            ),
        ),
        (
            a,
            format!(
                "INSERT INTO messages (id, session_id, tenant_id, user_id, session_key, seq, role, \
                                   content, status, created_at) \
             VALUES ('smuggled', '{b_session}', 'tenant-b', 'u', 'main', 9, 'user', 'x', 1, {now})"
            ),
        ),
        (
            a,
            format!("UPDATE sessions SET tenant_id = 'tenant-b' WHERE id = '{a_session}'"),
        ),
        (
            None,
            format!(
                "INSERT INTO sessions (id, tenant_id, user_id, session_key, created_at, updated_at) \
             VALUES ('nobodys', 'tenant-a', 'u', 'x', {now}, {now})"
            ),
        ),
        (
            a,
            "ALTER TABLE sessions DISABLE ROW LEVEL SECURITY".to_owned(),
        ),
    ] {
        assert!(
            as_tenant(&app, tenant, &statement).await.is_err(),
            "{statement} was allowed"
        );
    }

    // The superuser sees B's rows exactly as written.
    let (label, deleted_at, content): (String, Option<i64>, String) = sqlx::query_as(
        "SELECT s.label, s.deleted_at, m.content FROM sessions s JOIN messages m ON m.session_id = s.id \
         WHERE s.id = $1",
    )
    .bind(&b_session)
    .fetch_one(owner.pool())
    .await
    .unwrap();
    assert_eq!(
        (label.as_str(), deleted_at, content.as_str()),
        ("", None, "tenant-b secret")
    );
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM messages)")
            .fetch_one(owner.pool())
            .await
            .unwrap();
    assert_eq!(counts, (2, 2));
    app.close().await;
    owner.close().await;
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn delete(api: &dyn SessionApi, who: &Principal, key: &str) {
    let request = DeleteSessionRequest {
        session_key: key.into(),
    };
    assert!(api.delete_session(who, request).await.unwrap().deleted);
}

/// Alice (t1) and Bob (t2) each have a session "old", deleted 31 days ago;
/// Alice also "recent", deleted now, and "live".
async fn seed_retention(harness: &Harness) -> Database {
    let api = harness.api();
    let (alice, bob) = (principal("t1", "alice"), principal("t2", "bob"));
    for (who, key, messages) in [
        (&alice, "old", 2),
        (&bob, "old", 1),
        (&alice, "recent", 1),
        (&alice, "live", 1),
    ] {
        for i in 0..messages {
            append(api, who, key, "user", &format!("{key} {i}")).await;
        }
    }
    for (who, key) in [(&alice, "old"), (&bob, "old"), (&alice, "recent")] {
        delete(api, who, key).await;
    }
    let owner = harness.owner_database().await;
    sqlx::query("UPDATE sessions SET deleted_at = deleted_at - $1 WHERE session_key = 'old'")
        .bind(31 * DAY_MS)
        .execute(owner.pool())
        .await
        .unwrap();
    owner
}

/// (session key, deleted?, message count) of every stored session, by key.
async fn stored(owner: &Database) -> Vec<(String, bool, i64)> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT s.session_key, CASE WHEN s.deleted_at IS NULL THEN 0 ELSE 1 END, \
                (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) \
         FROM sessions s ORDER BY s.session_key",
    )
    .fetch_all(owner.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(key, deleted, count)| (key, deleted != 0, count))
        .collect()
}

async fn retention_purges_only_expired_deletions(harness: Harness) {
    let owner = seed_retention(&harness).await;
    // The service runs as the app role on PostgreSQL: the purge spans tenants anyway.
    let service = harness.service();
    assert_eq!(
        service.retention(),
        clawgate_session::retention::DEFAULT_RETENTION
    );
    assert_eq!(service.purge_expired().await.unwrap(), 2);
    let key = |k: &str, deleted, count| (k.to_owned(), deleted, count);
    assert_eq!(
        stored(&owner).await,
        [key("live", false, 1), key("recent", true, 1)]
    );
    assert_eq!(service.purge_expired().await.unwrap(), 0);

    // A shorter retention reaches the recent deletion, never a live session.
    let eager = service.clone().with_retention(Duration::ZERO);
    assert_eq!(eager.purge_expired().await.unwrap(), 1);
    assert_eq!(stored(&owner).await, [key("live", false, 1)]);
    let alice = principal("t1", "alice");
    assert_eq!(
        support::messages(harness.api(), &alice, "live").await.len(),
        1
    );

    // The transcript is still append-only, even for the owner with a forged purge
    // cutoff: no UPDATE, no DELETE of a live session's messages or of the session.
    let forge = match owner.backend() {
        Backend::Postgres => "SELECT set_config('clawgate.purge_before', '9000000000000000', true)",
        Backend::Sqlite => "INSERT INTO purge_window (before) VALUES (9000000000000000)",
    };
    for statement in [
        "UPDATE messages SET content = 'rewritten'",
        "DELETE FROM messages",
        "DELETE FROM sessions",
    ] {
        let mut tx = owner.pool().begin().await.unwrap();
        sqlx::query(forge).execute(&mut *tx).await.unwrap();
        let refused = sqlx::query(statement).execute(&mut *tx).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_eq!(stored(&owner).await, [key("live", false, 1)]);
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_retention_purges_only_expired_deletions() {
    retention_purges_only_expired_deletions(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_retention_purges_only_expired_deletions() {
    retention_purges_only_expired_deletions(Harness::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_app_role_cannot_delete_even_a_deleted_transcript_itself() {
    let harness = Harness::postgres().await;
    let owner = seed_retention(&harness).await;
    let app = Database::connect(harness.service_url(), SCHEMA)
        .await
        .unwrap();
    for statement in [
        "DELETE FROM messages",
        "DELETE FROM sessions WHERE deleted_at IS NOT NULL",
    ] {
        let mut tx = app.begin_tenant("t1").await.unwrap();
        sqlx::query("SELECT set_config('clawgate.purge_before', '9000000000000000', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let refused = sqlx::query(statement).execute(&mut *tx).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    assert_eq!(stored(&owner).await.len(), 4);
    app.close().await;
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_task_purges_periodically_and_survives_errors() {
    for harness in [Harness::sqlite().await, Harness::postgres().await] {
        let owner = seed_retention(&harness).await;
        let shutdown = CancellationToken::new();
        let task = harness
            .service()
            .spawn_retention(Duration::from_millis(20), shutdown.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stored(&owner).await.len() != 2 {
            assert!(tokio::time::Instant::now() < deadline, "nothing was purged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        owner.close().await;
    }

    // A database that fails every purge: the task keeps going until shut down.
    let harness = Harness::sqlite().await;
    let service = harness.service().clone();
    service.close().await;
    let shutdown = CancellationToken::new();
    let task = service.spawn_retention(Duration::from_millis(5), shutdown.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A non-superuser role that owns the schema, as in a deployment that keeps the
/// superuser out of it: the migrations, the grant and the purge work for it.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_migrates_and_purges_with_a_non_superuser_owner() {
    const OWNER_ROLE: &str = "clawgate_test_owner";
    let database = clawgate_runtime::db::testing::fresh_postgres_url()
        .await
        .unwrap();
    let superuser = Database::connect(database.url(), "public").await.unwrap();
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(OWNER_ROLE)
        .fetch_optional(superuser.pool())
        .await
        .unwrap();
    if exists.is_none() {
        let created = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS"
        )))
        .execute(superuser.pool())
        .await;
        // Another run may have created it at the same moment.
        if let Err(err) = created {
            let code = err.as_database_error().and_then(|e| e.code());
            assert!(matches!(code.as_deref(), Some("42710" | "23505")), "{err}");
        }
    }
    let database_name: String = sqlx::query_scalar("SELECT current_database()::TEXT")
        .fetch_one(superuser.pool())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT CREATE ON DATABASE \"{database_name}\" TO {OWNER_ROLE}"
    )))
    .execute(superuser.pool())
    .await
    .unwrap();

    let app_url = support::app_role_url(database.url()).await;
    let app_role_prefix = format!("{}@", clawgate_runtime::db::testing::TEST_APP_ROLE);
    let owner_url = app_url.replacen(&app_role_prefix, &format!("{OWNER_ROLE}@"), 1);
    let owner = SessionService::connect(&owner_url).await.unwrap();
    owner.migrate().await.unwrap();
    owner
        .grant_to_app_role(clawgate_runtime::db::testing::TEST_APP_ROLE)
        .await
        .unwrap();
    let app = SessionService::connect(&app_url).await.unwrap();
    let alice = principal("t1", "alice");
    append(&app, &alice, "old", "user", "bye").await;
    append(&app, &alice, "live", "user", "hi").await;
    delete(&app, &alice, "old").await;
    sqlx::query("UPDATE session.sessions SET deleted_at = deleted_at - $1")
        .bind(31 * DAY_MS)
        .execute(superuser.pool())
        .await
        .unwrap();
    assert_eq!(app.purge_expired().await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT s.session_key FROM session.sessions s JOIN session.messages m ON m.session_id = s.id",
    )
    .fetch_all(superuser.pool())
    .await
    .unwrap();
    assert_eq!(left, ["live"]);
    app.close().await;
    owner.close().await;
    superuser.close().await;
}
