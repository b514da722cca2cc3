//! What a device-signed connect reads and writes, in as few round trips as
//! the checks allow: the paired device, its token of the role, its user and
//! its tenant's status in one statement ([`Store::paired_facts`]; on
//! PostgreSQL the `SECURITY DEFINER` function `connect_facts` of migration
//! 0004, keyed by the verified device id as `device_tenant` is), and the
//! connect's last-seen times of device and token in one bookkeeping
//! transaction ([`Store::touch_connect`], which the service runs off the
//! connect's path).
//!
//! Invariant: the rows read are exactly the device's own, of the device's own
//! tenant (the join keys on the device's tenant); the bookkeeping write is not
//! flushed per commit (it only records when a device was last seen).

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Backend, commit, service_error};

use super::devices::device_from;
use super::tokens::token_from;
use super::users::user_from;
use super::{Columns, DeviceRecord, Store, TokenRecord, UserRecord};

/// The read of `connect_facts` in plain SQL (SQLite has neither row-level
/// security nor functions): the same columns, the same joins.
const CONNECT_FACTS_SQLITE: &str = "SELECT \
    d.device_id AS d_device_id, d.tenant_id AS d_tenant_id, d.user_id AS d_user_id, \
    d.public_key AS d_public_key, d.display_name AS d_display_name, d.platform AS d_platform, \
    d.device_family AS d_device_family, d.client_id AS d_client_id, \
    d.client_mode AS d_client_mode, d.roles AS d_roles, d.scopes AS d_scopes, \
    d.remote_ip AS d_remote_ip, d.created_at AS d_created_at, d.approved_at AS d_approved_at, \
    d.last_seen_at AS d_last_seen_at, \
    t.device_id AS t_device_id, t.role AS t_role, t.tenant_id AS t_tenant_id, \
    t.user_id AS t_user_id, t.token_hash AS t_token_hash, t.scopes AS t_scopes, \
    t.created_at AS t_created_at, t.rotated_at AS t_rotated_at, t.revoked_at AS t_revoked_at, \
    t.last_used_at AS t_last_used_at, \
    u.tenant_id AS u_tenant_id, u.user_id AS u_user_id, u.role AS u_role, \
    u.display_name AS u_display_name, u.created_at AS u_created_at, \
    u.updated_at AS u_updated_at, u.deleted_at AS u_deleted_at, \
    n.status AS tenant_status \
    FROM devices d \
    LEFT JOIN device_tokens t \
        ON t.device_id = d.device_id AND t.role = $2 AND t.tenant_id = d.tenant_id \
    LEFT JOIN users u ON u.tenant_id = d.tenant_id AND u.user_id = d.user_id \
    LEFT JOIN tenants n ON n.id = d.tenant_id \
    WHERE d.device_id = $1";

/// A paired device as a connect needs it.
#[derive(Debug, Clone)]
pub struct PairedFacts {
    pub device: DeviceRecord,
    /// Its token of the connect's role, if one was issued.
    pub token: Option<TokenRecord>,
    /// Its user's row, if the user has one.
    pub user: Option<UserRecord>,
    /// Its tenant's status (`None`: the tenant has no row).
    pub tenant_status: Option<String>,
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
    /// its token of `role`, its user and its tenant's status; `None` when it
    /// is not paired. One round trip.
    pub async fn paired_facts(
        &self,
        device_id: &str,
        role: &str,
    ) -> Result<Option<PairedFacts>, ServiceError> {
        if device_id.is_empty() {
            return Ok(None);
        }
        let sql = match self.db.backend() {
            Backend::Postgres => "SELECT * FROM connect_facts($1, $2)",
            Backend::Sqlite => CONNECT_FACTS_SQLITE,
        };
        let row = sqlx::query(sql)
            .bind(device_id)
            .bind(role)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        let Some(row) = row else { return Ok(None) };
        let token = Columns::prefixed(&row, "t_");
        let user = Columns::prefixed(&row, "u_");
        let tenant_status: Option<String> =
            sqlx::Row::try_get(&row, "tenant_status").map_err(service_error)?;
        Ok(Some(PairedFacts {
            device: device_from(Columns::prefixed(&row, "d_"))?,
            token: if token.is_null("role")? {
                None
            } else {
                Some(token_from(token)?)
            },
            user: if user.is_null("user_id")? {
                None
            } else {
                Some(user_from(user)?)
            },
            tenant_status,
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
