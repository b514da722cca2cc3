//! The database layer every storing service shares: one pool per service, on
//! PostgreSQL or SQLite, behind a single [`sqlx::AnyPool`].
//!
//! This module owns connecting, pool limits, per-backend connection setup,
//! running a service's embedded migrations, and turning database errors into
//! [`ServiceError`]s. It knows nothing about any service's tables.
//!
//! Invariants:
//! - On PostgreSQL each service lives in its own schema: [`Database::connect`]
//!   creates it and every pooled connection has `search_path` set to it, so
//!   unqualified table names (and the `_sqlx_migrations` table) are the service's own.
//! - On SQLite each service has its own file, in WAL mode, with a busy timeout and
//!   foreign keys on (`synchronous = NORMAL`, the usual WAL setting).
//! - SQL uses `$1`-style placeholders on both backends (SQLite binds `$N` to
//!   argument N), ids are TEXT and timestamps BIGINT epoch milliseconds.
//! - A database URL is never logged or returned with its password; see [`redact_url`].
//! - Connection trouble maps to `UNAVAILABLE` (retryable); everything else to
//!   `INTERNAL`, with the detail logged and not returned.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Executor as _};

use crate::ServiceError;

/// Most connections a service's PostgreSQL pool opens.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// Most connections a service's SQLite pool opens (writers are serialized by SQLite anyway).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// How long a caller waits for a pooled connection before getting `UNAVAILABLE`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long SQLite waits on a locked database before failing with `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Which database a [`Database`] talks to, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of connecting and migrating. Query errors are mapped with [`service_error`].
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url {0} (expected postgres://… or sqlite://…)")]
    UnsupportedUrl(String),
    #[error("invalid schema name {0:?} (expected [a-z_][a-z0-9_]*)")]
    InvalidSchema(String),
    #[error("invalid role name {0:?} (expected [a-z_][a-z0-9_]*)")]
    InvalidRole(String),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] MigrateError),
}

impl From<DbError> for ServiceError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Sqlx(err) => service_error(err),
            DbError::Migrate(MigrateError::Execute(err)) => service_error(err),
            other => ServiceError::internal(other),
        }
    }
}

/// A service's connection pool and the backend it talks to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    schema: String,
}

impl Database {
    /// Connects to `url` for the service owning `schema`.
    ///
    /// - `postgres://…`: creates schema `schema` if missing and sets every pooled
    ///   connection's `search_path` to it.
    /// - `sqlite://path?mode=rwc`: one file per service; `schema` is only validated.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        validate_schema(schema)?;
        let backend = backend_of(url)?;
        let pool = match backend {
            Backend::Postgres => connect_postgres(url, schema).await?,
            Backend::Sqlite => connect_sqlite(url).await?,
        };
        tracing::debug!(url = %redact_url(url), schema, ?backend, "database connected");
        Ok(Self {
            pool,
            backend,
            schema: schema.to_owned(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs the migrations for this backend (forward only): `postgres` on
    /// PostgreSQL, `sqlite` on SQLite. Pass `&sqlx::migrate!("migrations/<backend>")`.
    pub async fn migrate(&self, postgres: &Migrator, sqlite: &Migrator) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Maps a query error to the error a service returns: connection and pool
/// trouble (and SQLite lock contention, PostgreSQL serialization failures) are
/// `UNAVAILABLE` and retryable; anything else is `INTERNAL`, detail logged only.
pub fn service_error(err: sqlx::Error) -> ServiceError {
    if is_transient(&err) {
        tracing::warn!(error = %err, "database unavailable");
        ServiceError::unavailable("database unavailable")
    } else {
        ServiceError::internal(format!("database: {err}"))
    }
}

/// Whether `err` is a unique-constraint violation (on either backend).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            // PostgreSQL SQLSTATEs: connection exceptions, shutdown / not accepting
            // connections, too many connections, serialization failure, deadlock.
            if code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                )
            {
                return true;
            }
            // SQLite (extended) result codes: primary SQLITE_BUSY (5) or SQLITE_LOCKED (6).
            code.parse::<u32>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// `url` with any password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &url[scheme_end + 3 + at..]
    )
}

fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(DbError::UnsupportedUrl(redact_url(url)))
    }
}

