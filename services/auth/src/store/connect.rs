//! What a device-signed connect reads and writes, in as few round trips as
//! the checks allow: the paired device, its token of the role and its user in
//! one tenant transaction ([`Store::paired_facts`]), and the connect's
//! last-seen times of device and token in one bookkeeping transaction
//! ([`Store::touch_connect`], which the service runs off the connect's path).
//!
//! Invariant: the rows are read exactly as the separate reads would read
//! them (the same statements, in the device's tenant transaction); the
//! bookkeeping write is not flushed per commit (it only records when a
//! device was last seen).

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{commit, service_error};

use super::devices::{DEVICE_COLUMNS, device_of};
use super::tokens::{TOKEN_COLUMNS, token_of};
use super::users::{COLUMNS as USER_COLUMNS, user_of};
use super::{DeviceRecord, Store, TokenRecord, UserRecord};

/// A paired device as a connect needs it.
#[derive(Debug, Clone)]
pub struct PairedFacts {
    pub device: DeviceRecord,
    /// Its token of the connect's role, if one was issued.
    pub token: Option<TokenRecord>,
    /// Its user's row, if the user has one.
    pub user: Option<UserRecord>,
}

/// The last-seen facts of one connect of a paired device.
#[derive(Debug, Clone)]
pub struct ConnectSeen {
    pub tenant: String,
    pub device_id: String,
    /// Also the token of this role was used.
    pub token_role: Option<String>,
    pub display_name: String,
    pub client_id: String,
    pub client_mode: String,
    pub remote_ip: String,
    pub now: i64,
}

impl Store {
    /// The paired device `device_id` (of whichever tenant it belongs to), with
    /// its token of `role` and its user; `None` when it is not paired.
    pub async fn paired_facts(
        &self,
        device_id: &str,
        role: &str,
    ) -> Result<Option<PairedFacts>, ServiceError> {
        if device_id.is_empty() {
            return Ok(None);
        }
        let Some(tenant) = self.device_tenant(device_id).await? else {
            return Ok(None);
        };
        let mut tx = self.tx(&tenant).await?;
        let device_sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND device_id = $2");
        let device = sqlx::query(sqlx::AssertSqlSafe(device_sql))
            .bind(&tenant)
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        let Some(device) = device.as_ref().map(device_of).transpose()? else {
            commit(tx).await?;
            return Ok(None);
        };
        let token_sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM device_tokens \
             WHERE tenant_id = $1 AND device_id = $2 AND role = $3"
        );
        let token = sqlx::query(sqlx::AssertSqlSafe(token_sql))
            .bind(&tenant)
            .bind(device_id)
            .bind(role)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        let user_sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND user_id = $2");
        let user = sqlx::query(sqlx::AssertSqlSafe(user_sql))
            .bind(&tenant)
            .bind(&device.user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        Ok(Some(PairedFacts {
            device,
            token: token.as_ref().map(token_of).transpose()?,
            user: user.as_ref().map(user_of).transpose()?,
        }))
    }

    /// Records a connect of a paired device: its unpinned metadata and
    /// last-seen time, and the last use of its token of `token_role`.
    pub async fn touch_connect(&self, seen: &ConnectSeen) -> Result<(), ServiceError> {
        let mut tx = self.db.begin_tenant_bookkeeping(&seen.tenant).await?;
        sqlx::query(
            "UPDATE devices SET display_name = CASE WHEN $3 = '' THEN display_name ELSE $3 END, \
                    client_id = $4, client_mode = $5, remote_ip = $6, last_seen_at = $7 \
             WHERE tenant_id = $1 AND device_id = $2",
        )
        .bind(&seen.tenant)
        .bind(&seen.device_id)
        .bind(&seen.display_name)
        .bind(&seen.client_id)
        .bind(&seen.client_mode)
        .bind(&seen.remote_ip)
        .bind(seen.now)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        if let Some(role) = &seen.token_role {
            sqlx::query(
                "UPDATE device_tokens SET last_used_at = $4 \
                 WHERE tenant_id = $1 AND device_id = $2 AND role = $3",
            )
            .bind(&seen.tenant)
            .bind(&seen.device_id)
            .bind(role)
            .bind(seen.now)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        }
        commit(tx).await
    }
}
