//! Tenant-scoped transactions and the database role the services run as.
//!
//! Row-level security on PostgreSQL keys every tenant-scoped table on the
//! transaction-local setting [`TENANT_SETTING`]. This module owns setting it and
//! granting the services' runtime role what it needs.
//!
//! Invariants:
//! - [`Database::begin_tenant`] (and its bookkeeping variant) is the only
//!   place that sets [`TENANT_SETTING`], always transaction-local
//!   (`set_config(…, true)`, in the `BEGIN` itself for a tenant id of plain
//!   characters, else bound as a parameter), so a pooled connection
//!   never carries one caller's tenant into another caller's transaction; an
//!   empty tenant is refused before any SQL runs;
//! - with the setting absent or empty the policies match no row (they compare
//!   with `NULLIF(current_setting(…, true), '')`, which is NULL then);
//! - the runtime role gets data rights only (no DDL, no ownership), so it can
//!   neither bypass nor drop the policies; [`Database::bypasses_rls`] tells a
//!   service when it was started with a role that would bypass them (including
//!   the tables' owner: policies are enabled, not forced);
//! - on SQLite the setting does not exist: the stores' own `tenant_id` filters
//!   enforce the same rules there (and on PostgreSQL as well, belt and braces).

use sqlx::{AssertSqlSafe, Executor as _};

use super::{Backend, Database, DbError, service_error};
use crate::ServiceError;

/// The PostgreSQL setting the row-level security policies compare `tenant_id` with.
pub const TENANT_SETTING: &str = "app.tenant_id";

/// A transaction on a service's pool.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Database {
    /// Begins a transaction in which only `tenant_id`'s rows are visible
    /// (PostgreSQL row-level security); on SQLite a plain transaction.
    pub async fn begin_tenant(&self, tenant_id: &str) -> Result<Tx, ServiceError> {
        if tenant_id.is_empty() {
            return Err(ServiceError::internal(
                "tenant-scoped query without a tenant",
            ));
        }
        if self.backend() != Backend::Postgres {
            return self.pool().begin().await.map_err(service_error);
        }
        self.begin_postgres_tenant(tenant_id, false).await
    }

    /// A PostgreSQL transaction with [`TENANT_SETTING`] set to `tenant_id`
    /// (and, for `bookkeeping`, commits not waiting for the WAL flush). A
    /// tenant id of plain characters is set in the `BEGIN` itself (one round
    /// trip); any other is bound as a parameter of a statement of its own.
    async fn begin_postgres_tenant(
        &self,
        tenant_id: &str,
        bookkeeping: bool,
    ) -> Result<Tx, ServiceError> {
        let plain = tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
        let sync = if bookkeeping {
            ", set_config('synchronous_commit', 'off', true)"
        } else {
            ""
        };
        if plain {
            // Only the characters above are spliced in, inside quotes: no
            // quote, backslash or other character can end the literal.
            let begin =
                format!("BEGIN; SELECT set_config('{TENANT_SETTING}', '{tenant_id}', true){sync}");
            return self
                .pool()
                .begin_with(AssertSqlSafe(begin))
                .await
                .map_err(service_error);
        }
        let mut tx = self.pool().begin().await.map_err(service_error)?;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT set_config($1, $2, true){sync}"
        )))
        .bind(TENANT_SETTING)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        Ok(tx)
    }

    /// Like [`begin_tenant`](Self::begin_tenant), for bookkeeping writes whose
    /// loss in a crash is harmless (last-seen times): on PostgreSQL its commit
    /// does not wait for the WAL flush (`synchronous_commit = off` for this
    /// transaction only). The write stays atomic and ordered; a crash may lose
    /// the last few hundred milliseconds of such commits, never corrupt them.
    pub async fn begin_tenant_bookkeeping(&self, tenant_id: &str) -> Result<Tx, ServiceError> {
        if self.backend() != Backend::Postgres {
            return self.begin_tenant_write(tenant_id).await;
        }
        if tenant_id.is_empty() {
            return Err(ServiceError::internal(
                "tenant-scoped query without a tenant",
            ));
        }
        self.begin_postgres_tenant(tenant_id, true).await
    }

    /// Like [`begin_tenant`](Self::begin_tenant), for a transaction that will
    /// write after reading: on SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers never both read and then fail to
    /// upgrade their lock.
    pub async fn begin_tenant_write(&self, tenant_id: &str) -> Result<Tx, ServiceError> {
        match self.backend() {
            Backend::Postgres => self.begin_tenant(tenant_id).await,
            Backend::Sqlite => {
                if tenant_id.is_empty() {
                    return Err(ServiceError::internal(
                        "tenant-scoped query without a tenant",
                    ));
                }
                self.pool()
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(service_error)
            }
        }
    }

    /// Begins a transaction without a tenant: only tables that are not
    /// tenant-scoped (and `SECURITY DEFINER` lookups) return rows in it.
    pub async fn begin(&self) -> Result<Tx, ServiceError> {
        self.pool().begin().await.map_err(service_error)
    }

    /// Like [`begin`](Self::begin), for a transaction that will write after
    /// reading: on SQLite it takes the write lock up front (`BEGIN IMMEDIATE`).
    pub async fn begin_write(&self) -> Result<Tx, ServiceError> {
        match self.backend() {
            Backend::Postgres => self.begin().await,
            Backend::Sqlite => self
                .pool()
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(service_error),
        }
    }

    /// Grants `role` the data rights on this service's schema: usage, `SELECT,
    /// INSERT, UPDATE, DELETE` on its tables and `EXECUTE` on its functions (now
    /// and for objects created later by the migrating role). PostgreSQL only;
    /// run after the migrations, by the role that owns the schema.
    pub async fn grant_to_app_role(&self, role: &str) -> Result<(), DbError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        validate_role(role)?;
        let schema = &self.schema;
        let statements = [
            format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""
            ),
            format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{schema}\" TO \"{role}\""),
            format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA \"{schema}\" \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"{role}\""
            ),
        ];
        for statement in statements {
            self.pool().execute(AssertSqlSafe(statement)).await?;
        }
        Ok(())
    }

    /// Whether the connected role bypasses row-level security: a superuser, a
    /// `BYPASSRLS` role, or the owner of this service's tables (policies are
    /// enabled, not forced, so the migrating owner is not subject to them).
    /// Always false on SQLite.
    pub async fn bypasses_rls(&self) -> Result<bool, ServiceError> {
        if self.backend() != Backend::Postgres {
            return Ok(false);
        }
        sqlx::query_scalar::<_, bool>(
            "SELECT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
                 OR EXISTS (SELECT 1 FROM pg_tables
                            WHERE schemaname = $1 AND tableowner = current_user)",
        )
        .bind(&self.schema)
        .fetch_one(self.pool())
        .await
        .map_err(service_error)
    }

    /// Logs a warning when the connected role bypasses row-level security, so a
    /// deployment that runs services as a superuser is visible in the logs.
    pub async fn warn_if_bypassing_rls(&self) {
        match self.bypasses_rls().await {
            Ok(true) => tracing::warn!(
                schema = %self.schema,
                "the database role of this service bypasses row-level security; \
                 run services as a role without SUPERUSER/BYPASSRLS (see `clawgate migrate --app-role`)"
            ),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "could not check the database role"),
        }
    }
}

