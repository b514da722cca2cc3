//! Transcript rows: append and read back.
//!
//! Invariants:
//! - Messages are only inserted, into the caller's own live session (created if
//!   missing), with the session's tenant and user (the schema refuses any
//!   other); the database refuses every UPDATE and any DELETE outside the
//!   retention purge.
//! - `seq` is the session's new `message_count`, taken under the session row's
//!   lock in the same transaction, so seqs are gapless and unique; one
//!   transaction per attempt, retried when a unique index says another append won.
//! - With a run id, (session, run id, role, part) is unique; appending it
//!   again returns the stored row and changes nothing.
//! - Reads see only the caller's own live session; a missing or deleted one
//!   reads as an empty transcript.

use clawgate_proto::ServiceError;
use clawgate_proto::session::{MessageStatus, ToolCallRecord, TranscriptMessage};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::db::{is_unique_violation, service_error};
use sqlx::Row as _;

use super::sessions::insert_session_if_missing;
use super::{Owner, Store, commit, message_of, to_u64, tools};
use crate::validate::Role;

/// How often an append is retried after losing a race on a unique index.
const APPEND_ATTEMPTS: usize = 5;

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
    pub part: u32,
    /// An assistant row's tool calls.
    pub tool_calls: &'a [ToolCallRecord],
    /// A tool row's call id, tool name and outcome.
    pub tool_call_id: &'a str,
    pub tool_name: &'a str,
    pub tool_error: bool,
}

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

const MESSAGE_OF_RUN: &str = "\
    SELECT id, tenant_id, user_id, session_key, seq, role, content, run_id, status, error, \
           created_at, part, tools \
    FROM messages \
    WHERE session_id = $1 AND tenant_id = $2 AND user_id = $3 AND run_id = $4 AND role = $5 \
      AND part = $6";

const INSERT_MESSAGE: &str = "\
    INSERT INTO messages (id, session_id, tenant_id, user_id, session_key, seq, role, content, \
                          run_id, status, error, created_at, part, tools) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

const RECENT_MESSAGES: &str = "\
    SELECT id, tenant_id, user_id, session_key, seq, role, content, run_id, status, \
           error, created_at, part, tools \
    FROM ( \
        SELECT m.id, m.tenant_id, m.user_id, m.session_key, m.seq, m.role, m.content, \
               m.run_id, m.status, m.error, m.created_at, m.part, m.tools \
        FROM messages m JOIN sessions s ON s.id = m.session_id \
        WHERE s.tenant_id = $1 AND s.user_id = $2 AND s.session_key = $3 \
          AND s.deleted_at IS NULL AND m.tenant_id = $1 AND m.user_id = $2 \
        ORDER BY m.seq DESC \
        LIMIT $4 \
    ) recent \
    ORDER BY seq ASC";

/// How one append attempt ended.
enum Attempt {
    /// The row, and whether this attempt inserted it (not a replay).
    Stored(Box<TranscriptMessage>, bool),
    /// The session was deleted between our ensure and our bump.
    SessionGone,
    /// Another append won a unique index; try again.
    Raced,
}

impl Store {
    /// Appends `message` to the live session (created if missing), or returns the
    /// stored row when the same (run_id, role) was appended before; with whether
    /// this call inserted it.
    pub async fn append(
        &self,
        owner: Owner<'_>,
        message: &NewMessage<'_>,
    ) -> Result<(TranscriptMessage, bool), ServiceError> {
        for attempt in 1..=APPEND_ATTEMPTS {
            match self.try_append(owner, message).await? {
                Attempt::Stored(stored, fresh) => return Ok((*stored, fresh)),
                Attempt::SessionGone => {}
                Attempt::Raced => tracing::debug!(attempt, "append lost a race; retrying"),
            }
        }
        Err(ServiceError::unavailable(
            "session changed concurrently; retry",
        ))
    }

    async fn try_append(
        &self,
        owner: Owner<'_>,
        message: &NewMessage<'_>,
    ) -> Result<Attempt, ServiceError> {
        let race = |err: sqlx::Error| {
            if is_unique_violation(&err) {
                Ok(Attempt::Raced)
            } else {
                Err(service_error(err))
            }
        };
        // A failed statement aborts the transaction; dropping it rolls back.
        let mut tx = self.begin_write(owner.tenant_id).await?;
        if let Err(err) =
            insert_session_if_missing(&mut *tx, owner, message.session_key, message.agent_id).await
        {
            return race(err);
        }

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
        let rows = bump.fetch_all(&mut *tx).await.map_err(service_error)?;
        let Some(row) = rows.first() else {
            return Ok(Attempt::SessionGone);
        };
        let session_id: String = row.try_get("id").map_err(service_error)?;
        let seq: i64 = row.try_get("message_count").map_err(service_error)?;

        if !message.run_id.is_empty() {
            let existing = sqlx::query(MESSAGE_OF_RUN)
                .bind(session_id.as_str())
                .bind(owner.tenant_id)
                .bind(owner.user_id)
                .bind(message.run_id)
                .bind(message.role.as_str())
                .bind(i64::from(message.part))
                .fetch_optional(&mut *tx)
                .await
                .map_err(service_error)?;
            if let Some(existing) = existing {
                // Idempotent replay: undo the bump, return what is stored.
                tx.rollback().await.map_err(service_error)?;
                return message_of(&existing)
                    .map(|stored| Attempt::Stored(Box::new(stored), false))
                    .map_err(service_error);
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
            part: message.part,
            tool_calls: message.tool_calls.to_vec(),
            tool_call_id: message.tool_call_id.to_owned(),
            tool_name: message.tool_name.to_owned(),
            tool_error: message.tool_error,
        };
        let tools = tools::encode(
            message.tool_calls,
            message.tool_call_id,
            message.tool_name,
            message.tool_error,
        );
        let inserted = sqlx::query(INSERT_MESSAGE)
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
            .bind(i64::from(message.part))
            .bind(tools)
            .execute(&mut *tx)
            .await;
        if let Err(err) = inserted {
            return race(err);
        }
        match tx.commit().await {
            Ok(()) => Ok(Attempt::Stored(Box::new(stored), true)),
            Err(err) => race(err),
        }
    }

    /// The newest `limit` messages of the live session `key`, oldest first; empty
    /// when there is no such session.
    pub async fn recent_messages(
        &self,
        owner: Owner<'_>,
        key: &str,
        limit: i64,
    ) -> Result<Vec<TranscriptMessage>, ServiceError> {
        let mut tx = self.begin(owner.tenant_id).await?;
        let rows = sqlx::query(RECENT_MESSAGES)
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(key)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter()
            .map(|row| message_of(row).map_err(service_error))
            .collect()
    }
}
