//! Test support for every crate of clawgate: the fakes and clients a test needs
//! that are not clawgate itself. It depends on no clawgate crate, so a service's
//! tests can use it without building the binary or another service.
//!
//! - [`mock_model`]: a real HTTP server speaking the OpenAI Chat Completions SSE format;
//! - [`mock_script`]: what the mock models answer (scripts, and rules choosing
//!   one per request for many concurrent conversations);
//! - [`mock_anthropic`]: one speaking the Anthropic Messages event stream;
//! - [`otlp`]: an OTLP/gRPC trace receiver that keeps the spans it is sent;
//! - [`ws`]: a WebSocket client for both protocol dialects;
//! - [`openclaw_device`]: an independent OpenClaw device-identity client (keys,
//!   signed connect payloads, device-token store).
//!
//! Nothing here fakes a part of clawgate.

pub mod mock_anthropic;
pub mod mock_model;
pub mod mock_script;
pub mod openclaw_device;
pub mod otlp;
pub mod refnode;
pub mod ws;
