//! The agent runner: owns runs from start to end, independently of any socket.
//!
//! A run is started by [`RunnerService`] (`StartRun`), streams its agent's
//! model from an OpenAI-compatible or Anthropic provider ([`provider`]),
//! failing over to the agent's fallback models on transient failures
//! (`failover`), coalesces its tokens into deltas and publishes them as
//! protobuf `RunEvent`s on the event bus (topic of the run's tenant and user). The
//! user turn is written to the session transcript when the run is accepted, the
//! assistant turn once, when the run ends.
//!
//! In-process ([`RunnerService::new`], the embedded mode) a runner keeps its runs
//! in memory. Built with [`RunnerBuilder::cluster`] it is one of many runners
//! sharing Redis: one active run per session across all of them (a lease),
//! idempotency keys and aborts that work whichever runner receives them, runs
//! of a dead runner ended by the others, and a replayable history per run (see
//! [`cluster`]). A run's `exec` calls wait for a human decision that may come
//! through any edge and any runner ([`approvals`]).
//!
//! Given the edges' node registry ([`RunnerBuilder::nodes`]), a run's agent
//! also uses its user's nodes (phones and hosts connected to some edge): each
//! run offers the commands of the user's live nodes as `node_*` tools
//! ([`tools::node_commands`]), and `exec` may run on a node
//! ([`tools::exec_node`], approved like any exec); calls travel over the bus
//! to the edge holding the node and back on the runner's reply topic.

pub mod approvals;
pub mod cluster;
pub mod config;
pub mod provider;
pub mod tools;

mod builder;
mod catalog;
mod coalesce;
mod context;
mod events;
mod failover;
mod history;
mod nodes;
mod registry;
mod run;
mod run_tools;
mod service;
mod service_ops;
mod stopwords;
mod validate;

pub use builder::RunnerBuilder;
pub use cluster::{ClusterOptions, RUNNER_LOST};
pub use config::{ProviderConfig, ProviderKind, ProviderTimeouts, RunnerConfig};
pub use provider::NO_PROVIDER_MESSAGE;
pub use service::RunnerService;
pub use stopwords::is_stop_command;
