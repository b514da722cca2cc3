//! The end-to-end tests of clawgate and the ways to start clawgate for a test.
//!
//! The fakes and clients that are not clawgate itself live in the test kit
//! (`clawgate-testkit`) and are re-exported here under their old paths:
//! [`mock_model`], [`otlp`], [`ws`], [`openclaw_device`]. What needs the
//! binary stays here:
//!
//! - [`gateway`]: the whole gateway in this process (the embedded default);
//! - [`cluster`]: the `clawgate` binary started as separate OS processes against
//!   real PostgreSQL and Redis;
//! - [`bench`](mod@bench): the load harness behind the `clawgate-bench` binary.
//!
//! Nothing here fakes a part of clawgate.

pub mod bench;
pub mod cluster;
pub mod gateway;

pub use clawgate_testkit::{mock_anthropic, mock_model, openclaw_device, otlp, ws};
