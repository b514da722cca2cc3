//! The session store: the SQL behind the service, one implementation for both
//! PostgreSQL and SQLite (portable SQL, `$N` placeholders).
//!
//! Invariants it keeps:
//! - Every statement is filtered by the caller's tenant and user ([`Owner`]).
//! - At most one live session per (tenant, user, key); soft-deleted rows stay,
//!   and so do their messages, which reference the session's internal id.
//! - Messages are only ever inserted. A session's `message_count` is incremented
//!   in the same transaction that inserts its next message, and that message's
//!   `seq` is the new count, so seqs are 1, 2, 3… without gaps or duplicates.
//!   Appends to one session serialize on the session row (PostgreSQL row lock,
//!   SQLite `BEGIN IMMEDIATE`); the unique (session_id, seq) and
//!   (session_id, run_id, role) indexes back this up, and a violation is retried.

use clawgate_proto::ServiceError;
use clawgate_proto::session::{MessageStatus, Session, TranscriptMessage};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::db::{Backend, Database, is_unique_violation, service_error};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

use crate::validate::Role;

/// How often an append is retried after losing a race on a unique index.
const APPEND_ATTEMPTS: usize = 5;

/// The tenant and user every statement is scoped to.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
}

/// A validated message to append.
#[derive(Debug)]
pub struct NewMessage<'a> {
    pub session_key: &'a str,
    pub agent_id: &'a str,
    pub role: Role,
    pub content: &'a str,
    pub run_id: &'a str,
    pub status: MessageStatus,
    pub error: &'a str,
    pub preview: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

const INSERT_SESSION_IF_MISSING: &str = "\
    INSERT INTO sessions (id, tenant_id, user_id, session_key, agent_id, label, \
                          created_at, updated_at, message_count, last_message_preview) \
    VALUES ($1, $2, $3, $4, $5, '', $6, $6, 0, '') \
    ON CONFLICT (tenant_id, user_id, session_key) WHERE deleted_at IS NULL DO NOTHING";

const SELECT_LIVE_SESSION: &str = "\
    SELECT tenant_id, user_id, session_key, agent_id, label, created_at, updated_at, \
           message_count, last_message_preview \
    FROM sessions \
    WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL";

const BUMP_SESSION_WITH_PREVIEW: &str = "\
    UPDATE sessions \
    SET message_count = message_count + 1, updated_at = $4, last_message_preview = $5 \
    WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL \
    RETURNING id, message_count";

const BUMP_SESSION: &str = "\
    UPDATE sessions \
    SET message_count = message_count + 1, updated_at = $4 \
    WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL \
    RETURNING id, message_count";

const MESSAGE_COLUMNS_OF_RUN: &str = "\
    SELECT id, tenant_id, user_id, session_key, seq, role, content, run_id, status, error, \
           created_at \
    FROM messages \
    WHERE session_id = $1 AND tenant_id = $2 AND user_id = $3 AND run_id = $4 AND role = $5";

