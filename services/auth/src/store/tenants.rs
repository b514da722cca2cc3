//! Tenants: the one global auth table (no tenant transaction, no row-level
//! security), read by the connect chains before any tenant is known.
//!
//! Invariants: ids and slugs are unique, and no tenant's slug equals another
//! tenant's id (checked on creation), so a name resolves to at most one tenant;
//! status is `active` or `disabled`.

use clawgate_proto::{ErrorCode, ServiceError};
use clawgate_runtime::db::{is_unique_violation, service_error};
use sqlx::any::AnyRow;

use super::{Store, commit, int, text};

/// A tenant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an update changes (`None`: unchanged).
#[derive(Clone, Debug, Default)]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub status: Option<String>,
}

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_DISABLED: &str = "disabled";

const COLUMNS: &str = "id, slug, name, status, created_at, updated_at";

impl Store {
    /// Creates tenant `id` unless it (or its slug) exists: idempotent, never fails
    /// on a conflict. Whether it was created.
    pub async fn ensure_tenant(
        &self,
        id: &str,
        slug: &str,
        name: &str,
        now: i64,
    ) -> Result<bool, ServiceError> {
        let result = sqlx::query(
            "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(slug)
        .bind(name)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(result.rows_affected() > 0)
    }

    /// Creates a tenant. ALREADY_EXISTS when its id or slug names a tenant
    /// already (as an id or as a slug).
    pub async fn create_tenant(
        &self,
        id: &str,
        slug: &str,
        name: &str,
        now: i64,
    ) -> Result<TenantRecord, ServiceError> {
        let taken = || ServiceError::new(ErrorCode::AlreadyExists, "tenant id or slug taken");
        let mut tx = self.db.begin_write().await?;
        let clash: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tenants WHERE id IN ($1, $2) OR slug IN ($1, $2)",
        )
        .bind(id)
        .bind(slug)
        .fetch_one(&mut *tx)
        .await
        .map_err(service_error)?;
        if clash > 0 {
            return Err(taken());
        }
        let sql = format!(
            "INSERT INTO tenants ({COLUMNS}) VALUES ($1, $2, $3, 'active', $4, $4) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(slug)
            .bind(name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    taken()
                } else {
                    service_error(err)
                }
            })?;
        commit(tx).await?;
        tenant_of(&row)
    }

    /// The tenant with id `id`.
    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(tenant_of).transpose()
    }

    /// The tenant named `key`: by id, else by slug.
    pub async fn resolve_tenant(&self, key: &str) -> Result<Option<TenantRecord>, ServiceError> {
        if key.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM tenants WHERE id = $1 OR slug = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(tenant_of).transpose()
    }

    /// Every tenant, by slug.
    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, ServiceError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants ORDER BY slug, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(tenant_of).collect()
    }

    /// Applies `update` to tenant `id`; the tenant afterwards, if it exists.
    pub async fn update_tenant(
        &self,
        id: &str,
        update: &TenantUpdate,
        now: i64,
    ) -> Result<Option<TenantRecord>, ServiceError> {
        let sql = format!(
            "UPDATE tenants SET name = CASE WHEN $2 = 1 THEN $3 ELSE name END, \
                 status = CASE WHEN $4 = 1 THEN $5 ELSE status END, updated_at = $6 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(i64::from(update.name.is_some()))
            .bind(update.name.clone().unwrap_or_default())
            .bind(i64::from(update.status.is_some()))
            .bind(update.status.clone().unwrap_or_default())
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(tenant_of).transpose()
    }
}

fn tenant_of(row: &AnyRow) -> Result<TenantRecord, ServiceError> {
    Ok(TenantRecord {
        id: text(row, "id")?,
        slug: text(row, "slug")?,
        name: text(row, "name")?,
        status: text(row, "status")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}
