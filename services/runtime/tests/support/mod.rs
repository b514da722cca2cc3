//! Helpers shared by the Redis tests of this crate: a free port, fast timeouts,
//! a handle and the bus or limits on it, and a private `redis-server` child
//! process to kill and restart.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clawgate_runtime::bus::BusError;
use clawgate_runtime::bus::redis::RedisBus;
use clawgate_runtime::limits::LimitError;
use clawgate_runtime::limits::redis::RedisLimits;
use clawgate_runtime::redis::{Redis, RedisOptions};

const WAIT: Duration = Duration::from_secs(10);

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

pub fn fast_options() -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(500),
        reconnect_min_delay: Duration::from_millis(20),
        reconnect_max_delay: Duration::from_millis(200),
        heartbeat_interval: Duration::from_secs(1),
    }
}

/// Opens a handle on `url` and the bus on it; fails as the bus does.
pub async fn connect_bus(
    url: &str,
    prefix: &str,
    options: RedisOptions,
) -> Result<RedisBus, BusError> {
    let redis = Redis::connect_with(url, prefix, options).await?;
    Ok(RedisBus::new(&redis))
}

/// Opens a handle on `url` and the rate limits on it; fails as the limits do.
pub async fn connect_limits(
    url: &str,
    prefix: &str,
    options: RedisOptions,
) -> Result<RedisLimits, LimitError> {
    let redis = Redis::connect_with(url, prefix, options).await?;
    Ok(RedisLimits::new(&redis))
}

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub async fn start(port: u16, extra_args: &[&str]) -> Self {
        let port_arg = port.to_string();
        let spawned = Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) => panic!(
                "this test starts its own Redis and needs the `redis-server` binary on PATH \
                 (e.g. the Debian package redis-server): {err}"
            ),
        };
        let server = Self { child, port };
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
