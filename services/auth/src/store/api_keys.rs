//! goclaw API keys, stored as the SHA-256 of the key. Every key belongs to a
//! tenant and acts as a user of it: its `owner_id`, or its creator when unset.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Tx, service_error};
use sqlx::any::AnyRow;

use super::{Scope, Store, commit, int, list, list_to_text, text};

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
    /// The user connections with this key act as.
    pub fn user(&self) -> &str {
        if self.owner_id.is_empty() {
            &self.created_by
        } else {
            &self.owner_id
        }
    }

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

/// `(owner_id, or created_by when no owner)` is `$n`, or `$n` is empty.
const USER_FILTER: &str = "($2 = '' OR owner_id = $2 OR (owner_id = '' AND created_by = $2))";

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
        let mut tx = self.tx(&new.tenant_id).await?;
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
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        key_of(&row)
    }

    /// The key whose hash is `key_hash`, in whatever tenant (live or not).
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, ServiceError> {
        let Some(tenant) = self.api_key_tenant(key_hash).await? else {
            return Ok(None);
        };
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND key_hash = $2");
        let mut tx = self.tx(&tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant)
            .bind(key_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(key_of).transpose()
    }

    /// The keys of `scope`, newest first.
    pub async fn api_keys(&self, scope: Scope<'_>) -> Result<Vec<ApiKeyRecord>, ServiceError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND {USER_FILTER} \
             ORDER BY created_at DESC, id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(key_of).collect()
    }

    /// Revokes key `id` of `scope`; the key afterwards, if it exists there.
    pub async fn revoke_api_key(
        &self,
        scope: Scope<'_>,
        id: &str,
        now: i64,
    ) -> Result<Option<ApiKeyRecord>, ServiceError> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN $4 ELSE revoked_at END \
             WHERE tenant_id = $1 AND {USER_FILTER} AND id = $3 RETURNING {COLUMNS}"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(key_of).transpose()
    }

    pub async fn touch_api_key(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<(), ServiceError> {
        let mut tx = self.tx(tenant).await?;
        sqlx::query("UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await
    }
}

/// Revokes every live key of `user` in `tenant` (owned by it, or created by it
/// without an owner), inside `tx`.
pub(super) async fn revoke_user_keys(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    now: i64,
) -> Result<u64, ServiceError> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = $3 \
         WHERE tenant_id = $1 AND $2 <> '' AND {USER_FILTER} AND revoked_at = 0"
    );
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(user)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(service_error)?;
    Ok(result.rows_affected())
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
