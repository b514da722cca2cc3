//! The auth store: the SQL behind tenants, users, secrets, pairing, device tokens
//! and API keys, one implementation for PostgreSQL and SQLite (portable SQL,
//! `$N` placeholders).
//!
//! Invariants it keeps:
//! - Every statement on a tenant-scoped table runs inside
//!   [`Database::begin_tenant`] of the tenant it is about (PostgreSQL row-level
//!   security then hides every other tenant's rows) **and** filters
//!   `tenant_id = $n` itself (the only guard on SQLite). Where rows belong to a
//!   user (devices, pairing requests, device tokens, API keys, pairing codes,
//!   paired senders) a [`Scope`] with a user adds `user_id = $n` as well.
//! - The only questions asked before the tenant is known go through [`lookup`]:
//!   by the exact key a caller proved or presented (device id of a verified key,
//!   hash of a presented API key, a goclaw sender id), answered with tenant ids
//!   only (`SECURITY DEFINER` functions on PostgreSQL); the row itself is then
//!   read in that tenant's transaction.
//! - No credential is stored: device tokens and API keys are SHA-256 hex
//!   digests; secrets are sealed before they get here.
//! - At most one pending request per device (in one tenant) and one pending
//!   code per (tenant, sender, channel); both are enforced by unique indexes.
//! - `tenants` is global: it is read and written without a tenant transaction.

mod api_keys;
mod codes;
mod connect;
mod devices;
mod lookup;
mod nodes;
mod secrets;
mod tenants;
mod tokens;
mod users;

use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::db::{Database, Tx, commit, service_error};
use sqlx::Row as _;
use sqlx::any::AnyRow;

pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use codes::{CodeStatus, NewCode, PairedSender, PairingCode};
pub use connect::ConnectSeen;
pub use devices::{DeviceRecord, DeviceRequest, NewDeviceRequest};
pub use nodes::{MergeOwner, NewNodeRequest, NodeFacts, NodeRequestRecord, PairedNodeRecord};
pub use secrets::SecretRecord;
pub use tenants::{STATUS_ACTIVE, STATUS_DISABLED, TenantRecord, TenantUpdate};
pub use tokens::TokenRecord;
pub use users::UserRecord;

/// The auth service's tables on one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

/// Whose rows a store call may see and change: one tenant and, within it,
/// every user (`user: None`) or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    pub tenant: &'a str,
    pub user: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// Every row of `tenant`.
    pub fn tenant(tenant: &'a str) -> Self {
        Self { tenant, user: None }
    }

    /// What `principal` may see: its tenant, and only its own rows unless it
    /// sees the whole tenant (admins and owners).
    pub fn of(principal: &'a Principal) -> Self {
        Self {
            tenant: &principal.tenant_id,
            user: principal.user_filter(),
        }
    }

    /// The user filter as bound to `($n = '' OR user_id = $n)`.
    fn user(&self) -> &'a str {
        self.user.unwrap_or("")
    }
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// A transaction that sees only `tenant`'s rows and may write: on SQLite
    /// it holds the write lock from its start, so a read followed by a write
    /// never fails to upgrade its lock while another writer (a connect's
    /// last-seen bookkeeping, say) commits. Most of this store's transactions
    /// read, then write.
    async fn tx(&self, tenant: &str) -> Result<Tx, ServiceError> {
        self.db.begin_tenant_write(tenant).await
    }

    /// A read-only transaction that sees only `tenant`'s rows: on SQLite it
    /// never waits for a writer (the reads on every connect use it).
    async fn read_tx(&self, tenant: &str) -> Result<Tx, ServiceError> {
        self.db.begin_tenant(tenant).await
    }
}

/// A list of roles or scopes as stored: a JSON array of strings.
fn list_to_text(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn text_to_list(text: &str) -> Result<Vec<String>, ServiceError> {
    serde_json::from_str(text).map_err(|err| ServiceError::internal(format!("stored list: {err}")))
}

fn text(row: &AnyRow, column: &str) -> Result<String, ServiceError> {
    row.try_get::<String, _>(column).map_err(service_error)
}

fn int(row: &AnyRow, column: &str) -> Result<i64, ServiceError> {
    row.try_get::<i64, _>(column).map_err(service_error)
}

fn list(row: &AnyRow, column: &str) -> Result<Vec<String>, ServiceError> {
    text_to_list(&text(row, column)?)
}

/// The columns of one table's row within a result row: the plain names, or
/// the names with a prefix (a joined read aliases each table's columns).
#[derive(Clone, Copy)]
pub(super) struct Columns<'r> {
    row: &'r AnyRow,
    prefix: &'static str,
}

impl<'r> Columns<'r> {
    /// The row's columns under their own names.
    pub(super) fn of(row: &'r AnyRow) -> Self {
        Self { row, prefix: "" }
    }

    /// The row's columns named `prefix` + name.
    pub(super) fn prefixed(row: &'r AnyRow, prefix: &'static str) -> Self {
        Self { row, prefix }
    }

    /// Calls `read` with the full name of `column`.
    fn named<T>(&self, column: &str, read: impl FnOnce(&AnyRow, &str) -> T) -> T {
        if self.prefix.is_empty() {
            read(self.row, column)
        } else {
            read(self.row, &format!("{}{column}", self.prefix))
        }
    }

    pub(super) fn text(&self, column: &str) -> Result<String, ServiceError> {
        self.named(column, text)
    }

    pub(super) fn int(&self, column: &str) -> Result<i64, ServiceError> {
        self.named(column, int)
    }

    pub(super) fn list(&self, column: &str) -> Result<Vec<String>, ServiceError> {
        self.named(column, list)
    }

    /// Whether the text column `column` is NULL (an outer join found no row).
    pub(super) fn is_null(&self, column: &str) -> Result<bool, ServiceError> {
        self.named(column, |row, name| {
            let value: Option<String> = row.try_get(name).map_err(service_error)?;
            Ok(value.is_none())
        })
    }
}
