//! OpenClaw devices: paired records and pending pairing requests.
//!
//! A device id (hex SHA-256 of its public key) belongs to one tenant: its paired
//! record, its tokens and its one pending request all live there. Reads and
//! writes take a [`Scope`] (tenant, and the user for operators).

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{is_unique_violation, service_error};
use sqlx::any::AnyRow;

use super::{Columns, Scope, Store, commit, int, list, list_to_text, text};

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
    /// The connect fixed the user (API key, or a device already paired):
    /// approval keeps `user_id` instead of giving the device to the approver.
    pub user_bound: bool,
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
    pub user_bound: bool,
}

pub(super) const DEVICE_COLUMNS: &str = "device_id, tenant_id, user_id, public_key, display_name, platform, \
    device_family, client_id, client_mode, roles, scopes, remote_ip, created_at, approved_at, \
    last_seen_at";

const REQUEST_COLUMNS: &str = "request_id, tenant_id, user_id, device_id, public_key, \
    display_name, platform, device_family, client_id, client_mode, role, roles, scopes, reason, \
    remote_ip, created_at, expires_at, user_bound";

/// How often a request insert is retried after losing a race on the device index.
const INSERT_ATTEMPTS: usize = 3;

impl Store {
    /// The paired device `device_id` of `scope`.
    pub async fn device(
        &self,
        scope: Scope<'_>,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, ServiceError> {
        if device_id.is_empty() {
            return Ok(None);
        }
        Ok(self
            .devices(scope, Some(device_id))
            .await?
            .into_iter()
            .next())
    }

