//! Errors of starting and serving the edge. Errors of one request never surface
//! here: they are answered on the socket in the connection's dialect.

use clawgate_runtime::bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The event bus refused to open the process's subscriber.
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    /// A configuration value is unusable.
    #[error("invalid edge configuration: {0}")]
    Config(String),
}
