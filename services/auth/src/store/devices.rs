//! OpenClaw devices: paired records and pending pairing requests.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{is_unique_violation, service_error};
use sqlx::any::AnyRow;

use super::{Store, int, list, list_to_text, text};

/// An approved device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub public_key: String,
    pub display_name: String,
    pub platform: String,
    pub device_family: String,
    pub client_id: String,
    pub client_mode: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub remote_ip: String,
    pub created_at: i64,
    pub approved_at: i64,
    pub last_seen_at: i64,
}

/// What a connect asks to have approved.
#[derive(Clone, Debug)]
pub struct NewDeviceRequest {
    pub tenant_id: String,
    pub user_id: String,
    pub device_id: String,
    pub public_key: String,
    pub display_name: String,
    pub platform: String,
    pub device_family: String,
    pub client_id: String,
    pub client_mode: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub reason: String,
    pub remote_ip: String,
    pub expires_at: i64,
}

/// A pending pairing request (merged across connects of the same device).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRequest {
    pub request_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub device_id: String,
    pub public_key: String,
    pub display_name: String,
    pub platform: String,
    pub device_family: String,
    pub client_id: String,
    pub client_mode: String,
    pub role: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub reason: String,
    pub remote_ip: String,
    pub created_at: i64,
    pub expires_at: i64,
}

const DEVICE_COLUMNS: &str = "device_id, tenant_id, user_id, public_key, display_name, platform, \
    device_family, client_id, client_mode, roles, scopes, remote_ip, created_at, approved_at, \
    last_seen_at";

const REQUEST_COLUMNS: &str = "request_id, tenant_id, user_id, device_id, public_key, \
    display_name, platform, device_family, client_id, client_mode, role, roles, scopes, reason, \
    remote_ip, created_at, expires_at";

/// How often a request insert is retried after losing a race on the device index.
const INSERT_ATTEMPTS: usize = 3;