    /// The paired devices of `scope`, or only `device_id` when given.
    pub async fn devices(
        &self,
        scope: Scope<'_>,
        only_device: Option<&str>,
    ) -> Result<Vec<DeviceRecord>, ServiceError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR device_id = $3) \
             ORDER BY approved_at, device_id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(only_device.unwrap_or(""))
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(device_of).collect()
    }

    /// Removes a paired device of `scope`, its tokens and its pending requests.
    /// Whether there was such a device or request.
    pub async fn delete_device(
        &self,
        scope: Scope<'_>,
        device_id: &str,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let mut removed = 0;
        // Tokens go with their device; only the device or a request counts as removed.
        for (sql, counts) in [
            (
                "DELETE FROM device_tokens WHERE tenant_id = $1 AND device_id = $3 \
                 AND ($2 = '' OR device_id IN \
                     (SELECT device_id FROM devices WHERE tenant_id = $1 AND user_id = $2))",
                false,
            ),
            (
                "DELETE FROM devices WHERE tenant_id = $1 AND device_id = $3 \
                 AND ($2 = '' OR user_id = $2)",
                true,
            ),
            (
                "DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND device_id = $3 \
                 AND ($2 = '' OR user_id = $2)",
                true,
            ),
        ] {
            let affected = sqlx::query(sql)
                .bind(scope.tenant)
                .bind(scope.user())
                .bind(device_id)
                .execute(&mut *tx)
                .await
                .map_err(service_error)?
                .rows_affected();
            if counts {
                removed += affected;
            }
        }
        commit(tx).await?;
        Ok(removed > 0)
    }

    /// The live pending request `request_id` of `scope`.
    pub async fn device_request(
        &self,
        scope: Scope<'_>,
        request_id: &str,
        now: i64,
    ) -> Result<Option<DeviceRequest>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND request_id = $3 \
             AND expires_at > $4"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(request_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(request_of).transpose()
    }

    /// The live pending requests of `scope` (or only of `device_id`), oldest first.
    pub async fn device_requests(
        &self,
        scope: Scope<'_>,
        only_device: Option<&str>,
        now: i64,
    ) -> Result<Vec<DeviceRequest>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR device_id = $3) \
             AND expires_at > $4 ORDER BY created_at, request_id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(only_device.unwrap_or(""))
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(request_of).collect()
    }

    /// Creates the device's pending request in `new.tenant_id`, or merges `new`
    /// into the live one there (roles and scopes united; user, metadata and
    /// expiry from `new`). A request the device left in another tenant is
    /// superseded. Returns the request and whether this call created it.
    pub async fn put_device_request(
        &self,
        new: &NewDeviceRequest,
        now: i64,
    ) -> Result<(DeviceRequest, bool), ServiceError> {
        let tenant = new.tenant_id.as_str();
        for _ in 0..INSERT_ATTEMPTS {
            // Expired leftovers (and a request elsewhere) would block the unique device index.
            self.release_device_request(&new.device_id, tenant, now)
                .await?;
            let mut tx = self.tx(tenant).await?;
            let sql = format!(
                "SELECT {REQUEST_COLUMNS} FROM device_pairing_requests \
                 WHERE tenant_id = $1 AND device_id = $2 AND expires_at > $3"
            );
            let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(&new.device_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(service_error)?
                .as_ref()
                .map(request_of)
                .transpose()?;
            if let Some(existing) = existing {
                let roles =
                    super::super::scopes::union(&existing.roles, std::slice::from_ref(&new.role));
                let scopes = super::super::scopes::union(&existing.scopes, &new.scopes);
                let sql = format!(
                    "UPDATE device_pairing_requests SET role = $3, roles = $4, scopes = $5, \
                         reason = $6, display_name = $7, platform = $8, device_family = $9, \
                         client_id = $10, client_mode = $11, remote_ip = $12, expires_at = $13, \
                         public_key = $14, user_id = $15, user_bound = $16 \
                     WHERE tenant_id = $1 AND request_id = $2 RETURNING {REQUEST_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant)
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
                    .bind(&new.user_id)
                    .bind(i64::from(new.user_bound))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(service_error)?;
                match row {
                    Some(row) => {
                        commit(tx).await?;
                        return Ok((request_of(&row)?, false));
                    }
                    None => continue, // resolved meanwhile
                }
            }
            let request_id = uuid::Uuid::now_v7().to_string();
            let sql = format!(
                "INSERT INTO device_pairing_requests ({REQUEST_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                         $17, $18) \
                 RETURNING {REQUEST_COLUMNS}"
            );
            let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&request_id)
                .bind(tenant)
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
                .bind(i64::from(new.user_bound))
                .fetch_one(&mut *tx)
                .await;
            match inserted {
                Ok(row) => {
                    commit(tx).await?;
                    return Ok((request_of(&row)?, true));
                }
                // Lost a race on the device index (the transaction rolls back on drop).
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(service_error(err)),
            }
        }
        Err(ServiceError::unavailable(
            "pairing request changed concurrently; retry",
        ))
    }

    /// Deletes the pending request `request_id` of `scope`; whether it existed.
    pub async fn delete_device_request(
        &self,
        scope: Scope<'_>,
        request_id: &str,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let result = sqlx::query(
            "DELETE FROM device_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND request_id = $3",
        )
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(request_id)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }

    /// Approves `request` in one transaction of its tenant: claims (deletes) the
    /// request, writes the paired record `device` (same tenant) and the token
    /// hashes of `tokens` (role, hash, scopes). Fails with NOT_FOUND when the
    /// request was resolved meanwhile, or when the device is paired in another
    /// tenant (a device id belongs to one tenant).
    pub async fn approve_device(
        &self,
        request: &DeviceRequest,
        device: &DeviceRecord,
        tokens: &[(String, String, Vec<String>)],
        now: i64,
    ) -> Result<(), ServiceError> {
        let unknown = || ServiceError::not_found("unknown requestId");
        if device.tenant_id != request.tenant_id || device.device_id != request.device_id {
            return Err(ServiceError::internal("device and request disagree"));
        }
        if self
            .device_tenant(&device.device_id)
            .await?
            .is_some_and(|tenant| tenant != request.tenant_id)
        {
            return Err(unknown());
        }
        let mut tx = self.tx(&request.tenant_id).await?;
        let claimed = sqlx::query(
            "DELETE FROM device_pairing_requests WHERE tenant_id = $1 AND request_id = $2",
        )
        .bind(&request.tenant_id)
        .bind(&request.request_id)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        if claimed.rows_affected() == 0 {
            return Err(unknown());
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
        commit(tx).await
    }
}

pub(super) fn device_of(row: &AnyRow) -> Result<DeviceRecord, ServiceError> {
    device_from(Columns::of(row))
}

/// [`device_of`] of the columns `row` holds (perhaps prefixed).
pub(super) fn device_from(row: Columns<'_>) -> Result<DeviceRecord, ServiceError> {
    Ok(DeviceRecord {
        device_id: row.text("device_id")?,
        tenant_id: row.text("tenant_id")?,
        user_id: row.text("user_id")?,
        public_key: row.text("public_key")?,
        display_name: row.text("display_name")?,
        platform: row.text("platform")?,
        device_family: row.text("device_family")?,
        client_id: row.text("client_id")?,
        client_mode: row.text("client_mode")?,
        roles: row.list("roles")?,
        scopes: row.list("scopes")?,
        remote_ip: row.text("remote_ip")?,
        created_at: row.int("created_at")?,
        approved_at: row.int("approved_at")?,
        last_seen_at: row.int("last_seen_at")?,
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
        user_bound: int(row, "user_bound")? != 0,
    })
}
