//! Agent rows: list, read, insert, change and delete one tenant's agents.
//!
//! Invariants: every statement runs in a transaction of the caller's tenant and
//! names that tenant in its `WHERE` clause; a change reads and writes its row
//! in one write transaction, so concurrent changes of one agent apply one after
//! the other and a change never brings back an agent deleted meanwhile (on
//! PostgreSQL the row is read `FOR UPDATE`; on SQLite the transaction holds
//! the write lock from its start).

use clawgate_proto::ServiceError;
use clawgate_proto::session::Agent;
use clawgate_runtime::db::{Backend, is_unique_violation, service_error};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Store, commit};

const COLUMNS: &str = "tenant_id, agent_id, name, emoji, avatar, workspace, model, fallbacks, \
    system_prompt, tools, max_tool_steps, timeout_ms, created_at, updated_at, exec_allowlist";

const UPSERT: &str = "INSERT INTO agents (tenant_id, agent_id, name, emoji, avatar, workspace, \
        model, fallbacks, system_prompt, tools, max_tool_steps, timeout_ms, created_at, updated_at, \
        exec_allowlist) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
    ON CONFLICT (tenant_id, agent_id) DO UPDATE SET name = excluded.name, \
        emoji = excluded.emoji, avatar = excluded.avatar, workspace = excluded.workspace, \
        model = excluded.model, fallbacks = excluded.fallbacks, \
        system_prompt = excluded.system_prompt, tools = excluded.tools, \
        max_tool_steps = excluded.max_tool_steps, timeout_ms = excluded.timeout_ms, \
        updated_at = excluded.updated_at, exec_allowlist = excluded.exec_allowlist";

const INSERT: &str = "INSERT INTO agents (tenant_id, agent_id, name, emoji, avatar, workspace, \
        model, fallbacks, system_prompt, tools, max_tool_steps, timeout_ms, created_at, updated_at, \
        exec_allowlist) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

impl Store {
    /// The stored agents of `tenant`, by id.
    pub async fn list_agents(&self, tenant: &str) -> Result<Vec<Agent>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM agents WHERE tenant_id = $1 ORDER BY agent_id");
        let mut tx = self.begin(tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(agent_of).collect()
    }

    /// The stored agent `agent_id` of `tenant`.
    pub async fn get_agent(
        &self,
        tenant: &str,
        agent_id: &str,
    ) -> Result<Option<Agent>, ServiceError> {
        let mut tx = self.begin(tenant).await?;
        let row = select_agent(&mut tx, tenant, agent_id).await?;
        commit(tx).await?;
        row.as_ref().map(agent_of).transpose()
    }

    /// Stores a new agent; `false` when the tenant has one with its id.
    pub async fn insert_agent(&self, agent: &Agent) -> Result<bool, ServiceError> {
        let mut tx = self.begin_write(&agent.tenant_id).await?;
        let inserted = bind(sqlx::query(INSERT), agent).execute(&mut *tx).await;
        match inserted {
            Ok(_) => {
                commit(tx).await?;
                Ok(true)
            }
            Err(err) if is_unique_violation(&err) => Ok(false),
            Err(err) => Err(service_error(err)),
        }
    }

    /// Changes agent `agent_id` of `tenant` with `change`, in one transaction:
    /// the stored row, or `missing` (the default agent before its first
    /// change) when there is none; `None` when there is neither.
    pub async fn change_agent(
        &self,
        tenant: &str,
        agent_id: &str,
        missing: Option<Agent>,
        change: impl FnOnce(&mut Agent) -> Result<(), ServiceError> + Send,
    ) -> Result<Option<Agent>, ServiceError> {
        let mut tx = self.begin_write(tenant).await?;
        if let Some(seed) = &missing {
            // The default agent gets its row before the read, so concurrent
            // first changes of it all lock that one row below.
            let sql = format!("{INSERT} ON CONFLICT (tenant_id, agent_id) DO NOTHING");
            bind(sqlx::query(sqlx::AssertSqlSafe(sql)), seed)
                .execute(&mut *tx)
                .await
                .map_err(service_error)?;
        }
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE",
            // BEGIN IMMEDIATE already holds the database's write lock.
            Backend::Sqlite => "",
        };
        let sql =
            format!("SELECT {COLUMNS} FROM agents WHERE tenant_id = $1 AND agent_id = $2{lock}");
        let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?
            .as_ref()
            .map(agent_of)
            .transpose()?;
        let Some(mut agent) = stored else {
            return Ok(None);
        };
        change(&mut agent)?;
        bind(sqlx::query(UPSERT), &agent)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(Some(agent))
    }

    /// Deletes agent `agent_id` of `tenant`; whether it had a row.
    pub async fn delete_agent(&self, tenant: &str, agent_id: &str) -> Result<bool, ServiceError> {
        let mut tx = self.begin_write(tenant).await?;
        let result = sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant)
            .bind(agent_id)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }
}

async fn select_agent(
    tx: &mut clawgate_runtime::db::Tx,
    tenant: &str,
    agent_id: &str,
) -> Result<Option<AnyRow>, ServiceError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE tenant_id = $1 AND agent_id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(agent_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(service_error)
}

fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    agent: &'q Agent,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&agent.tenant_id)
        .bind(&agent.agent_id)
        .bind(&agent.name)
        .bind(&agent.emoji)
        .bind(&agent.avatar)
        .bind(&agent.workspace)
        .bind(&agent.model)
        .bind(list_text(&agent.fallbacks))
        .bind(&agent.system_prompt)
        .bind(list_text(&agent.tools))
        .bind(i64::from(agent.max_tool_steps))
        .bind(i64::try_from(agent.timeout_ms).unwrap_or(i64::MAX))
        .bind(agent.created_at_ms)
        .bind(agent.updated_at_ms)
        .bind(list_text(&agent.exec_allowlist))
}

fn list_text(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn agent_of(row: &AnyRow) -> Result<Agent, ServiceError> {
    let read = || -> Result<Agent, sqlx::Error> {
        let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
            let text: String = row.try_get(column)?;
            serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
        };
        let steps: i64 = row.try_get("max_tool_steps")?;
        let timeout: i64 = row.try_get("timeout_ms")?;
        Ok(Agent {
            tenant_id: row.try_get("tenant_id")?,
            agent_id: row.try_get("agent_id")?,
            name: row.try_get("name")?,
            emoji: row.try_get("emoji")?,
            avatar: row.try_get("avatar")?,
            workspace: row.try_get("workspace")?,
            model: row.try_get("model")?,
            fallbacks: list("fallbacks")?,
            system_prompt: row.try_get("system_prompt")?,
            tools: list("tools")?,
            max_tool_steps: u32::try_from(steps).unwrap_or_default(),
            timeout_ms: u64::try_from(timeout).unwrap_or_default(),
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
            is_default: false,
            stored: true,
            exec_allowlist: list("exec_allowlist")?,
        })
    };
    read().map_err(service_error)
}
