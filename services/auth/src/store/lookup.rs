//! The questions asked before a tenant is known, each by the exact key a caller
//! proved or presented, each answered with tenant ids only.
//!
//! On PostgreSQL they call the `SECURITY DEFINER` functions of migration 0002
//! (the runtime role cannot see a row outside a tenant transaction); on SQLite
//! they are the same queries in plain SQL. Callers read the row itself
//! afterwards, inside the returned tenant's transaction.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Backend, service_error};
use sqlx::Row as _;

use super::Store;

impl Store {
    fn postgres(&self) -> bool {
        self.db.backend() == Backend::Postgres
    }

    /// The tenant of the paired device `device_id` (derived from a verified key).
    pub(super) async fn device_tenant(
        &self,
        device_id: &str,
    ) -> Result<Option<String>, ServiceError> {
        let sql = if self.postgres() {
            "SELECT device_tenant($1)"
        } else {
            "SELECT tenant_id FROM devices WHERE device_id = $1"
        };
        self.optional_text(sql, device_id).await
    }

    /// What admitting user `user` of tenant `tenant` needs, in one round trip:
    /// the tenant's status (`None`: no such tenant row) and whether the user
    /// was removed.
    pub async fn admission(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<(Option<String>, bool), ServiceError> {
        let sql = if self.postgres() {
            "SELECT (SELECT status FROM tenants WHERE id = $1),                     (CASE WHEN user_removed($1, $2) THEN 1 ELSE 0 END)::BIGINT"
        } else {
            "SELECT (SELECT status FROM tenants WHERE id = $1),                     EXISTS (SELECT 1 FROM users                             WHERE tenant_id = $1 AND user_id = $2 AND deleted_at > 0)"
        };
        let row = sqlx::query(sql)
            .bind(tenant)
            .bind(user)
            .fetch_one(self.db.pool())
            .await
            .map_err(service_error)?;
        let status: Option<String> = row.try_get(0).map_err(service_error)?;
        let removed: i64 = row.try_get(1).map_err(service_error)?;
        Ok((status, removed != 0))
    }

    /// The tenant of the API key whose digest is `key_hash`.
    pub(super) async fn api_key_tenant(
        &self,
        key_hash: &str,
    ) -> Result<Option<String>, ServiceError> {
        let sql = if self.postgres() {
            "SELECT api_key_tenant($1)"
        } else {
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1"
        };
        self.optional_text(sql, key_hash).await
    }

    /// The tenant of the newest pairing code of goclaw sender `sender_id`.
    pub(super) async fn latest_code_tenant(
        &self,
        sender_id: &str,
    ) -> Result<Option<String>, ServiceError> {
        let sql = if self.postgres() {
            "SELECT latest_code_tenant($1)"
        } else {
            "SELECT tenant_id FROM pairing_codes WHERE sender_id = $1 \
             ORDER BY created_at DESC, request_id DESC LIMIT 1"
        };
        self.optional_text(sql, sender_id).await
    }

    /// The tenants in which (`sender_id`, `channel`) is paired and live at `now`.
    pub(super) async fn paired_sender_tenants(
        &self,
        sender_id: &str,
        channel: &str,
        now: i64,
    ) -> Result<Vec<String>, ServiceError> {
        let sql = if self.postgres() {
            "SELECT tenant_id FROM paired_sender_tenants($1, $2, $3) AS s (tenant_id)"
        } else {
            "SELECT tenant_id FROM paired_senders \
             WHERE sender_id = $1 AND channel = $2 AND expires_at > $3 ORDER BY tenant_id"
        };
        sqlx::query_scalar::<_, String>(sql)
            .bind(sender_id)
            .bind(channel)
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)
    }

    /// Makes room for a new pairing request of device `device_id` in `tenant`:
    /// drops its expired requests and a live one left in another tenant.
    pub(super) async fn release_device_request(
        &self,
        device_id: &str,
        tenant: &str,
        now: i64,
    ) -> Result<(), ServiceError> {
        let sql = if self.postgres() {
            "SELECT release_device_request($1, $2, $3)"
        } else {
            "DELETE FROM device_pairing_requests \
             WHERE device_id = $1 AND (tenant_id <> $2 OR expires_at <= $3)"
        };
        sqlx::query(sql)
            .bind(device_id)
            .bind(tenant)
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(service_error)?;
        Ok(())
    }

    async fn optional_text(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<String>, ServiceError> {
        let found: Option<Option<String>> = sqlx::query_scalar(sql)
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        Ok(found.flatten().filter(|tenant| !tenant.is_empty()))
    }
}
