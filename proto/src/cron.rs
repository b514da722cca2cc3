//! Cron messages: scheduled jobs that wake agents.
//!
//! Only the messages exist so far. The service trait, client and gRPC adapter
//! (`service_bindings!`) are generated once the cron service implements its
//! RPCs, so nothing answers "unimplemented" meanwhile.

pub use crate::pb::cron::v1::*;
