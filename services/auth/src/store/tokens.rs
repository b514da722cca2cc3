//! Device tokens: one per (device, role), stored as the SHA-256 of the token.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::service_error;
use sqlx::any::AnyRow;

use super::{DeviceRecord, Store, int, list, list_to_text, text};

/// A device token as stored: its hash, never the token.
#[derive(Clone, PartialEq)]
pub struct TokenRecord {
    pub device_id: String,
    pub role: String,
    pub tenant_id: String,
    pub user_id: String,
    pub token_hash: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub rotated_at: i64,
    pub revoked_at: i64,
    pub last_used_at: i64,
}

impl TokenRecord {
    /// `rotatedAtMs ?? createdAtMs`.
    pub fn issued_at(&self) -> i64 {
        if self.rotated_at > 0 {
            self.rotated_at
        } else {
            self.created_at
        }
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at > 0
    }
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("device_id", &self.device_id)
            .field("role", &self.role)
            .field("tenant_id", &self.tenant_id)
            .field("scopes", &self.scopes)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

const TOKEN_COLUMNS: &str = "device_id, role, tenant_id, user_id, token_hash, scopes, created_at, \
    rotated_at, revoked_at, last_used_at";

impl Store {
    /// The token of (`device_id`, `role`), in whatever tenant.
    pub async fn token(
        &self,
        device_id: &str,
        role: &str,
    ) -> Result<Option<TokenRecord>, ServiceError> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM device_tokens WHERE device_id = $1 AND role = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device_id)
            .bind(role)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(token_of).transpose()
    }

    /// Every token of `device_id` in `tenant`.
    pub async fn tokens(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Vec<TokenRecord>, ServiceError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM device_tokens WHERE tenant_id = $1 AND device_id = $2 \
             ORDER BY role"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(device_id)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(token_of).collect()
    }

    /// Stores `hash` as the token of (`device`, `role`) with `scopes`, replacing
    /// (and un-revoking) any previous one.
    pub async fn put_token(
        &self,
        device: &DeviceRecord,
        role: &str,
        hash: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<TokenRecord, ServiceError> {
        let mut tx = self.db.pool().begin().await.map_err(service_error)?;
        let record = upsert_token(&mut tx, device, role, hash, scopes, now).await?;
        tx.commit().await.map_err(service_error)?;
        Ok(record)
    }

    /// Marks the token of (`device_id`, `role`) in `tenant` revoked.
    pub async fn revoke_token(
        &self,
        tenant: &str,
        device_id: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<TokenRecord>, ServiceError> {
        let sql = format!(
            "UPDATE device_tokens SET revoked_at = $4 \
             WHERE tenant_id = $1 AND device_id = $2 AND role = $3 RETURNING {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(device_id)
            .bind(role)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(token_of).transpose()
    }

    /// Records a use of the token of (`device_id`, `role`).
    pub async fn touch_token(
        &self,
        device_id: &str,
        role: &str,
        now: i64,
    ) -> Result<(), ServiceError> {
        sqlx::query(
            "UPDATE device_tokens SET last_used_at = $3 WHERE device_id = $1 AND role = $2",
        )
        .bind(device_id)
        .bind(role)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(())
    }
}

pub(super) async fn upsert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device: &DeviceRecord,
    role: &str,
    hash: &str,
    scopes: &[String],
    now: i64,
) -> Result<TokenRecord, ServiceError> {
    let sql = format!(
        "INSERT INTO device_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0) \
         ON CONFLICT (device_id, role) DO UPDATE SET tenant_id = excluded.tenant_id, \
             user_id = excluded.user_id, token_hash = excluded.token_hash, \
             scopes = excluded.scopes, rotated_at = excluded.created_at, revoked_at = 0 \
         RETURNING {TOKEN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&device.device_id)
        .bind(role)
        .bind(&device.tenant_id)
        .bind(&device.user_id)
        .bind(hash)
        .bind(list_to_text(scopes))
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(service_error)?;
    token_of(&row)
}

fn token_of(row: &AnyRow) -> Result<TokenRecord, ServiceError> {
    Ok(TokenRecord {
        device_id: text(row, "device_id")?,
        role: text(row, "role")?,
        tenant_id: text(row, "tenant_id")?,
        user_id: text(row, "user_id")?,
        token_hash: text(row, "token_hash")?,
        scopes: list(row, "scopes")?,
        created_at: int(row, "created_at")?,
        rotated_at: int(row, "rotated_at")?,
        revoked_at: int(row, "revoked_at")?,
        last_used_at: int(row, "last_used_at")?,
    })
}
