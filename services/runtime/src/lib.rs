//! Shared runtime of every clawgate process: mechanisms, no service's logic.
//! The one Redis handle of a process ([`redis`]), the event bus, database pools
//! and migrations, shared rate limits, cluster-wide leases, replay histories,
//! the device registry (which pods hold a device's sockets), presence (who is
//! online per tenant, across edges), balanced gRPC
//! channels, call tokens, telemetry, and small helpers (clock, ids).
//!
//! Nothing here knows about a protocol dialect or what a service stores: leases
//! and histories carry payloads their users define.

pub mod approvals;
pub mod balance;
pub mod bus;
pub mod clock;
pub mod db;
pub mod device_registry;
pub mod internal_token;
pub mod lease;
pub mod limits;
pub mod log_ring;
pub mod nodes;
pub mod presence;
pub mod redis;
pub mod refresh;
pub mod replay;
pub mod telemetry;

pub use clawgate_proto::{ErrorCode, Principal, ServiceError};