const INSERT_MESSAGE: &str = "\
    INSERT INTO messages (id, session_id, tenant_id, user_id, session_key, seq, role, content, \
                          run_id, status, error, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Creates the live session `key` unless it exists, and returns it.
    pub async fn ensure_session(
        &self,
        owner: Owner<'_>,
        key: &str,
        agent_id: &str,
    ) -> Result<Session, ServiceError> {
        insert_session_if_missing(self.db.pool(), owner, key, agent_id)
            .await
            .map_err(service_error)?;
        self.get_session(owner, key).await?.ok_or_else(|| {
            // Deleted between the insert and the read: the caller may simply retry.
            ServiceError::unavailable("session changed concurrently; retry")
        })
    }

    /// The live session `key`, if any.
    pub async fn get_session(
        &self,
        owner: Owner<'_>,
        key: &str,
    ) -> Result<Option<Session>, ServiceError> {
        let row = sqlx::query(SELECT_LIVE_SESSION)
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(session_of).transpose()
    }

    /// A page of live sessions, most recently updated first, and how many there are.
    pub async fn list_sessions(
        &self,
        owner: Owner<'_>,
        agent_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Session>, u64), ServiceError> {
        let rows = sqlx::query(
            "SELECT tenant_id, user_id, session_key, agent_id, label, created_at, updated_at, \
                    message_count, last_message_preview \
             FROM sessions \
             WHERE tenant_id = $1 AND user_id = $2 AND deleted_at IS NULL \
               AND ($3 = '' OR agent_id = $3) \
             ORDER BY updated_at DESC, id DESC \
             LIMIT $4 OFFSET $5",
        )
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(agent_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await
        .map_err(service_error)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions \
             WHERE tenant_id = $1 AND user_id = $2 AND deleted_at IS NULL \
               AND ($3 = '' OR agent_id = $3)",
        )
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(agent_id)
        .fetch_one(self.db.pool())
        .await
        .map_err(service_error)?;
        let sessions = rows.iter().map(session_of).collect::<Result<_, _>>()?;
        Ok((sessions, to_u64(total)))
    }

    /// Sets the label of the live session `key`; `None` when there is none.
    pub async fn set_label(
        &self,
        owner: Owner<'_>,
        key: &str,
        label: &str,
    ) -> Result<Option<Session>, ServiceError> {
        let rows = sqlx::query(
            "UPDATE sessions SET label = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL \
             RETURNING tenant_id, user_id, session_key, agent_id, label, created_at, updated_at, \
                       message_count, last_message_preview",
        )
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .bind(label)
        .bind(now_ms())
        .fetch_all(self.db.pool())
        .await
        .map_err(service_error)?;
        rows.first().map(session_of).transpose()
    }

    /// Soft-deletes the live session `key`; whether there was one.
    pub async fn soft_delete(&self, owner: Owner<'_>, key: &str) -> Result<bool, ServiceError> {
        let result = sqlx::query(
            "UPDATE sessions SET deleted_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL",
        )
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(result.rows_affected() > 0)
    }

    /// Appends `message` to the live session (created if missing), or returns the
    /// stored row when the same (run_id, role) was appended before.
    pub async fn append(
        &self,
        owner: Owner<'_>,
        message: &NewMessage<'_>,
    ) -> Result<TranscriptMessage, ServiceError> {
        let mut attempt = 1;
        loop {
            match self.try_append(owner, message).await {
                Ok(Some(stored)) => return Ok(stored),
                // The session was deleted between our ensure and our bump.
                Ok(None) if attempt < APPEND_ATTEMPTS => {}
                Ok(None) => {
                    return Err(ServiceError::unavailable(
                        "session changed concurrently; retry",
                    ));
                }
                Err(err) if attempt < APPEND_ATTEMPTS && is_unique_violation(&err) => {
                    tracing::debug!(attempt, "append lost a race; retrying");
                }
                Err(err) => return Err(service_error(err)),
            }
            attempt += 1;
        }
    }

    async fn try_append(
        &self,
        owner: Owner<'_>,
        message: &NewMessage<'_>,
    ) -> Result<Option<TranscriptMessage>, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        insert_session_if_missing(&mut *tx, owner, message.session_key, message.agent_id).await?;

        let now = now_ms();
        // Locks the session row until commit: appends to one session take turns.
        let bump = match &message.preview {
            Some(preview) => sqlx::query(BUMP_SESSION_WITH_PREVIEW)
                .bind(owner.tenant_id)
                .bind(owner.user_id)
                .bind(message.session_key)
                .bind(now)
                .bind(preview.as_str()),
            None => sqlx::query(BUMP_SESSION)
                .bind(owner.tenant_id)
                .bind(owner.user_id)
                .bind(message.session_key)
                .bind(now),
        };
        let rows = bump.fetch_all(&mut *tx).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let session_id: String = row.try_get("id")?;
        let seq: i64 = row.try_get("message_count")?;

        if !message.run_id.is_empty() {
            let existing = sqlx::query(MESSAGE_COLUMNS_OF_RUN)
                .bind(session_id.as_str())
                .bind(owner.tenant_id)
                .bind(owner.user_id)
                .bind(message.run_id)
                .bind(message.role.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(existing) = existing {
                // Idempotent replay: undo the bump, return what is stored.
                tx.rollback().await?;
                return message_of(&existing).map(Some);
            }
        }

        let stored = TranscriptMessage {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: owner.tenant_id.to_owned(),
            user_id: owner.user_id.to_owned(),
            session_key: message.session_key.to_owned(),
            seq: to_u64(seq),
            role: message.role.as_str().to_owned(),
            content: message.content.to_owned(),
            run_id: message.run_id.to_owned(),
            status: message.status as i32,
            error: message.error.to_owned(),
            created_at_ms: now,
        };
        sqlx::query(INSERT_MESSAGE)
            .bind(stored.id.as_str())
            .bind(session_id.as_str())
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(message.session_key)
            .bind(seq)
            .bind(message.role.as_str())
            .bind(message.content)
            .bind(message.run_id)
            .bind(i64::from(stored.status))
            .bind(message.error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    /// The newest `limit` messages of the live session `key`, oldest first; empty
    /// when there is no such session.
    pub async fn recent_messages(
        &self,
        owner: Owner<'_>,
        key: &str,
        limit: i64,
    ) -> Result<Vec<TranscriptMessage>, ServiceError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, user_id, session_key, seq, role, content, run_id, status, \
                    error, created_at \
             FROM ( \
                 SELECT m.id, m.tenant_id, m.user_id, m.session_key, m.seq, m.role, m.content, \
                        m.run_id, m.status, m.error, m.created_at \
                 FROM messages m JOIN sessions s ON s.id = m.session_id \
                 WHERE s.tenant_id = $1 AND s.user_id = $2 AND s.session_key = $3 \
                   AND s.deleted_at IS NULL AND m.tenant_id = $1 AND m.user_id = $2 \
                 ORDER BY m.seq DESC \
                 LIMIT $4 \
             ) recent \
             ORDER BY seq ASC",
        )
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(service_error)?;
        rows.iter()
            .map(|row| message_of(row).map_err(service_error))
            .collect()
    }

    /// A write transaction. On SQLite it takes the write lock up front, so two
    /// appenders never both read and then fail to upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.db.backend() {
            Backend::Sqlite => self.db.pool().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.db.pool().begin().await,
        }
    }
}

async fn insert_session_if_missing<'e, E>(
    executor: E,
    owner: Owner<'_>,
    key: &str,
    agent_id: &str,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query(INSERT_SESSION_IF_MISSING)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .bind(agent_id)
        .bind(now_ms())
        .execute(executor)
        .await?;
    Ok(())
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
    })
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
