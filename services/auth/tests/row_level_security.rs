//! Row-level security of the auth schema on PostgreSQL, checked directly in
//! SQL as the services' runtime role (no superuser, no `BYPASSRLS`): with
//! rows of two tenants in every tenant-scoped table, nothing is visible without
//! the tenant setting, and a transaction of tenant `a` can neither read,
//! change, delete nor write a row of tenant `b`. Also: every table with a
//! `tenant_id` has a policy, and the `SECURITY DEFINER` lookups are pinned,
//! not executable by PUBLIC, and answer the app role with tenant ids.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Harness;

/// Each tenant-scoped table: name, key column, and an INSERT of one row of
/// tenant `{t}` whose key is `{t}-key`.
const TABLES: &[(&str, &str, &str)] = &[
    (
        "devices",
        "device_id",
        "INSERT INTO devices (device_id, tenant_id, user_id, public_key, created_at, approved_at) \
         VALUES ('{t}-key', '{t}', 'u', 'pk', 1, 1)",
    ),
    (
        "device_pairing_requests",
        "request_id",
        "INSERT INTO device_pairing_requests (request_id, tenant_id, user_id, device_id, \
             public_key, role, reason, created_at, expires_at) \
         VALUES ('{t}-key', '{t}', 'u', '{t}-device', 'pk', 'operator', 'not-paired', 1, \
             9999999999999)",
    ),
    (
        "device_tokens",
        "device_id",
        "INSERT INTO device_tokens (device_id, role, tenant_id, user_id, token_hash, created_at) \
         VALUES ('{t}-key', 'operator', '{t}', 'u', '{t}-hash', 1)",
    ),
    (
        "api_keys",
        "id",
        "INSERT INTO api_keys (id, tenant_id, owner_id, prefix, key_hash, created_at) \
         VALUES ('{t}-key', '{t}', 'u', 'clawgate_', '{t}-hash', 1)",
    ),
    (
        "pairing_codes",
        "request_id",
        "INSERT INTO pairing_codes (request_id, code, tenant_id, user_id, sender_id, channel, \
             created_at, expires_at) \
         VALUES ('{t}-key', '{t}-code', '{t}', 'u', '{t}-sender', 'browser', 1, 9999999999999)",
    ),
    (
        "paired_senders",
        "sender_id",
        "INSERT INTO paired_senders (tenant_id, user_id, sender_id, channel, paired_at, expires_at) \
         VALUES ('{t}', 'u', '{t}-key', 'browser', 1, 9999999999999)",
    ),
    (
        "node_pairing_requests",
        "request_id",
        "INSERT INTO node_pairing_requests (request_id, tenant_id, user_id, node_id, created_at, \
             expires_at) \
         VALUES ('{t}-key', '{t}', 'u', '{t}-key', 1, 9999999999999)",
    ),
    (
        "paired_nodes",
        "node_id",
        "INSERT INTO paired_nodes (tenant_id, node_id, user_id, token_hash, created_at, \
             approved_at) \
         VALUES ('{t}', '{t}-key', 'u', '{t}-hash', 1, 1)",
    ),
    (
        "users",
        "user_id",
        "INSERT INTO users (tenant_id, user_id, role, created_at, updated_at) \
         VALUES ('{t}', '{t}-key', 'operator', 1, 1)",
    ),
    (
        "secrets",
        "name",
        "INSERT INTO secrets (tenant_id, name, key_id, ciphertext, created_at, updated_at) \
         VALUES ('{t}', '{t}-key', 'k', 'c2VhbGVk', 1, 1)",
    ),
];

fn insert(template: &str, tenant: &str) -> String {
    template.replace("{t}", tenant)
}

