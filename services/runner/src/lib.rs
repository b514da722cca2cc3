//! The agent runner: owns runs from start to end, independently of any socket.
//!
//! A run is started by [`RunnerService`] (`StartRun`), streams an OpenAI-compatible
//! model ([`provider`]), coalesces its tokens into deltas and publishes them as
//! protobuf `RunEvent`s on the event bus (topic of the run's tenant and user). The
//! user turn is written to the session transcript when the run is accepted, the
//! assistant turn once, when the run ends.

pub mod config;
pub mod provider;

mod coalesce;
mod events;
mod registry;
mod run;
mod service;
mod stopwords;

pub use config::{ProviderConfig, ProviderTimeouts, RunnerConfig};
pub use service::{NO_PROVIDER_MESSAGE, RunnerService};
pub use stopwords::is_stop_command;
