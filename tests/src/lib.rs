//! The test kit of clawgate: everything the end-to-end tests need that is not
//! clawgate itself, plus ways to start clawgate for a test.
//!
//! - [`mock_model`]: a real HTTP server speaking the OpenAI Chat Completions SSE format;
//! - [`ws`]: a WebSocket client for both protocol dialects;
//! - [`openclaw_device`]: an independent OpenClaw device-identity client (keys,
//!   signed connect payloads, device-token store);
//! - [`gateway`]: the whole gateway in this process (the embedded default);
//! - [`cluster`]: the `clawgate` binary started as separate OS processes against
//!   real PostgreSQL and Redis;
//! - [`bench`]: the load harness behind the `clawgate-bench` binary.
//!
//! Nothing here fakes a part of clawgate.

pub mod bench;
pub mod cluster;
pub mod gateway;
pub mod mock_model;
pub mod openclaw_device;
pub mod otlp;
pub mod ws;