async fn count(pool_or_tx: impl sqlx::Executor<'_, Database = sqlx::Any>, sql: String) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool_or_tx)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_rows_are_invisible_and_untouchable_across_tenants() {
    let h = Harness::postgres().await;
    let owner = h.db.pool();
    let app = &h.app_db;
    assert!(!app.bypasses_rls().await.unwrap());
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) \
         VALUES ('a', 'a', 'A', 'active', 1, 1), ('b', 'b', 'B', 'active', 1, 1)",
    )
    .execute(owner)
    .await
    .unwrap();
    for (_, _, template) in TABLES {
        for tenant in ["a", "b"] {
            sqlx::query(sqlx::AssertSqlSafe(insert(template, tenant)))
                .execute(owner)
                .await
                .unwrap();
        }
    }

    for (table, key, template) in TABLES {
        // Without the tenant setting: no rows at all, even asked for by tenant.
        assert_eq!(
            count(app.pool(), format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
        assert_eq!(
            count(
                app.pool(),
                format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = 'b'")
            )
            .await,
            0,
            "{table}"
        );
        let forged = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET tenant_id = 'a' WHERE {key} = 'b-key'"
        )))
        .execute(app.pool())
        .await
        .unwrap();
        assert_eq!(forged.rows_affected(), 0, "{table}");

        // Tenant a's transaction: its own row only; b's row cannot be touched.
        let mut tx = app.begin_tenant("a").await.unwrap();
        let keys: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {key} FROM {table}")))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert_eq!(keys, ["a-key"], "{table}");
        for statement in [
            format!("UPDATE {table} SET tenant_id = 'a' WHERE {key} = 'b-key'"),
            format!("UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = 'b'"),
            format!("DELETE FROM {table} WHERE {key} = 'b-key'"),
            format!("DELETE FROM {table} WHERE tenant_id = 'b'"),
        ] {
            let changed = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(changed, 0, "{statement}");
        }
        tx.commit().await.unwrap();
        // Nor can it write a row of b (WITH CHECK), or move its own row to b.
        let mut tx = app.begin_tenant("a").await.unwrap();
        let smuggled = insert(template, "b").replace("b-key", "b-smuggled");
        let smuggled = smuggled.replace("b-hash", "b-smuggled-hash");
        let smuggled = smuggled.replace("b-code", "b-smuggled-code");
        assert!(
            sqlx::query(sqlx::AssertSqlSafe(smuggled))
                .execute(&mut *tx)
                .await
                .is_err(),
            "{table}: inserting a row of another tenant"
        );
        drop(tx);
        let mut tx = app.begin_tenant("a").await.unwrap();
        assert!(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET tenant_id = 'b' WHERE {key} = 'a-key'"
            )))
            .execute(&mut *tx)
            .await
            .is_err(),
            "{table}: moving a row to another tenant"
        );
        drop(tx);

        // As the owner: b's row is intact, and so is a's.
        for tenant in ["a", "b"] {
            assert_eq!(
                count(
                    owner,
                    format!(
                        "SELECT COUNT(*) FROM {table} WHERE tenant_id = '{tenant}' \
                         AND {key} = '{tenant}-key'"
                    )
                )
                .await,
                1,
                "{table}"
            );
        }
        assert_eq!(
            count(owner, format!("SELECT COUNT(*) FROM {table}")).await,
            2,
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_table_has_a_policy_and_lookups_are_narrow() {
    let h = Harness::postgres().await;
    let owner = h.db.pool();

    // Every auth table with a tenant_id column is under row-level security with a policy.
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::TEXT, c.relrowsecurity, \
                EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'auth' AND c.relkind = 'r' AND EXISTS ( \
             SELECT 1 FROM pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
         ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    let mut expected: Vec<&str> = TABLES.iter().map(|(table, _, _)| *table).collect();
    expected.sort_unstable();
    assert_eq!(
        rows.iter().map(|(t, _, _)| t.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        rows.iter().all(|(_, rls, policy)| *rls && *policy),
        "{rows:?}"
    );

    // The SECURITY DEFINER lookups: search_path pinned (pg_temp last), no PUBLIC execute.
    let functions: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT p.proname::TEXT, array_to_string(p.proconfig, ','), \
                p.proacl IS NOT NULL AND NOT EXISTS ( \
                    SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'auth' AND p.prosecdef ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    assert_eq!(
        functions
            .iter()
            .map(|(f, _, _)| f.as_str())
            .collect::<Vec<_>>(),
        [
            "api_key_tenant",
            "connect_facts",
            "device_tenant",
            "latest_code_tenant",
            "paired_sender_tenants",
            "release_device_request",
            "user_removed"
        ]
    );
    for (name, config, no_public) in &functions {
        assert_eq!(config, "search_path=auth, pg_temp", "{name}");
        assert!(no_public, "{name} is executable by PUBLIC");
    }

    // The app role may call them; they answer with a tenant id only.
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) \
         VALUES ('b', 'b', 'B', 'active', 1, 1)",
    )
    .execute(owner)
    .await
    .unwrap();
    for (table, _, template) in TABLES {
        if ["devices", "api_keys", "pairing_codes", "paired_senders"].contains(table) {
            sqlx::query(sqlx::AssertSqlSafe(insert(template, "b")))
                .execute(owner)
                .await
                .unwrap();
        }
    }
    let app = h.app_db.pool();
    for (sql, expected) in [
        ("SELECT device_tenant('b-key')", Some("b")),
        ("SELECT device_tenant('nope')", None),
        ("SELECT api_key_tenant('b-hash')", Some("b")),
        ("SELECT latest_code_tenant('b-sender')", Some("b")),
    ] {
        let found: Option<String> = sqlx::query_scalar(sql).fetch_one(app).await.unwrap();
        assert_eq!(found.as_deref(), expected, "{sql}");
    }
    // The connect read of a paired device: its own rows, of its own tenant.
    let facts: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT d_device_id, d_tenant_id, t_role, tenant_status \
         FROM connect_facts('b-key', 'operator')",
    )
    .fetch_all(app)
    .await
    .unwrap();
    assert_eq!(
        facts,
        [("b-key".into(), "b".into(), None, Some("active".into()))]
    );
    let none: Vec<(String,)> =
        sqlx::query_as("SELECT d_device_id FROM connect_facts('nope', 'operator')")
            .fetch_all(app)
            .await
            .unwrap();
    assert!(none.is_empty());
    let tenants: Vec<String> =
        sqlx::query_scalar("SELECT t FROM paired_sender_tenants('b-key', 'browser', 0) AS s (t)")
            .fetch_all(app)
            .await
            .unwrap();
    assert_eq!(tenants, ["b"]);
    // The global tenants table is readable without a tenant; the default tenant exists.
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(app)
        .await
        .unwrap();
    assert_eq!(ids, ["b", "default"]);
}
