//! Shared runtime of every clawgate process: the event bus, database pools and
//! migrations, shared rate limits, cluster-wide run leases, run event replay,
//! balanced gRPC channels, telemetry, and small helpers (clock, ids).
//!
//! Nothing here knows about a protocol dialect or a particular service's logic.

pub mod balance;
pub mod bus;
pub mod clock;
pub mod db;
pub mod internal_token;
pub mod lease;
pub mod limits;
mod redis_connect;
mod redis_keys;
pub mod replay;
pub mod telemetry;

pub use clawgate_proto::{ErrorCode, Principal, ServiceError};
