//! Users: memberships of a tenant with a role (`admin`, `operator`, `viewer`).
//!
//! Invariants: a membership is removed softly (`deleted_at` > 0) so the row
//! keeps refusing the user's credentials; removal revokes, in the same
//! transaction, the user's API keys and device tokens, unpairs its goclaw
//! senders and rejects its pending codes; putting the user again restores it.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::service_error;
use sqlx::any::AnyRow;

use super::{Columns, Scope, Store, commit};

/// A membership as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub tenant_id: String,
    pub user_id: String,
    pub role: String,
    pub display_name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: i64,
}

impl UserRecord {
    pub fn is_removed(&self) -> bool {
        self.deleted_at > 0
    }
}

pub(super) const COLUMNS: &str =
    "tenant_id, user_id, role, display_name, created_at, updated_at, deleted_at";

impl Store {
    /// The membership of `user` in `tenant`, removed or not.
    pub async fn user(&self, tenant: &str, user: &str) -> Result<Option<UserRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND user_id = $2");
        let mut tx = self.tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(user_of).transpose()
    }

    /// The current (not removed) users of `scope`, by user id.
    pub async fn users(&self, scope: Scope<'_>) -> Result<Vec<UserRecord>, ServiceError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) \
             AND deleted_at = 0 ORDER BY user_id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(user_of).collect()
    }

    /// Creates or updates (and restores) the membership of `user` in `tenant`.
    pub async fn put_user(
        &self,
        tenant: &str,
        user: &str,
        role: &str,
        display_name: &str,
        now: i64,
    ) -> Result<UserRecord, ServiceError> {
        let sql = format!(
            "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $5, 0) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role, \
                 display_name = excluded.display_name, updated_at = excluded.updated_at, \
                 deleted_at = 0 \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(user)
            .bind(role)
            .bind(display_name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        user_of(&row)
    }

    /// Removes the current membership of `user` in `tenant` and revokes its
    /// credentials there, in one transaction. Whether there was one.
    pub async fn remove_user(
        &self,
        tenant: &str,
        user: &str,
        now: i64,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.tx(tenant).await?;
        let removed = sqlx::query(
            "UPDATE users SET deleted_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND user_id = $2 AND deleted_at = 0",
        )
        .bind(tenant)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?
        .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        super::api_keys::revoke_user_keys(&mut tx, tenant, user, now).await?;
        super::tokens::revoke_user_tokens(&mut tx, tenant, user, now).await?;
        super::codes::forget_user_senders(&mut tx, tenant, user, now).await?;
        sqlx::query("DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(true)
    }
}

pub(super) fn user_of(row: &AnyRow) -> Result<UserRecord, ServiceError> {
    user_from(Columns::of(row))
}

/// [`user_of`] of the columns `row` holds (perhaps prefixed).
pub(super) fn user_from(row: Columns<'_>) -> Result<UserRecord, ServiceError> {
    Ok(UserRecord {
        tenant_id: row.text("tenant_id")?,
        user_id: row.text("user_id")?,
        role: row.text("role")?,
        display_name: row.text("display_name")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        deleted_at: row.int("deleted_at")?,
    })
}
