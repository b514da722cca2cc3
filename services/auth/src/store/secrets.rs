//! Tenant secrets as stored: sealed bytes (base64) and the id of the key that
//! sealed them. Plaintext never reaches this module; sealing and opening happen
//! in the service (`crate::secrets`).

use clawgate_proto::ServiceError;
use clawgate_runtime::db::service_error;
use sqlx::any::AnyRow;

use super::{Store, commit, int, text};

/// A sealed secret of a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub tenant_id: String,
    pub name: String,
    pub key_id: String,
    /// Base64 of nonce ‖ ciphertext ‖ tag.
    pub ciphertext: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "tenant_id, name, key_id, ciphertext, created_at, updated_at";

impl Store {
    /// Creates or replaces secret `name` of `tenant`.
    pub async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        key_id: &str,
        ciphertext: &str,
        now: i64,
    ) -> Result<SecretRecord, ServiceError> {
        let sql = format!(
            "INSERT INTO secrets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET key_id = excluded.key_id, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(name)
            .bind(key_id)
            .bind(ciphertext)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        secret_of(&row)
    }

    /// Secret `name` of `tenant`.
    pub async fn secret(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<SecretRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM secrets WHERE tenant_id = $1 AND name = $2");
        let mut tx = self.tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(secret_of).transpose()
    }

    /// The secrets of `tenant`, by name.
    pub async fn secrets(&self, tenant: &str) -> Result<Vec<SecretRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM secrets WHERE tenant_id = $1 ORDER BY name");
        let mut tx = self.tx(tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(secret_of).collect()
    }

    /// Deletes secret `name` of `tenant`; whether it existed.
    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, ServiceError> {
        let mut tx = self.tx(tenant).await?;
        let result = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }
}

fn secret_of(row: &AnyRow) -> Result<SecretRecord, ServiceError> {
    Ok(SecretRecord {
        tenant_id: text(row, "tenant_id")?,
        name: text(row, "name")?,
        key_id: text(row, "key_id")?,
        ciphertext: text(row, "ciphertext")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}