fn validate_schema(schema: &str) -> Result<(), DbError> {
    let mut chars = schema.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid_start && valid_rest && schema.len() <= 63 {
        Ok(())
    } else {
        Err(DbError::InvalidSchema(schema.to_owned()))
    }
}

async fn connect_postgres(url: &str, schema: &str) -> Result<AnyPool, DbError> {
    create_schema(url, schema).await?;
    let set_search_path = format!("SET search_path TO \"{schema}\"");
    let pool = AnyPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // No ping before each use: it cost a round trip per query and per
        // transaction. A connection that died is found by the query itself
        // (UNAVAILABLE, retryable) and replaced.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let statement = set_search_path.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(statement)).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// Creates `schema` on a connection of its own, tolerating a concurrent creator.
/// An existing schema is left alone (the services' runtime role may not create one).
async fn create_schema(url: &str, schema: &str) -> Result<(), DbError> {
    use sqlx::Connection as _;
    let mut conn = AnyConnection::connect(url).await?;
    let exists = sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema)
        .fetch_optional(&mut conn)
        .await?
        .is_some();
    if exists {
        let _ = conn.close().await;
        return Ok(());
    }
    let statement = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    let created = conn.execute(AssertSqlSafe(statement)).await;
    let _ = conn.close().await;
    match created {
        Ok(_) => Ok(()),
        // Two processes racing on IF NOT EXISTS: the loser sees a unique violation.
        Err(err) if is_unique_violation(&err) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn connect_sqlite(url: &str) -> Result<AnyPool, DbError> {
    // Every connection to an in-memory database is a database of its own.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let max_connections = if in_memory { 1 } else { SQLITE_MAX_CONNECTIONS };
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                let busy = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
                conn.execute(AssertSqlSafe(busy)).await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                // Durable across crashes in WAL mode; only a power loss may drop the last commits.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    if !in_memory {
        // WAL is a property of the file: set it once, on one connection, before use.
        pool.execute("PRAGMA journal_mode = WAL").await?;
    }
    Ok(pool)
}

mod tenancy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use tenancy::{TENANT_SETTING, Tx, commit};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sqlx::Row as _;

    use super::testing::{fresh_postgres_url, fresh_sqlite_url};
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact_url("sqlite://data/a.db?mode=rwc"),
            "sqlite://data/a.db?mode=rwc"
        );
        let err = backend_of("mysql://u:pw@h/db").unwrap_err();
        assert!(!err.to_string().contains("pw"));
    }

    #[test]
    fn rejects_bad_schema_names() {
        assert!(validate_schema("session").is_ok());
        assert!(validate_schema("a\"; DROP").is_err());
        assert!(validate_schema("").is_err());
        assert!(validate_schema("1abc").is_err());
    }

    async fn placeholders_bind_by_number(db: &Database) {
        let row = sqlx::query("SELECT $2 || $1 || $2 AS joined")
            .bind("a")
            .bind("b")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("joined").unwrap(), "bab");
    }

    #[tokio::test]
    async fn sqlite_setup() {
        let test_db = fresh_sqlite_url().unwrap();
        let db = Database::connect(test_db.url(), "demo").await.unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        placeholders_bind_by_number(&db).await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_setup_uses_own_schema() {
        let test_db = fresh_postgres_url().await.unwrap();
        let db = Database::connect(test_db.url(), "demo").await.unwrap();
        assert_eq!(db.backend(), Backend::Postgres);
        placeholders_bind_by_number(&db).await;
        sqlx::query("CREATE TABLE things (id TEXT PRIMARY KEY)")
            .execute(db.pool())
            .await
            .unwrap();
        let schema: String = sqlx::query_scalar(
            "SELECT table_schema::TEXT FROM information_schema.tables WHERE table_name = 'things'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(schema, "demo");
        // A second service on the same database does not see the first one's tables.
        let other = Database::connect(test_db.url(), "other").await.unwrap();
        let err = sqlx::query("SELECT id FROM things")
            .execute(other.pool())
            .await
            .unwrap_err();
        assert_eq!(service_error(err).code, crate::ErrorCode::Internal);
        db.close().await;
        other.close().await;
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let err = Database::connect("postgres://u:pw@127.0.0.1:1/x", "demo")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("pw"));
        let err = ServiceError::from(err);
        assert_eq!(err.code, crate::ErrorCode::Unavailable);
        assert!(err.retryable);
    }
}