impl Store {
    /// The paired device `device_id`, in whatever tenant it belongs to. Only for a
    /// device id derived from a verified key.
    pub async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, ServiceError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(device_of).transpose()
    }

    /// The paired devices of `tenant`, or only `device_id` when given.
    pub async fn devices(
        &self,
        tenant: &str,
        only_device: Option<&str>,
    ) -> Result<Vec<DeviceRecord>, ServiceError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE tenant_id = $1 AND ($2 = '' OR device_id = $2) ORDER BY approved_at, device_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(only_device.unwrap_or(""))
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(device_of).collect()
    }

    /// Refreshes the unpinned metadata of a paired device after a successful connect.
    pub async fn touch_device(
        &self,
        device_id: &str,
        display_name: &str,
        client_id: &str,
        client_mode: &str,
        remote_ip: &str,
        now: i64,
    ) -> Result<(), ServiceError> {
        sqlx::query(
            "UPDATE devices SET display_name = CASE WHEN $2 = '' THEN display_name ELSE $2 END, \
                    client_id = $3, client_mode = $4, remote_ip = $5, last_seen_at = $6 \
             WHERE device_id = $1",
        )
        .bind(device_id)
        .bind(display_name)
        .bind(client_id)
        .bind(client_mode)
        .bind(remote_ip)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(())
    }

    /// Removes a paired device of `tenant`, its tokens and its pending requests.
    /// Whether there was such a device or request.
    pub async fn delete_device(&self, tenant: &str, device_id: &str) -> Result<bool, ServiceError> {
        let mut tx = self.db.pool().begin().await.map_err(service_error)?;
        let mut removed = 0;
        for sql in [
            "DELETE FROM devices WHERE tenant_id = $1 AND device_id = $2",
            "DELETE FROM device_tokens WHERE tenant_id = $1 AND device_id = $2",
            "DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND device_id = $2",
        ] {
            removed += sqlx::query(sql)
                .bind(tenant)
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(service_error)?
                .rows_affected();
        }
        tx.commit().await.map_err(service_error)?;
        Ok(removed > 0)
    }

    /// The live pending request of `device_id`, in whatever tenant.
    pub async fn pending_request_of_device(
        &self,
        device_id: &str,
        now: i64,
    ) -> Result<Option<DeviceRequest>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
             WHERE device_id = $1 AND expires_at > $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device_id)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(request_of).transpose()
    }

    /// The live pending request `request_id` of `tenant`.
    pub async fn device_request(
        &self,
        tenant: &str,
        request_id: &str,
        now: i64,
    ) -> Result<Option<DeviceRequest>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
             WHERE tenant_id = $1 AND request_id = $2 AND expires_at > $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(request_id)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(request_of).transpose()
    }

    /// The live pending requests of `tenant` (or only of `device_id`), oldest first.
    pub async fn device_requests(
        &self,
        tenant: &str,
        only_device: Option<&str>,
        now: i64,
    ) -> Result<Vec<DeviceRequest>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR device_id = $2) AND expires_at > $3 \
             ORDER BY created_at, request_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(only_device.unwrap_or(""))
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(request_of).collect()
    }

    /// Creates the device's pending request, or merges `new` into the live one
    /// (roles and scopes united, metadata and expiry refreshed). Returns the
    /// request and whether it was created by this call.
    pub async fn put_device_request(
        &self,
        new: &NewDeviceRequest,
        now: i64,
    ) -> Result<(DeviceRequest, bool), ServiceError> {
        for _ in 0..INSERT_ATTEMPTS {
            if let Some(existing) = self.pending_request_of_device(&new.device_id, now).await? {
                let roles =
                    super::super::scopes::union(&existing.roles, std::slice::from_ref(&new.role));
                let scopes = super::super::scopes::union(&existing.scopes, &new.scopes);
                let sql = format!(
                    "UPDATE device_pairing_requests SET role = $2, roles = $3, scopes = $4, \
                         reason = $5, display_name = $6, platform = $7, device_family = $8, \
                         client_id = $9, client_mode = $10, remote_ip = $11, expires_at = $12, \
                         public_key = $13 \
                     WHERE request_id = $1 RETURNING {REQUEST_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&existing.request_id)
                    .bind(&new.role)
                    .bind(list_to_text(&roles))
                    .bind(list_to_text(&scopes))
                    .bind(&new.reason)
                    .bind(&new.display_name)
                    .bind(&new.platform)
                    .bind(&new.device_family)
                    .bind(&new.client_id)
                    .bind(&new.client_mode)
                    .bind(&new.remote_ip)
                    .bind(new.expires_at)
                    .bind(&new.public_key)
                    .fetch_optional(self.db.pool())
                    .await
                    .map_err(service_error)?;
                match row {
                    Some(row) => return Ok((request_of(&row)?, false)),
                    None => continue, // resolved meanwhile
                }
            }
            // Expired leftovers would block the unique device index.
            sqlx::query(
                "DELETE FROM device_pairing_requests WHERE device_id = $1 AND expires_at <= $2",
            )
            .bind(&new.device_id)
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(service_error)?;
            let request_id = uuid::Uuid::now_v7().to_string();
            let sql = format!(
                "INSERT INTO device_pairing_requests ({REQUEST_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 RETURNING {REQUEST_COLUMNS}"
            );
            let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&request_id)
                .bind(&new.tenant_id)
                .bind(&new.user_id)
                .bind(&new.device_id)
                .bind(&new.public_key)
                .bind(&new.display_name)
                .bind(&new.platform)
                .bind(&new.device_family)
                .bind(&new.client_id)
                .bind(&new.client_mode)
                .bind(&new.role)
                .bind(list_to_text(std::slice::from_ref(&new.role)))
                .bind(list_to_text(&new.scopes))
                .bind(&new.reason)
                .bind(&new.remote_ip)
                .bind(now)
                .bind(new.expires_at)
                .fetch_one(self.db.pool())
                .await;
            match inserted {
                Ok(row) => return Ok((request_of(&row)?, true)),
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(service_error(err)),
            }
        }
        Err(ServiceError::unavailable(
            "pairing request changed concurrently; retry",
        ))
    }

    /// Deletes the pending request `request_id` of `tenant`; whether it existed.
    pub async fn delete_device_request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<bool, ServiceError> {
        let result = sqlx::query(
            "DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND request_id = $2",
        )
        .bind(tenant)
        .bind(request_id)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(result.rows_affected() > 0)
    }

    /// Approves `request` in one transaction: claims (deletes) the request, writes
    /// the paired record `device` and the token hashes of `tokens` (role, hash,
    /// scopes). Fails with NOT_FOUND when the request was resolved meanwhile.
    pub async fn approve_device(
        &self,
        request: &DeviceRequest,
        device: &DeviceRecord,
        tokens: &[(String, String, Vec<String>)],
        now: i64,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.pool().begin().await.map_err(service_error)?;
        let claimed = sqlx::query(
            "DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND request_id = $2",
        )
        .bind(&request.tenant_id)
        .bind(&request.request_id)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        if claimed.rows_affected() == 0 {
            return Err(ServiceError::not_found("unknown requestId"));
        }
        let sql = format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (device_id) DO UPDATE SET tenant_id = excluded.tenant_id, \
                 user_id = excluded.user_id, public_key = excluded.public_key, \
                 display_name = excluded.display_name, platform = excluded.platform, \
                 device_family = excluded.device_family, client_id = excluded.client_id, \
                 client_mode = excluded.client_mode, roles = excluded.roles, \
                 scopes = excluded.scopes, remote_ip = excluded.remote_ip, \
                 approved_at = excluded.approved_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&device.device_id)
            .bind(&device.tenant_id)
            .bind(&device.user_id)
            .bind(&device.public_key)
            .bind(&device.display_name)
            .bind(&device.platform)
            .bind(&device.device_family)
            .bind(&device.client_id)
            .bind(&device.client_mode)
            .bind(list_to_text(&device.roles))
            .bind(list_to_text(&device.scopes))
            .bind(&device.remote_ip)
            .bind(device.created_at)
            .bind(device.approved_at)
            .bind(device.last_seen_at)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        for (role, hash, scopes) in tokens {
            super::tokens::upsert_token(&mut tx, device, role, hash, scopes, now).await?;
        }
        tx.commit().await.map_err(service_error)?;
        Ok(())
    }
}

