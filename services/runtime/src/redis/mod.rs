//! The one Redis handle of a process: the bus, the rate limits, the leases, the
//! replay log and the device registry all use the [`Redis`] it opens once.
//!
//! What it owns: how clawgate connects to Redis. The key prefix is checked, the
//! URL is parsed without ever echoing it (it may hold a password), TCP_NODELAY
//! is on (small pipelined writes must not wait for delayed ACKs), only plain TCP
//! and Unix sockets are accepted (TLS is not in this build), and the shared
//! connection has bounded connect and command timeouts.
//!
//! **One multiplexed connection.** [`Redis`] holds one reconnecting,
//! auto-pipelined connection ([`ConnectionManager`]) that every user clones, so
//! a replay append and its `PUBLISH` go out in one pipeline and a process keeps
//! one command connection however many mechanisms it runs. Only a bus
//! subscriber opens connections of its own (`Redis::dial`: pub/sub needs a
//! dedicated connection), with the same address and settings.
//!
//! Invariants: cheap to clone (clones share the connection); the URL is never
//! logged or put into an error.

pub(crate) mod keys;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

/// Timeouts and backoff of a [`Redis`] handle and of the connections it dials.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Bound on establishing one connection.
    pub connect_timeout: Duration,
    /// Bound on one command round trip (publish, subscribe, heartbeat, scripts).
    pub command_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max_delay`.
    pub reconnect_min_delay: Duration,
    pub reconnect_max_delay: Duration,
    /// How often an idle bus subscriber connection is checked with `PING`.
    pub heartbeat_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(15),
        }
    }
}

/// Why a handle could not be opened. The messages never contain the URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The key prefix or the URL is unusable: a configuration mistake.
    #[error("{0}")]
    InvalidConfig(&'static str),
    /// Redis could not be reached in time.
    #[error("{0}")]
    Unavailable(String),
}

/// A socket to Redis as [`Redis::dial`] opens it.
pub(crate) type Socket = Either<TcpStream, UnixStream>;

/// The process's Redis: one multiplexed connection, its address and the key
/// prefix of every key and channel. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    /// Where dedicated connections go. Holds credentials: never log it.
    connection_info: ConnectionInfo,
    key_prefix: String,
    options: RedisOptions,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("key_prefix", &self.inner.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]` or
    /// `redis+unix://`) with default options.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, key_prefix, RedisOptions::default()).await
    }

    /// Connects with explicit timeouts. Fails with `InvalidConfig` on a bad URL
    /// or prefix, with `Unavailable` when Redis cannot be reached within the
    /// connect timeout.
    pub async fn connect_with(
        url: &str,
        key_prefix: &str,
        options: RedisOptions,
    ) -> Result<Self, ConnectError> {
        check_prefix(key_prefix)?;
        let connection_info = connection_info(url)?;
        let connection = connection_manager(connection_info.clone(), &options).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                connection_info,
                key_prefix: key_prefix.to_owned(),
                options,
            }),
        })
    }

    /// The prefix of every key and channel.
    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// A clone of the shared multiplexed connection.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    /// The bound of one command round trip.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.inner.options.command_timeout
    }

    /// The settings a dedicated connection's handshake needs (AUTH, SELECT).
    pub(crate) fn settings(&self) -> &RedisConnectionInfo {
        self.inner.connection_info.redis_settings()
    }

    /// Opens a dedicated socket to the same server (TCP_NODELAY on), within the
    /// connect timeout. The error names the failure, never the address.
    pub(crate) async fn dial(&self) -> Result<Socket, String> {
        let timeout = self.inner.options.connect_timeout;
        match self.inner.connection_info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream =
                    tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), *port)))
                        .await
                        .map_err(|_| "timed out".to_owned())?
                        .map_err(|err| err.to_string())?;
                let _ = stream.set_nodelay(true);
                Ok(Either::Left(stream))
            }
            ConnectionAddr::Unix(path) => {
                let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|err| err.to_string())?;
                Ok(Either::Right(stream))
            }
            _ => Err("unsupported redis address".to_owned()),
        }
    }
}

/// Checks a key prefix: non-empty, no braces (they would break hash tags), no
/// whitespace or control characters.
fn check_prefix(prefix: &str) -> Result<(), ConnectError> {
    let bad = |c: char| c == '{' || c == '}' || c.is_whitespace() || c.is_control();
    if prefix.is_empty() || prefix.chars().any(bad) {
        return Err(ConnectError::InvalidConfig(
            "invalid key prefix: must be non-empty, without braces or whitespace",
        ));
    }
    Ok(())
}

/// Parses `url` into connection settings with TCP_NODELAY on.
fn connection_info(url: &str) -> Result<ConnectionInfo, ConnectError> {
    let client =
        redis::Client::open(url).map_err(|_| ConnectError::InvalidConfig("invalid redis URL"))?;
    let info = client
        .get_connection_info()
        .clone()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    if !matches!(
        info.addr(),
        ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_)
    ) {
        return Err(ConnectError::InvalidConfig(
            "unsupported redis address: TLS is not enabled in this build",
        ));
    }
    Ok(info)
}

/// A reconnecting, multiplexed (auto-pipelined) connection with bounded timeouts.
async fn connection_manager(
    info: ConnectionInfo,
    options: &RedisOptions,
) -> Result<ConnectionManager, ConnectError> {
    let client =
        redis::Client::open(info).map_err(|_| ConnectError::InvalidConfig("invalid redis URL"))?;
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
    .map_err(|_| ConnectError::Unavailable("redis connect failed: timed out".into()))?
    .map_err(|err| ConnectError::Unavailable(format!("redis connect failed: {err}")))
}
