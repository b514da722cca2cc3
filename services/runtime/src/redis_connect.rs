//! Opening a Redis connection the way every clawgate Redis user does: the key
//! prefix is checked, the URL is parsed without ever echoing it (it may hold a
//! password), TCP_NODELAY is on (small pipelined writes must not wait for delayed
//! ACKs), only plain TCP and Unix sockets are accepted (TLS is not in this
//! build), and the connection manager has bounded connect and command timeouts.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo};

use crate::bus::redis::RedisBusOptions;

/// Why a connection could not be set up. The messages never contain the URL.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// The key prefix or the URL is unusable: a configuration mistake.
    Config(&'static str),
    /// Redis could not be reached in time.
    Unavailable(String),
}

/// Checks a key prefix: non-empty, no braces (they would break hash tags), no
/// whitespace or control characters.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), SetupError> {
    let bad = |c: char| c == '{' || c == '}' || c.is_whitespace() || c.is_control();
    if prefix.is_empty() || prefix.chars().any(bad) {
        return Err(SetupError::Config(
            "invalid key prefix: must be non-empty, without braces or whitespace",
        ));
    }
    Ok(())
}

/// Parses `url` into connection settings with TCP_NODELAY on.
pub(crate) fn connection_info(url: &str) -> Result<ConnectionInfo, SetupError> {
    let client = redis::Client::open(url).map_err(|_| SetupError::Config("invalid redis URL"))?;
    let info = client
        .get_connection_info()
        .clone()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    if !matches!(
        info.addr(),
        ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)
    ) {
        return Err(SetupError::Config(
            "unsupported redis address: TLS is not enabled in this build",
        ));
    }
    Ok(info)
}

/// A reconnecting, multiplexed (auto-pipelined) connection with bounded timeouts.
pub(crate) async fn connection_manager(
    info: ConnectionInfo,
    options: &RedisBusOptions,
) -> Result<ConnectionManager, SetupError> {
    let client = redis::Client::open(info).map_err(|_| SetupError::Config("invalid redis URL"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.command_timeout))
        .set_number_of_retries(3)
        .set_min_delay(options.reconnect_min_delay)
        .set_max_delay(options.reconnect_max_delay);
    tokio::time::timeout(
        options.connect_timeout,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| SetupError::Unavailable("redis connect failed: timed out".into()))?
    .map_err(|err| SetupError::Unavailable(format!("redis connect failed: {err}")))
}
