//! Provider rows: list, upsert and delete one tenant's model providers.
//!
//! Invariant: every statement runs in a transaction of the caller's tenant and
//! names that tenant in its `WHERE` clause (or row), like every tenant table.

use clawgate_proto::ServiceError;
use clawgate_proto::session::TenantProvider;
use clawgate_runtime::db::service_error;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Store, commit};

const COLUMNS: &str =
    "tenant_id, provider_id, kind, base_url, models, api_key_secret, created_at, updated_at";

impl Store {
    /// The providers of `tenant`, by id.
    pub async fn list_providers(&self, tenant: &str) -> Result<Vec<TenantProvider>, ServiceError> {
        let sql =
            format!("SELECT {COLUMNS} FROM providers WHERE tenant_id = $1 ORDER BY provider_id");
        let mut tx = self.begin(tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(provider_of).collect()
    }

    /// Stores `provider` (replacing the tenant's one of its id, whose creation
    /// time is kept); returns it as stored.
    pub async fn put_provider(
        &self,
        provider: &TenantProvider,
    ) -> Result<TenantProvider, ServiceError> {
        let models = serde_json::to_string(&provider.models).unwrap_or_else(|_| "[]".to_owned());
        let sql = format!(
            "INSERT INTO providers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, provider_id) DO UPDATE SET kind = excluded.kind, \
                 base_url = excluded.base_url, models = excluded.models, \
                 api_key_secret = excluded.api_key_secret, updated_at = excluded.updated_at \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.begin_write(&provider.tenant_id).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&provider.tenant_id)
            .bind(&provider.provider_id)
            .bind(&provider.kind)
            .bind(&provider.base_url)
            .bind(models)
            .bind(&provider.api_key_secret)
            .bind(provider.created_at_ms)
            .bind(provider.updated_at_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        provider_of(&row)
    }

    /// Deletes provider `provider_id` of `tenant`; whether it had one.
    pub async fn delete_provider(
        &self,
        tenant: &str,
        provider_id: &str,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.begin_write(tenant).await?;
        let result = sqlx::query("DELETE FROM providers WHERE tenant_id = $1 AND provider_id = $2")
            .bind(tenant)
            .bind(provider_id)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }
}

fn provider_of(row: &AnyRow) -> Result<TenantProvider, ServiceError> {
    let read = || -> Result<TenantProvider, sqlx::Error> {
        let models: String = row.try_get("models")?;
        Ok(TenantProvider {
            tenant_id: row.try_get("tenant_id")?,
            provider_id: row.try_get("provider_id")?,
            kind: row.try_get("kind")?,
            base_url: row.try_get("base_url")?,
            models: serde_json::from_str(&models)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
            api_key_secret: row.try_get("api_key_secret")?,
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
        })
    };
    read().map_err(service_error)
}
