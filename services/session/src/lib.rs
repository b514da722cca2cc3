//! The session service: each user's sessions and their append-only transcripts.
//!
//! It owns the `session` schema (PostgreSQL) or its own SQLite file, and nothing
//! else; other services reach it only through [`clawgate_proto::session::SessionApi`].
//! This module maps requests to the store after validating them ([`validate`]);
//! `store` holds the SQL, [`retention`] the purge of old soft deletions.
//!
//! Invariants:
//! - Every call needs a principal with tenant and user; every row carries both.
//!   Nothing ever crosses tenants: each call runs in one transaction scoped to
//!   the principal's tenant (PostgreSQL row-level security, migration 0002) and
//!   every statement filters by that tenant as well.
//! - Session keys are a per-user namespace. Calls addressed by key
//!   (`ensure_session`, `get_session`, `patch_session`, `delete_session`,
//!   `append_message`, `list_messages`) act on the caller's *own* session with
//!   that key, whatever the caller's access level; another user's session with
//!   the same key is a different session and is never visible through them.
//! - `list_sessions` shows an operator its own sessions, and an admin or owner
//!   ([`Principal::user_filter`] is `None`) the sessions of every user of the
//!   tenant, each carrying its `user_id`; `total` counts the same set.
//! - Sessions are unique on (tenant, user, session key) among live rows.
//!   [`delete_session`](SessionApi::delete_session) is a soft delete that keeps the
//!   transcript; a later `ensure_session` / `append_message` with the same key starts
//!   a fresh, empty session. Each session row has an internal id that its messages
//!   reference, so old and new transcripts never mix.
//! - The transcript is append-only: no message row is ever updated, and rows are
//!   deleted only by [`SessionService::purge_expired`], which removes sessions
//!   soft-deleted longer ago than the retention together with their whole
//!   transcript; the schema enforces both. `seq` counts from 1 without gaps within a
//!   session, also under concurrent appends. With a run id, (session, run id, role)
//!   is unique and appending it again returns the stored row unchanged.
//! - `ensure_session` and `append_message` create a missing session with the
//!   request's `agent_id`; an existing session keeps the agent id it was created with.
//!   `list_messages` of a missing or deleted session is an empty list (not NOT_FOUND).
//! - Bad input is `INVALID_REQUEST` with a message saying what is wrong; database
//!   trouble is `UNAVAILABLE` (retryable) or `INTERNAL` (detail logged only).
//!
//! - Each tenant's agents ([`agents`]) live here too: the default one always
//!   exists, members read them, admins and owners change them.
//! - Every committed change is published as a `SessionChange` ([`changes`]) once
//!   the bus is given ([`SessionService::with_bus`]).
//!
//! Deployment on PostgreSQL: migrate as the role that owns the schema, grant the
//! runtime role its data rights (`Database::grant_to_app_role`), and serve as that
//! role (no `SUPERUSER`/`BYPASSRLS`, not the owner), so row-level security applies.

pub mod agents;
pub mod changes;
pub mod providers;
pub mod retention;
mod store;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::session::{
    Agent, AllowExecRequest, AppendMessageRequest, CreateAgentRequest, DeleteAgentRequest,
    DeleteAgentResponse, DeleteProviderRequest, DeleteProviderResponse, DeleteSessionRequest,
    DeleteSessionResponse, EnsureSessionRequest, GetAgentRequest, GetSessionRequest,
    ListAgentsRequest, ListAgentsResponse, ListMessagesRequest, ListMessagesResponse,
    ListProvidersRequest, ListProvidersResponse, ListSessionsRequest, ListSessionsResponse,
    PatchSessionRequest, PutProviderRequest, ResetSessionRequest, Session, SessionApi,
    TenantProvider, TranscriptMessage, UpdateAgentRequest,
};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::db::Database;

use changes::{ChangeFeed, Reason, change};
use clawgate_runtime::bus::EventBus;
use store::{Audience, Filter, NewMessage, Owner, Store};
use validate::Role;

