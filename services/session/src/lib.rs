//! The session service: each user's sessions and their append-only transcripts.
//!
//! It owns the `session` schema (PostgreSQL) or its own SQLite file, and nothing
//! else; other services reach it only through [`clawgate_proto::session::SessionApi`].
//!
//! Invariants:
//! - Every call needs a principal with tenant and user; every row carries both and
//!   every query is scoped by them. Another user's session with the same key is a
//!   different session and is never visible.
//! - Sessions are unique on (tenant, user, session key) among live rows.
//!   [`delete_session`](SessionApi::delete_session) is a soft delete that keeps the
//!   transcript; a later `ensure_session` / `append_message` with the same key starts
//!   a fresh, empty session. Each session row has an internal id that its messages
//!   reference, so old and new transcripts never mix.
//! - The transcript is append-only (no message row is ever updated or deleted; the
//!   schema refuses it too). `seq` counts from 1 without gaps within a session, also
//!   under concurrent appends. With a run id, (session, run id, role) is unique and
//!   appending it again returns the stored row unchanged.
//! - `ensure_session` and `append_message` create a missing session with the
//!   request's `agent_id`; an existing session keeps the agent id it was created with.
//!   `list_messages` of a missing or deleted session is an empty list (not NOT_FOUND).
//! - Bad input is `INVALID_REQUEST` with a message saying what is wrong; database
//!   trouble is `UNAVAILABLE` (retryable) or `INTERNAL` (detail logged only).

mod store;
pub mod validate;

use clawgate_proto::session::{
    AppendMessageRequest, DeleteSessionRequest, DeleteSessionResponse, EnsureSessionRequest,
    GetSessionRequest, ListMessagesRequest, ListMessagesResponse, ListSessionsRequest,
    ListSessionsResponse, PatchSessionRequest, Session, SessionApi, TranscriptMessage,
};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::db::Database;

use store::{NewMessage, Owner, Store};
use validate::Role;

/// PostgreSQL schema (and SQLite file role) the session service owns.
pub const SCHEMA: &str = "session";

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The session service on a PostgreSQL or SQLite database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionService {
    store: Store,
}

impl SessionService {
    /// Connects to `database_url` (`postgres://…` or `sqlite://…?mode=rwc`), using
    /// schema [`SCHEMA`] on PostgreSQL. Call [`migrate`](Self::migrate) before use.
    pub async fn connect(database_url: &str) -> Result<Self, ServiceError> {
        let db = Database::connect(database_url, SCHEMA).await?;
        Ok(Self::from_database(db))
    }

    /// The service on an already connected database (which must be this service's own).
    pub fn from_database(db: Database) -> Self {
        Self {
            store: Store::new(db),
        }
    }

    /// Brings the schema up to date (forward only).
    pub async fn migrate(&self) -> Result<(), ServiceError> {
        self.store
            .database()
            .migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS)
            .await?;
        Ok(())
    }

    /// Closes the database pool.
    pub async fn close(&self) {
        self.store.database().close().await;
    }
}

fn owner(principal: &Principal) -> Result<Owner<'_>, ServiceError> {
    principal.require()?;
    Ok(Owner {
        tenant_id: &principal.tenant_id,
        user_id: &principal.user_id,
    })
}

fn session_not_found(key: &str) -> ServiceError {
    ServiceError::not_found(format!("session {key:?} not found"))
}

#[async_trait::async_trait]
impl SessionApi for SessionService {
    async fn ensure_session(
        &self,
        principal: &Principal,
        request: EnsureSessionRequest,
    ) -> Result<Session, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        validate::optional_id("agent_id", &request.agent_id)?;
        self.store
            .ensure_session(owner, &request.session_key, &request.agent_id)
            .await
    }

    async fn get_session(
        &self,
        principal: &Principal,
        request: GetSessionRequest,
    ) -> Result<Session, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        self.store
            .get_session(owner, &request.session_key)
            .await?
            .ok_or_else(|| session_not_found(&request.session_key))
    }

    async fn list_sessions(
        &self,
        principal: &Principal,
        request: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, ServiceError> {
        let owner = owner(principal)?;
        validate::optional_id("agent_id", &request.agent_id)?;
        let limit = validate::page_size(
            request.limit,
            validate::DEFAULT_SESSION_LIMIT,
            validate::MAX_SESSION_LIMIT,
        );
        let (sessions, total) = self
            .store
            .list_sessions(owner, &request.agent_id, limit, i64::from(request.offset))
            .await?;
        Ok(ListSessionsResponse { sessions, total })
    }

    async fn patch_session(
        &self,
        principal: &Principal,
        request: PatchSessionRequest,
    ) -> Result<Session, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        let patched = match &request.label {
            Some(label) => {
                validate::label(label)?;
                self.store
                    .set_label(owner, &request.session_key, label)
                    .await?
            }
            None => self.store.get_session(owner, &request.session_key).await?,
        };
        patched.ok_or_else(|| session_not_found(&request.session_key))
    }

    async fn delete_session(
        &self,
        principal: &Principal,
        request: DeleteSessionRequest,
    ) -> Result<DeleteSessionResponse, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        let deleted = self.store.soft_delete(owner, &request.session_key).await?;
        Ok(DeleteSessionResponse { deleted })
    }

    async fn append_message(
        &self,
        principal: &Principal,
        request: AppendMessageRequest,
    ) -> Result<TranscriptMessage, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        let role = Role::parse(&request.role)?;
        validate::content(&request.content)?;
        validate::optional_id("run_id", &request.run_id)?;
        validate::optional_id("agent_id", &request.agent_id)?;
        validate::error_text(&request.error)?;
        let status = validate::status(request.status)?;
        let message = NewMessage {
            session_key: &request.session_key,
            agent_id: &request.agent_id,
            role,
            content: &request.content,
            run_id: &request.run_id,
            status,
            error: &request.error,
            preview: role
                .sets_preview()
                .then(|| validate::preview(&request.content)),
        };
        self.store.append(owner, &message).await
    }

    async fn list_messages(
        &self,
        principal: &Principal,
        request: ListMessagesRequest,
    ) -> Result<ListMessagesResponse, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        let limit = validate::page_size(
            request.limit,
            validate::DEFAULT_MESSAGE_LIMIT,
            validate::MAX_MESSAGE_LIMIT,
        );
        let messages = self
            .store
            .recent_messages(owner, &request.session_key, limit)
            .await?;
        Ok(ListMessagesResponse { messages })
    }
}
