//! Device tokens: one per (device, role), stored as the SHA-256 of the token,
//! in the tenant (and under the user) of their device.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Tx, service_error};
use sqlx::any::AnyRow;

use super::{Columns, DeviceRecord, Scope, Store, commit, list_to_text};

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

pub(super) const TOKEN_COLUMNS: &str = "device_id, role, tenant_id, user_id, token_hash, scopes, created_at, \
    rotated_at, revoked_at, last_used_at";

impl Store {
    /// The token of (`device_id`, `role`) in `tenant` (the device's tenant).
    pub async fn token(
        &self,
        tenant: &str,
        device_id: &str,
        role: &str,
    ) -> Result<Option<TokenRecord>, ServiceError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM device_tokens \
             WHERE tenant_id = $1 AND device_id = $2 AND role = $3"
        );
        let mut tx = self.read_tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(device_id)
            .bind(role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
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
        let mut tx = self.read_tx(tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(device_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(token_of).collect()
    }

    /// Stores `hash` as the token of (`device`, `role`) with `scopes`, replacing
    /// (and un-revoking) any previous one, in the device's tenant.
    pub async fn put_token(
        &self,
        device: &DeviceRecord,
        role: &str,
        hash: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<TokenRecord, ServiceError> {
        let mut tx = self.tx(&device.tenant_id).await?;
        let record = upsert_token(&mut tx, device, role, hash, scopes, now).await?;
        commit(tx).await?;
        Ok(record)
    }

    /// Marks the token of (`device_id`, `role`) in `scope` revoked.
    pub async fn revoke_token(
        &self,
        scope: Scope<'_>,
        device_id: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<TokenRecord>, ServiceError> {
        let sql = format!(
            "UPDATE device_tokens SET revoked_at = $5 \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND device_id = $3 AND role = $4 \
             RETURNING {TOKEN_COLUMNS}"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(device_id)
            .bind(role)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(token_of).transpose()
    }

    /// Records a use of the token of (`device_id`, `role`) in `tenant`.
    pub async fn touch_token(
        &self,
        tenant: &str,
        device_id: &str,
        role: &str,
        now: i64,
    ) -> Result<(), ServiceError> {
        // A last-seen time: not worth a WAL flush per connect.
        let mut tx = self.db.begin_tenant_bookkeeping(tenant).await?;
        sqlx::query(
            "UPDATE device_tokens SET last_used_at = $4 \
             WHERE tenant_id = $1 AND device_id = $2 AND role = $3",
        )
        .bind(tenant)
        .bind(device_id)
        .bind(role)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        commit(tx).await
    }
}

/// Revokes every live device token of `user` in `tenant`, inside `tx`.
pub(super) async fn revoke_user_tokens(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    now: i64,
) -> Result<u64, ServiceError> {
    let result = sqlx::query(
        "UPDATE device_tokens SET revoked_at = $3 \
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at = 0",
    )
    .bind(tenant)
    .bind(user)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(service_error)?;
    Ok(result.rows_affected())
}

pub(super) async fn upsert_token(
    tx: &mut Tx,
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

pub(super) fn token_of(row: &AnyRow) -> Result<TokenRecord, ServiceError> {
    token_from(Columns::of(row))
}

/// [`token_of`] of the columns `row` holds (perhaps prefixed).
pub(super) fn token_from(row: Columns<'_>) -> Result<TokenRecord, ServiceError> {
    Ok(TokenRecord {
        device_id: row.text("device_id")?,
        role: row.text("role")?,
        tenant_id: row.text("tenant_id")?,
        user_id: row.text("user_id")?,
        token_hash: row.text("token_hash")?,
        scopes: row.list("scopes")?,
        created_at: row.int("created_at")?,
        rotated_at: row.int("rotated_at")?,
        revoked_at: row.int("revoked_at")?,
        last_used_at: row.int("last_used_at")?,
    })
}
