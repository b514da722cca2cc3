//! The session store: the SQL behind the service, one implementation for both
//! PostgreSQL and SQLite (portable SQL, `$N` placeholders).
//!
//! This module owns the transactions every query runs in and the mapping of rows
//! to protobuf messages; [`sessions`], [`messages`] and [`retention`] hold the
//! statements of each concern.
//!
//! Invariants it keeps:
//! - Every tenant-scoped statement runs inside a transaction begun for the
//!   caller's tenant ([`Database::begin_tenant`]: PostgreSQL row-level security
//!   then hides every other tenant's rows), one transaction per call, and also
//!   names that tenant in its own `WHERE` clause (the only guard on SQLite).
//! - Statements addressed by session key are scoped by tenant *and* user
//!   ([`Owner`]): session keys are a per-user namespace. Only listing may span
//!   the users of a tenant ([`Audience`]), for admins and owners.
//! - At most one live session per (tenant, user, key); soft-deleted rows stay,
//!   and so do their messages, which reference the session's internal id, until
//!   the retention purge removes both together (the only deletion path).
//! - Messages are only ever inserted. A session's `message_count` is incremented
//!   in the same transaction that inserts its next message, and that message's
//!   `seq` is the new count, so seqs are 1, 2, 3… without gaps or duplicates.
//!   Appends to one session serialize on the session row (PostgreSQL row lock,
//!   SQLite `BEGIN IMMEDIATE`); the unique (session_id, seq) and
//!   (session_id, run_id, role) indexes back this up, and a violation is retried.

mod agents;
mod messages;
mod providers;
mod retention;
mod sessions;
mod tools;

use clawgate_proto::ServiceError;
use clawgate_proto::session::{Session, TranscriptMessage};
use clawgate_runtime::db::{Database, Tx, commit, service_error};
use sqlx::Row as _;
use sqlx::any::AnyRow;

pub use messages::NewMessage;
pub use retention::Purged;
pub use sessions::Filter;

/// One user's key namespace: every statement addressed by session key is
/// scoped to it.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
}

/// Whose sessions a listing shows: one user's, or (`user_id: None`) those of
/// every user of the tenant. Never more than one tenant.
#[derive(Clone, Copy, Debug)]
pub struct Audience<'a> {
    pub tenant_id: &'a str,
    pub user_id: Option<&'a str>,
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

/// The columns [`session_of`] reads, in statement text.
macro_rules! session_columns {
    () => {
        "id, tenant_id, user_id, session_key, agent_id, label, created_at, updated_at, \
         message_count, last_message_preview"
    };
}
use session_columns;

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// A transaction that sees `tenant_id`'s rows only (on PostgreSQL).
    async fn begin(&self, tenant_id: &str) -> Result<Tx, ServiceError> {
        self.db.begin_tenant(tenant_id).await
    }

    /// Like [`begin`](Self::begin), but on SQLite it takes the write lock up
    /// front, so two appenders never both read and then fail to upgrade.
    async fn begin_write(&self, tenant_id: &str) -> Result<Tx, ServiceError> {
        self.db.begin_tenant_write(tenant_id).await
    }
}

fn session_of(row: &AnyRow) -> Result<Session, ServiceError> {
    let read = || -> Result<Session, sqlx::Error> {
        Ok(Session {
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            session_key: row.try_get("session_key")?,
            agent_id: row.try_get("agent_id")?,
            label: row.try_get("label")?,
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
            message_count: to_u64(row.try_get("message_count")?),
            last_message_preview: row.try_get("last_message_preview")?,
            session_id: row.try_get("id")?,
        })
    };
    read().map_err(service_error)
}

fn message_of(row: &AnyRow) -> Result<TranscriptMessage, sqlx::Error> {
    let status: i64 = row.try_get("status")?;
    Ok(TranscriptMessage {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        session_key: row.try_get("session_key")?,
        seq: to_u64(row.try_get("seq")?),
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        run_id: row.try_get("run_id")?,
        status: i32::try_from(status).unwrap_or_default(),
        error: row.try_get("error")?,
        created_at_ms: row.try_get("created_at")?,
        part: u32::try_from(row.try_get::<i64, _>("part")?).unwrap_or_default(),
        ..Default::default()
    })
    .map(|mut message| {
        let tools: String = row.try_get("tools").unwrap_or_default();
        tools::decode(&tools, &mut message);
        message
    })
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
