//! Session rows: create, read, list, label and soft-delete.
//!
//! Invariants:
//! - Reads and writes by key see only the caller's own live session
//!   (tenant, user, key, `deleted_at IS NULL`); listing sees the live sessions
//!   of an [`Audience`], one user or the whole tenant, never another tenant.
//! - A listing page and its `total` count the same set of rows.
//! - Soft delete only sets `deleted_at`; the row and its transcript stay until
//!   the retention purge ([`super::retention`]).

use clawgate_proto::ServiceError;
use clawgate_proto::session::Session;
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::db::service_error;
use sqlx::Any;

use super::{Audience, Owner, Store, commit, session_columns, session_of, to_u64};

const INSERT_SESSION_IF_MISSING: &str = "\
    INSERT INTO sessions (id, tenant_id, user_id, session_key, agent_id, label, \
                          created_at, updated_at, message_count, last_message_preview) \
    VALUES ($1, $2, $3, $4, $5, '', $6, $6, 0, '') \
    ON CONFLICT (tenant_id, user_id, session_key) WHERE deleted_at IS NULL DO NOTHING";

const SELECT_LIVE_SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions \
      WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL"
);

/// The filters of every listing (each empty or 0: no filter): agent, exact
/// label, case-insensitive text in the key or label, updated since; and
/// the special sessions `global` / `unknown` left out (1) or kept (0).
macro_rules! list_filter {
    ($agent:literal, $label:literal, $search:literal, $since:literal, $global:literal, $unknown:literal) => {
        concat!(
            " AND (",
            $global,
            " = 0 OR session_key <> 'global')",
            " AND (",
            $unknown,
            " = 0 OR session_key <> 'unknown')",
            " AND (",
            $agent,
            " = '' OR agent_id = ",
            $agent,
            ")",
            " AND (",
            $label,
            " = '' OR label = ",
            $label,
            ")",
            " AND (",
            $search,
            " = '' OR LOWER(session_key) LIKE ",
            $search,
            " ESCAPE '\\' OR LOWER(label) LIKE ",
            $search,
            " ESCAPE '\\')",
            " AND updated_at >= ",
            $since
        )
    };
}

// Listing one user's sessions and the whole tenant's are separate statements,
// so each gets its own plan (and index) rather than one generic `OR` plan.
const LIST_USER_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND deleted_at IS NULL",
    list_filter!("$3", "$4", "$5", "$6", "$7", "$8"),
    " ORDER BY updated_at DESC, id DESC LIMIT $9 OFFSET $10"
);

const COUNT_USER_SESSIONS: &str = concat!(
    "SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND deleted_at IS NULL",
    list_filter!("$3", "$4", "$5", "$6", "$7", "$8"),
);

const LIST_TENANT_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE tenant_id = $1 AND deleted_at IS NULL",
    list_filter!("$2", "$3", "$4", "$5", "$6", "$7"),
    " ORDER BY updated_at DESC, id DESC LIMIT $8 OFFSET $9"
);

const COUNT_TENANT_SESSIONS: &str = concat!(
    "SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND deleted_at IS NULL",
    list_filter!("$2", "$3", "$4", "$5", "$6", "$7"),
);

const INSERT_SESSION: &str = "\
    INSERT INTO sessions (id, tenant_id, user_id, session_key, agent_id, label, \
                          created_at, updated_at, message_count, last_message_preview) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, '')";

/// What a listing keeps (each empty or 0: everything).
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter<'a> {
    pub agent_id: &'a str,
    pub label: &'a str,
    /// Text the key or label contains, case-insensitive (ASCII).
    pub search: &'a str,
    pub updated_since_ms: i64,
    /// Leave out the special sessions `global` / `unknown`.
    pub exclude_global: bool,
    pub exclude_unknown: bool,
}