/// PostgreSQL schema (and SQLite file role) the session service owns.
pub const SCHEMA: &str = "session";

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The session service on a PostgreSQL or SQLite database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionService {
    store: Store,
    /// How long a soft-deleted session is kept before [`Self::purge_expired`] removes it.
    retention: Duration,
    changes: ChangeFeed,
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
            retention: retention::DEFAULT_RETENTION,
            changes: ChangeFeed::default(),
        }
    }

    /// The same service, publishing every change on `bus` ([`changes`]).
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.changes = ChangeFeed::new(bus);
        self
    }

    /// Brings the schema up to date (forward only).
    pub async fn migrate(&self) -> Result<(), ServiceError> {
        self.store
            .database()
            .migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS)
            .await?;
        Ok(())
    }

    /// Grants the runtime role `role` the data rights on this service's schema
    /// (PostgreSQL; nothing to do on SQLite). Run after [`migrate`](Self::migrate),
    /// connected as the role that owns the schema; then serve connected as `role`.
    pub async fn grant_to_app_role(&self, role: &str) -> Result<(), ServiceError> {
        self.store.database().grant_to_app_role(role).await?;
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

/// Whose sessions `principal` lists: its own, or its whole tenant's.
fn audience(principal: &Principal) -> Result<Audience<'_>, ServiceError> {
    principal.require()?;
    Ok(Audience {
        tenant_id: &principal.tenant_id,
        user_id: principal.user_filter(),
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
        let (session, created) = self
            .store
            .ensure_session(owner, &request.session_key, &request.agent_id)
            .await?;
        if created {
            self.changes.publish(change(Reason::Create, &session, None));
        }
        Ok(session)
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
        let audience = audience(principal)?;
        validate::optional_id("agent_id", &request.agent_id)?;
        validate::filter_text("label", &request.label)?;
        validate::filter_text("search", &request.search)?;
        let limit = validate::page_size(
            request.limit,
            validate::DEFAULT_SESSION_LIMIT,
            validate::MAX_SESSION_LIMIT,
        );
        let filter = Filter {
            agent_id: &request.agent_id,
            label: &request.label,
            search: &request.search,
            updated_since_ms: request.updated_since_ms.max(0),
            exclude_global: request.exclude_global,
            exclude_unknown: request.exclude_unknown,
        };
        let (sessions, total) = self
            .store
            .list_sessions(audience, filter, limit, i64::from(request.offset))
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
                let patched = self
                    .store
                    .set_label(owner, &request.session_key, label)
                    .await?;
                if let Some(session) = &patched {
                    self.changes.publish(change(Reason::Patch, session, None));
                }
                patched
            }
            None => self.store.get_session(owner, &request.session_key).await?,
        };
        patched.ok_or_else(|| session_not_found(&request.session_key))
    }

    async fn reset_session(
        &self,
        principal: &Principal,
        request: ResetSessionRequest,
    ) -> Result<Session, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        validate::optional_id("agent_id", &request.agent_id)?;
        let reason = match request.reason.as_str() {
            "" | "reset" => Reason::Reset,
            "new" => Reason::New,
            other => {
                return Err(ServiceError::invalid(format!(
                    "reason must be \"new\" or \"reset\", not {other:?}"
                )));
            }
        };
        let fresh = self
            .store
            .reset_session(owner, &request.session_key, &request.agent_id)
            .await?;
        self.changes.publish(change(reason, &fresh, None));
        Ok(fresh)
    }

    async fn delete_session(
        &self,
        principal: &Principal,
        request: DeleteSessionRequest,
    ) -> Result<DeleteSessionResponse, ServiceError> {
        let owner = owner(principal)?;
        validate::session_key(&request.session_key)?;
        let Some(session) = self.store.get_session(owner, &request.session_key).await? else {
            return Ok(DeleteSessionResponse { deleted: false });
        };
        let deleted = self.store.soft_delete(owner, &request.session_key).await?;
        if deleted {
            self.changes.publish(change(Reason::Delete, &session, None));
        }
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
        validate::tool_data(role, &request)?;
        let message = NewMessage {
            session_key: &request.session_key,
            agent_id: &request.agent_id,
            role,
            content: &request.content,
            run_id: &request.run_id,
            status,
            error: &request.error,
            // A step that only called tools leaves the preview as it was.
            preview: (role.sets_preview()
                && (!request.content.is_empty() || request.tool_calls.is_empty()))
            .then(|| validate::preview(&request.content)),
            part: request.part,
            tool_calls: &request.tool_calls,
            tool_call_id: &request.tool_call_id,
            tool_name: &request.tool_name,
            tool_error: request.tool_error,
        };
        let (stored, fresh) = self.store.append(owner, &message).await?;
        if fresh {
            // The session as the append left it (count, preview, time).
            match self.store.get_session(owner, &request.session_key).await {
                Ok(Some(session)) => {
                    self.changes
                        .publish(change(Reason::Message, &session, Some(&stored)));
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "session unreadable after an append"),
            }
        }
        Ok(stored)
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

    async fn list_agents(
        &self,
        principal: &Principal,
        _request: ListAgentsRequest,
    ) -> Result<ListAgentsResponse, ServiceError> {
        agents::list(&self.store, principal).await
    }

    async fn get_agent(
        &self,
        principal: &Principal,
        request: GetAgentRequest,
    ) -> Result<Agent, ServiceError> {
        agents::get(&self.store, principal, &request.agent_id).await
    }

    async fn create_agent(
        &self,
        principal: &Principal,
        request: CreateAgentRequest,
    ) -> Result<Agent, ServiceError> {
        agents::create(&self.store, principal, request).await
    }

    async fn update_agent(
        &self,
        principal: &Principal,
        request: UpdateAgentRequest,
    ) -> Result<Agent, ServiceError> {
        agents::update(&self.store, principal, request).await
    }

    async fn delete_agent(
        &self,
        principal: &Principal,
        request: DeleteAgentRequest,
    ) -> Result<DeleteAgentResponse, ServiceError> {
        agents::delete(&self.store, principal, request).await
    }

    async fn allow_exec(
        &self,
        principal: &Principal,
        request: AllowExecRequest,
    ) -> Result<Agent, ServiceError> {
        agents::allow_exec(&self.store, principal, request).await
    }

    async fn list_providers(
        &self,
        principal: &Principal,
        _request: ListProvidersRequest,
    ) -> Result<ListProvidersResponse, ServiceError> {
        providers::list(&self.store, principal).await
    }

    async fn put_provider(
        &self,
        principal: &Principal,
        request: PutProviderRequest,
    ) -> Result<TenantProvider, ServiceError> {
        providers::put(&self.store, principal, request).await
    }

    async fn delete_provider(
        &self,
        principal: &Principal,
        request: DeleteProviderRequest,
    ) -> Result<DeleteProviderResponse, ServiceError> {
        providers::delete(&self.store, principal, request).await
    }
}
