//! Channel messages: chat-platform accounts and outbound delivery.
//!
//! Only the messages exist so far. The service trait, client and gRPC adapter
//! (`service_bindings!`) are generated once the channel service implements its
//! RPCs, so nothing answers "unimplemented" meanwhile.

pub use crate::pb::channel::v1::*;