impl Filter<'_> {
    /// The `LIKE` pattern of `search` ('' for none), `\` escaping.
    fn pattern(&self) -> String {
        if self.search.is_empty() {
            return String::new();
        }
        let mut pattern = String::with_capacity(self.search.len() + 2);
        pattern.push('%');
        for c in self.search.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

/// Binds a [`Filter`]'s parameters, in `list_filter!`'s order, onto a listing
/// or count query.
trait WithFilter: Sized {
    fn with_filter(self, filter: &Filter<'_>, pattern: &str) -> Self;
}

macro_rules! impl_with_filter {
    ($($query:ty),*) => {$(
        impl<'q> WithFilter for $query {
            fn with_filter(self, filter: &Filter<'_>, pattern: &str) -> Self {
                self.bind(filter.agent_id.to_owned())
                    .bind(filter.label.to_owned())
                    .bind(pattern.to_owned())
                    .bind(filter.updated_since_ms)
                    .bind(i32::from(filter.exclude_global))
                    .bind(i32::from(filter.exclude_unknown))
            }
        }
    )*};
}

impl_with_filter!(
    sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments>
);

const SET_LABEL: &str = concat!(
    "UPDATE sessions SET label = $4, updated_at = $5 \
     WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL \
     RETURNING ",
    session_columns!()
);

const SOFT_DELETE: &str = "\
    UPDATE sessions SET deleted_at = $4 \
    WHERE tenant_id = $1 AND user_id = $2 AND session_key = $3 AND deleted_at IS NULL";

impl Store {
    /// Creates the live session `key` unless it exists, and returns it, with
    /// whether this call created it.
    pub async fn ensure_session(
        &self,
        owner: Owner<'_>,
        key: &str,
        agent_id: &str,
    ) -> Result<(Session, bool), ServiceError> {
        let mut tx = self.begin(owner.tenant_id).await?;
        let created = insert_session_if_missing(&mut *tx, owner, key, agent_id)
            .await
            .map_err(service_error)?;
        let session = select_live_session(&mut *tx, owner, key).await?;
        commit(tx).await?;
        let session = session.ok_or_else(|| {
            // Deleted between the insert and the read: the caller may simply retry.
            ServiceError::unavailable("session changed concurrently; retry")
        })?;
        Ok((session, created))
    }

    /// Soft-deletes the live session `key` (if any) and creates a fresh one in
    /// its place, keeping its label and agent (else `agent_id`), in one
    /// transaction; returns the new one.
    pub async fn reset_session(
        &self,
        owner: Owner<'_>,
        key: &str,
        agent_id: &str,
    ) -> Result<Session, ServiceError> {
        let mut tx = self.begin_write(owner.tenant_id).await?;
        let old = select_live_session(&mut *tx, owner, key).await?;
        let now = now_ms();
        if old.is_some() {
            sqlx::query(SOFT_DELETE)
                .bind(owner.tenant_id)
                .bind(owner.user_id)
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(service_error)?;
        }
        let (agent, label) = old
            .as_ref()
            .map_or((agent_id, ""), |s| (s.agent_id.as_str(), s.label.as_str()));
        sqlx::query(INSERT_SESSION)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(key)
            .bind(agent)
            .bind(label)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        let fresh = select_live_session(&mut *tx, owner, key).await?;
        commit(tx).await?;
        fresh.ok_or_else(|| ServiceError::unavailable("session changed concurrently; retry"))
    }

    /// The live session `key`, if any.
    pub async fn get_session(
        &self,
        owner: Owner<'_>,
        key: &str,
    ) -> Result<Option<Session>, ServiceError> {
        let mut tx = self.begin(owner.tenant_id).await?;
        let session = select_live_session(&mut *tx, owner, key).await?;
        commit(tx).await?;
        Ok(session)
    }

    /// A page of the audience's live sessions, most recently updated first, and
    /// how many there are.
    pub async fn list_sessions(
        &self,
        audience: Audience<'_>,
        filter: Filter<'_>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Session>, u64), ServiceError> {
        let mut tx = self.begin(audience.tenant_id).await?;
        let pattern = filter.pattern();
        let (page, count) = match audience.user_id {
            Some(user_id) => (
                sqlx::query(LIST_USER_SESSIONS)
                    .bind(audience.tenant_id)
                    .bind(user_id)
                    .with_filter(&filter, &pattern)
                    .bind(limit)
                    .bind(offset),
                sqlx::query_scalar::<_, i64>(COUNT_USER_SESSIONS)
                    .bind(audience.tenant_id)
                    .bind(user_id)
                    .with_filter(&filter, &pattern),
            ),
            None => (
                sqlx::query(LIST_TENANT_SESSIONS)
                    .bind(audience.tenant_id)
                    .with_filter(&filter, &pattern)
                    .bind(limit)
                    .bind(offset),
                sqlx::query_scalar::<_, i64>(COUNT_TENANT_SESSIONS)
                    .bind(audience.tenant_id)
                    .with_filter(&filter, &pattern),
            ),
        };
        let rows = page.fetch_all(&mut *tx).await.map_err(service_error)?;
        let total = count.fetch_one(&mut *tx).await.map_err(service_error)?;
        commit(tx).await?;
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
        let mut tx = self.begin(owner.tenant_id).await?;
        let rows = sqlx::query(SET_LABEL)
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(key)
            .bind(label)
            .bind(now_ms())
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.first().map(session_of).transpose()
    }

    /// Soft-deletes the live session `key`; whether there was one.
    pub async fn soft_delete(&self, owner: Owner<'_>, key: &str) -> Result<bool, ServiceError> {
        let mut tx = self.begin(owner.tenant_id).await?;
        let result = sqlx::query(SOFT_DELETE)
            .bind(owner.tenant_id)
            .bind(owner.user_id)
            .bind(key)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }
}

/// Inserts the live session `key` of `owner` unless there is one; whether it did.
pub(super) async fn insert_session_if_missing<'e, E>(
    executor: E,
    owner: Owner<'_>,
    key: &str,
    agent_id: &str,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let inserted = sqlx::query(INSERT_SESSION_IF_MISSING)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .bind(agent_id)
        .bind(now_ms())
        .execute(executor)
        .await?;
    Ok(inserted.rows_affected() > 0)
}

async fn select_live_session<'e, E>(
    executor: E,
    owner: Owner<'_>,
    key: &str,
) -> Result<Option<Session>, ServiceError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(SELECT_LIVE_SESSION)
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .bind(key)
        .fetch_optional(executor)
        .await
        .map_err(service_error)?;
    row.as_ref().map(session_of).transpose()
}
