//! The retention purge: the only statements that delete rows.
//!
//! It hard-deletes sessions soft-deleted before a cutoff, together with all
//! their messages, in batches, across all tenants (it is maintenance, not a
//! caller's request, so it runs in no tenant's transaction).
//!
//! How the database keeps it the only deletion path (migration 0002):
//! - PostgreSQL: the delete triggers on `messages` and `sessions` allow a row
//!   only when the statement runs as the owner of the tables *and* the row's
//!   session was soft-deleted before `clawgate.purge_before`. Both hold only
//!   inside `purge_deleted_sessions(before, max_sessions)`, a `SECURITY
//!   DEFINER` function owned by the migrating role that sets that cutoff for its
//!   own duration. The service's runtime role may call the function, but it
//!   cannot delete a row itself, not even with the setting forged; and as the
//!   owner the function is not subject to row-level security, which is how it
//!   reaches every tenant. We chose this over letting the runtime role delete
//!   rows of soft-deleted sessions tenant by tenant: that would need a
//!   cross-tenant lookup of the tenants anyway, and it would let a buggy
//!   statement delete part of a soft-deleted transcript; this way a transcript
//!   is either complete or gone.
//! - SQLite (no roles): the triggers allow a delete only while a row in
//!   `purge_window` names a cutoff the session was soft-deleted before. The
//!   purge inserts that row, deletes, and removes it in one `BEGIN IMMEDIATE`
//!   transaction, so no other connection ever sees it.
//! - UPDATE of a message is refused always, on both backends.
//!
//! The retention *length* is the service's setting: the database checks that
//! a session was soft-deleted before the cutoff it is given, not how far back
//! the cutoff lies.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Backend, service_error};
use sqlx::Row as _;

use super::{Store, commit, to_u64};

/// Rows removed by a purge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub messages: u64,
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, other: Self) {
        self.sessions += other.sessions;
        self.messages += other.messages;
    }
}

/// The ids of the oldest `$2` sessions soft-deleted before `$1`, in statement text.
macro_rules! expired_ids {
    () => {
        "SELECT id FROM sessions \
         WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
         ORDER BY deleted_at, id \
         LIMIT $2"
    };
}

const DELETE_EXPIRED_MESSAGES: &str = concat!(
    "DELETE FROM messages WHERE session_id IN (",
    expired_ids!(),
    ")"
);

const DELETE_EXPIRED_SESSIONS: &str =
    concat!("DELETE FROM sessions WHERE id IN (", expired_ids!(), ")");

impl Store {
    /// Hard-deletes up to `max_sessions` sessions soft-deleted before `before`
    /// (epoch ms) and their messages, in one transaction.
    pub async fn purge_batch(
        &self,
        before: i64,
        max_sessions: i64,
    ) -> Result<Purged, ServiceError> {
        match self.db.backend() {
            Backend::Postgres => self.purge_batch_postgres(before, max_sessions).await,
            Backend::Sqlite => self.purge_batch_sqlite(before, max_sessions).await,
        }
    }

    async fn purge_batch_postgres(
        &self,
        before: i64,
        max_sessions: i64,
    ) -> Result<Purged, ServiceError> {
        let row = sqlx::query(
            "SELECT purged_sessions, purged_messages FROM purge_deleted_sessions($1, $2)",
        )
        .bind(before)
        .bind(max_sessions)
        .fetch_one(self.db.pool())
        .await
        .map_err(service_error)?;
        let count = |column: &str| row.try_get::<i64, _>(column).map(to_u64);
        Ok(Purged {
            sessions: count("purged_sessions").map_err(service_error)?,
            messages: count("purged_messages").map_err(service_error)?,
        })
    }

    async fn purge_batch_sqlite(
        &self,
        before: i64,
        max_sessions: i64,
    ) -> Result<Purged, ServiceError> {
        let mut tx = self
            .db
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(service_error)?;
        sqlx::query("INSERT INTO purge_window (before) VALUES ($1)")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        // The write lock is held: the subquery picks the same sessions both times.
        let messages = sqlx::query(DELETE_EXPIRED_MESSAGES)
            .bind(before)
            .bind(max_sessions)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        let sessions = sqlx::query(DELETE_EXPIRED_SESSIONS)
            .bind(before)
            .bind(max_sessions)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        sqlx::query("DELETE FROM purge_window")
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(Purged {
            sessions: sessions.rows_affected(),
            messages: messages.rows_affected(),
        })
    }
}
