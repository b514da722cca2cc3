//! The contracts between clawgate's services.
//!
//! This crate owns these things and nothing else:
//! - the protobuf messages and gRPC stubs compiled from `proto/clawgate/**` ([`pb`]);
//! - one async trait per service plus a client that is either local (the implementation
//!   in this process, called directly) or gRPC, so callers never know which
//!   ([`auth`], [`runner`], [`session`]; [`cron`] and [`channel`] have messages only
//!   until their services land), and the one tower stack every call of a client or
//!   server adapter runs through ([`call_layer`]);
//! - the error model shared by every service and its single mapping to gRPC status
//!   codes and wire error codes ([`error`]);
//! - how a gRPC hop proves its principal: a signed call token ([`call_auth`]);
//! - what a run event means beyond its fields: its bus payload and the text its
//!   deltas add up to ([`run_events`]).
//!
//! Invariant: the local and gRPC paths behave the same. Both validate the principal,
//! both pass the same request messages, and both return the same [`ServiceError`]s.

pub mod call_auth;
pub mod call_layer;
pub mod error;
pub mod grpc;
mod macros;
pub mod principal;
pub mod reach;
mod redact;
pub mod run_events;

pub mod auth;
pub mod channel;
pub mod cron;
pub mod runner;
pub mod session;

pub use error::{ErrorCode, ServiceError};
pub use principal::Principal;

/// Generated protobuf messages and gRPC stubs.
pub mod pb {
    pub mod common {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.common.v1");
        }
    }
    pub mod auth {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.auth.v1");
        }
    }
    pub mod runner {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.runner.v1");
        }
    }
    pub mod session {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.session.v1");
        }
    }
    pub mod cron {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.cron.v1");
        }
    }
    pub mod channel {
        pub mod v1 {
            #![allow(clippy::large_enum_variant)]
            tonic::include_proto!("clawgate.channel.v1");
        }
    }
}