fn device_of(row: &AnyRow) -> Result<DeviceRecord, ServiceError> {
    Ok(DeviceRecord {
        device_id: text(row, "device_id")?,
        tenant_id: text(row, "tenant_id")?,
        user_id: text(row, "user_id")?,
        public_key: text(row, "public_key")?,
        display_name: text(row, "display_name")?,
        platform: text(row, "platform")?,
        device_family: text(row, "device_family")?,
        client_id: text(row, "client_id")?,
        client_mode: text(row, "client_mode")?,
        roles: list(row, "roles")?,
        scopes: list(row, "scopes")?,
        remote_ip: text(row, "remote_ip")?,
        created_at: int(row, "created_at")?,
        approved_at: int(row, "approved_at")?,
        last_seen_at: int(row, "last_seen_at")?,
    })
}

fn request_of(row: &AnyRow) -> Result<DeviceRequest, ServiceError> {
    Ok(DeviceRequest {
        request_id: text(row, "request_id")?,
        tenant_id: text(row, "tenant_id")?,
        user_id: text(row, "user_id")?,
        device_id: text(row, "device_id")?,
        public_key: text(row, "public_key")?,
        display_name: text(row, "display_name")?,
        platform: text(row, "platform")?,
        device_family: text(row, "device_family")?,
        client_id: text(row, "client_id")?,
        client_mode: text(row, "client_mode")?,
        role: text(row, "role")?,
        roles: list(row, "roles")?,
        scopes: list(row, "scopes")?,
        reason: text(row, "reason")?,
        remote_ip: text(row, "remote_ip")?,
        created_at: int(row, "created_at")?,
        expires_at: int(row, "expires_at")?,
    })
}
