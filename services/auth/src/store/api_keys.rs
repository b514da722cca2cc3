//! goclaw API keys, stored as the SHA-256 of the key.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::service_error;
use sqlx::any::AnyRow;

use super::{Store, int, list, list_to_text, text};

/// A key to store (its hash; the key itself is never stored).
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub tenant_id: String,
    pub owner_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub expires_at: i64,
}

#[derive(Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: i64,
    pub last_used_at: i64,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at == 0 && (self.expires_at == 0 || self.expires_at > now)
    }
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("prefix", &self.prefix)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, tenant_id, owner_id, name, prefix, key_hash, scopes, created_by, \
    created_at, expires_at, revoked_at, last_used_at";

impl Store {
    pub async fn insert_api_key(
        &self,
        new: &NewApiKey,
        now: i64,
    ) -> Result<ApiKeyRecord, ServiceError> {
        let sql = format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&new.tenant_id)
            .bind(&new.owner_id)
            .bind(&new.name)
            .bind(&new.prefix)
            .bind(&new.key_hash)
            .bind(list_to_text(&new.scopes))
            .bind(&new.created_by)
            .bind(now)
            .bind(new.expires_at)
            .fetch_one(self.db.pool())
            .await
            .map_err(service_error)?;
        key_of(&row)
    }

    /// The key whose hash is `key_hash`, in whatever tenant (live or not).
    pub async fn api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_hash)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(key_of).transpose()
    }

    /// The keys of `tenant` (`''`: system keys), newest first.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, ServiceError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(key_of).collect()
    }

    /// Revokes key `id` of one of `tenants`; the key afterwards, if it exists there.
    pub async fn revoke_api_key(
        &self,
        tenants: &[&str],
        id: &str,
        now: i64,
    ) -> Result<Option<ApiKeyRecord>, ServiceError> {
        for tenant in tenants {
            let sql = format!(
                "UPDATE api_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN $3 ELSE revoked_at END \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(*tenant)
                .bind(id)
                .bind(now)
                .fetch_optional(self.db.pool())
                .await
                .map_err(service_error)?;
            if let Some(row) = row {
                return Ok(Some(key_of(&row)?));
            }
        }
        Ok(None)
    }

    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<(), ServiceError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(service_error)?;
        Ok(())
    }
}

fn key_of(row: &AnyRow) -> Result<ApiKeyRecord, ServiceError> {
    Ok(ApiKeyRecord {
        id: text(row, "id")?,
        tenant_id: text(row, "tenant_id")?,
        owner_id: text(row, "owner_id")?,
        name: text(row, "name")?,
        prefix: text(row, "prefix")?,
        key_hash: text(row, "key_hash")?,
        scopes: list(row, "scopes")?,
        created_by: text(row, "created_by")?,
        created_at: int(row, "created_at")?,
        expires_at: int(row, "expires_at")?,
        revoked_at: int(row, "revoked_at")?,
        last_used_at: int(row, "last_used_at")?,
    })
}
