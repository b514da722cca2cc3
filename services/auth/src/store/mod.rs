//! The auth store: the SQL behind pairing, device tokens and API keys, one
//! implementation for PostgreSQL and SQLite (portable SQL, `$N` placeholders).
//!
//! Invariants it keeps:
//! - Every statement that reads or changes a tenant's data is filtered by that
//!   tenant. The only lookups across tenants are by a credential or identity the
//!   caller presented (device id of a verified key, hash of a presented token or
//!   API key, a goclaw sender id), and they return the row's own tenant.
//! - No secret is stored: device tokens and API keys are SHA-256 hex digests.
//! - At most one pending request per device and one pending code per
//!   (tenant, sender, channel); both are enforced by unique indexes as well.

mod api_keys;
mod codes;
mod devices;
mod tokens;

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Database, service_error};
use sqlx::Row as _;
use sqlx::any::AnyRow;

pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use codes::{CodeStatus, NewCode, PairedSender, PairingCode};
pub use devices::{DeviceRecord, DeviceRequest, NewDeviceRequest};
pub use tokens::TokenRecord;

/// The auth service's tables on one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
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