/// Commits `tx`, mapping a failure like any other query error.
pub async fn commit(tx: Tx) -> Result<(), ServiceError> {
    tx.commit().await.map_err(service_error)
}

/// A role name safe to quote: `[a-z_][a-z0-9_]*`, at most 63 bytes.
fn validate_role(role: &str) -> Result<(), DbError> {
    let mut chars = role.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && role.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(DbError::InvalidRole(role.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::{app_role_url, fresh_postgres_url, fresh_sqlite_url};
    use super::*;

    const POLICY_TABLE: &str = "CREATE TABLE notes (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL CHECK (tenant_id <> ''),
            body TEXT NOT NULL)";

    #[test]
    fn role_names_are_checked() {
        assert!(validate_role("clawgate_app").is_ok());
        assert!(validate_role("x\"; DROP ROLE postgres; --").is_err());
        assert!(validate_role("").is_err());
    }

    #[tokio::test]
    async fn empty_tenant_is_refused() {
        let test_db = fresh_sqlite_url().unwrap();
        let db = Database::connect(test_db.url(), "demo").await.unwrap();
        assert!(db.begin_tenant("").await.is_err());
        assert!(db.begin_tenant_write("").await.is_err());
        assert!(!db.bypasses_rls().await.unwrap());
    }

    #[tokio::test]
    async fn policies_follow_the_transaction_tenant_for_the_app_role() {
        let test_db = fresh_postgres_url().await.unwrap();
        let owner = Database::connect(test_db.url(), "demo").await.unwrap();
        assert!(
            owner.bypasses_rls().await.unwrap(),
            "tests migrate as a superuser"
        );
        for statement in [
            POLICY_TABLE,
            "ALTER TABLE notes ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_rows ON notes
                USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
                WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))",
            "INSERT INTO notes VALUES ('a1', 'a', 'alpha'), ('b1', 'b', 'beta')",
        ] {
            owner.pool().execute(statement).await.unwrap();
        }
        let app_url = app_role_url(test_db.url()).await.unwrap();
        owner.grant_to_app_role("clawgate_app").await.unwrap();
        let app = Database::connect(&app_url, "demo").await.unwrap();
        assert!(!app.bypasses_rls().await.unwrap());

        // No tenant setting: no rows at all.
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(count, 0);

        // Tenant a sees its row only, and cannot touch b's row by id.
        let mut tx = app.begin_tenant("a").await.unwrap();
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM notes")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(ids, ["a1"]);
        let changed = sqlx::query("UPDATE notes SET body = 'forged' WHERE id = 'b1'")
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 0);
        let inserted = sqlx::query("INSERT INTO notes VALUES ('b2', 'b', 'smuggled')")
            .execute(&mut *tx)
            .await;
        assert!(inserted.is_err(), "WITH CHECK refuses another tenant's row");
        drop(tx);

        // The setting does not outlive its transaction on the pooled connection.
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(count, 0);
        let body: String = sqlx::query_scalar("SELECT body FROM notes WHERE id = 'b1'")
            .fetch_one(owner.pool())
            .await
            .unwrap();
        assert_eq!(body, "beta");
        app.close().await;
        owner.close().await;
    }
}
