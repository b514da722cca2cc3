//! Throwaway databases for tests of any crate (enable the `testing` feature).
//!
//! Each call makes a database no other test sees; the returned guard removes it
//! when dropped (best effort).
use std::path::PathBuf;

use sqlx::{AnyConnection, AssertSqlSafe, Connection as _, Executor as _};

use super::{DbError, redact_url};

/// Server used by [`fresh_postgres_url`] unless `CLAWGATE_TEST_POSTGRES_URL` is set.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one test, removed when this guard is dropped.
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

enum Cleanup {
    Postgres { server_url: String, name: String },
    Sqlite { dir: PathBuf },
}

impl TestDatabase {
    /// The URL to hand to `Database::connect` (or a service's `connect`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A fresh, empty PostgreSQL database on the test server.
pub async fn fresh_postgres_url() -> Result<TestDatabase, DbError> {
    sqlx::any::install_default_drivers();
    let server_url = std::env::var("CLAWGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
    let name = format!("clawgate_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AnyConnection::connect(&server_url).await?;
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await?;
    let _ = conn.close().await;
    let url = with_database(&server_url, &name)
        .ok_or_else(|| DbError::UnsupportedUrl(redact_url(&server_url)))?;
    Ok(TestDatabase {
        url,
        cleanup: Cleanup::Postgres { server_url, name },
    })
}

/// A fresh SQLite database file in a directory of its own.
pub fn fresh_sqlite_url() -> Result<TestDatabase, DbError> {
    let dir = std::env::temp_dir().join(format!("clawgate-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(sqlx::Error::Io)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    Ok(TestDatabase {
        url,
        cleanup: Cleanup::Sqlite { dir },
    })
}

/// `server_url` pointing at database `name` instead of its own.
fn with_database(server_url: &str, name: &str) -> Option<String> {
    let scheme_end = server_url.find("://")? + 3;
    let (base, query) = match server_url.find('?') {
        Some(q) => (&server_url[..q], &server_url[q..]),
        None => (server_url, ""),
    };
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    Some(format!("{}/{name}{query}", &base[..path_start]))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { server_url, name } => {
                let (server_url, name) = (server_url.clone(), name.clone());
                // Drop may run inside an async runtime: use a thread with its own.
                let dropper = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async move {
                        if let Ok(mut conn) = AnyConnection::connect(&server_url).await {
                            let statement =
                                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            let _ = conn.execute(AssertSqlSafe(statement)).await;
                            let _ = conn.close().await;
                        }
                    });
                });
                let _ = dropper.join();
            }
        }
    }
}

/// Role the services run as in tests: `LOGIN NOSUPERUSER NOBYPASSRLS`, so row-level
/// security applies to it. Created once per server, shared by every test database.
pub const TEST_APP_ROLE: &str = "clawgate_app";

/// `url` with its user replaced by [`TEST_APP_ROLE`], creating that role on the
/// server if it does not exist yet. Migrate as the original user first and grant
/// the role its rights with `Database::grant_to_app_role`.
pub async fn app_role_url(url: &str) -> Result<String, DbError> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await?;
    let exists = sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(TEST_APP_ROLE)
        .fetch_optional(&mut conn)
        .await?
        .is_some();
    if !exists {
        let statement =
            format!("CREATE ROLE \"{TEST_APP_ROLE}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB");
        match conn.execute(AssertSqlSafe(statement)).await {
            Ok(_) => {}
            // Another test created it at the same moment.
            Err(err) if is_duplicate(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let _ = conn.close().await;
    with_user(url, TEST_APP_ROLE).ok_or_else(|| DbError::UnsupportedUrl(redact_url(url)))
}

fn is_duplicate(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation() || db.code().is_some_and(|code| code == "42710"))
}

/// `url` with its userinfo replaced by `user` (no password).
fn with_user(url: &str, user: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..authority_end],
        None => &rest[..authority_end],
    };
    Some(format!(
        "{}{user}@{host}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_user() {
        assert_eq!(
            super::with_user("postgres://postgres:pw@127.0.0.1:5432/db?x=1", "app").as_deref(),
            Some("postgres://app@127.0.0.1:5432/db?x=1")
        );
        assert_eq!(
            super::with_user("postgres://127.0.0.1/db", "app").as_deref(),
            Some("postgres://app@127.0.0.1/db")
        );
    }
}
