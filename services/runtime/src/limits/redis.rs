//! Redis-backed rate limits, shared by every process of a distributed deployment.
//!
//! **Connection.** [`RedisLimits`] uses the process's [`Redis`] handle (its one
//! multiplexed, auto-reconnecting connection); both limiters of a process share
//! it. Every call is one round trip (a Lua script, run by `EVALSHA`; only the
//! first call after a Redis restart also loads the script) bounded by the
//! handle's command timeout.
//!
//! **Keys** (`{prefix}` as for the bus, e.g. `clawgate`; the part in braces is a Redis
//! Cluster hash tag, so the keys one script touches live in one slot):
//! - `{prefix}:limit:auth:{<scope>:<ip>}:failures` — sorted set of the failures in
//!   the window (member: a random id, score: server time in ms); TTL = window;
//! - `{prefix}:limit:auth:{<scope>:<ip>}:lockout` — present while locked; TTL =
//!   lockout;
//! - `{prefix}:limit:preauth:{<ip>}` — sorted set of the held slots (member: permit
//!   id, score: expiry in server ms); TTL = `permit_ttl`, renewed on every acquire.
//!
//! **Why the budget self-heals.** A slot is a sorted-set member scored with its
//! expiry. Every acquire first drops members whose expiry has passed, and the key
//! itself expires `permit_ttl` after the last acquire. A process that dies holding
//! slots therefore stops counting against the IP at most `permit_ttl` later, without
//! anyone cleaning up. Counters with a TTL would not: a process dying between INCR
//! and DECR would leave the count too high until the whole key expired, and a busy
//! IP keeps renewing that TTL. Times come from Redis (`TIME`), so edge processes
//! need no synchronized clocks.
//!
//! Invariants: every key written has a TTL; each call is atomic on the server; the
//! Redis URL is never logged or put into an error (it may hold a password).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use super::{
    AuthLimitConfig, AuthLimiter, BudgetPermit, LimitDecision, LimitError, LimitKey, SlotRelease,
    SocketBudget, SocketBudgetConfig, canonical_ip, millis,
};
use crate::redis::Redis;

/// Counts one failure. KEYS: failures, lockout. ARGV: window ms, max failures,
/// lockout ms, member id. Returns `{outcome, lockout left in ms}`: outcome 0 when
/// allowed, 1 when this failure locked the key out, 2 when it was locked already.
static RECORD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local lock_left = redis.call('PTTL', KEYS[2])
if lock_left > 0 then return {2, lock_left} end
if lock_left == -1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {2, tonumber(ARGV[3])}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return {1, tonumber(ARGV[3])}
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {0, 0}
",
    )
});

/// Takes one budget slot. KEYS: slots. ARGV: max per IP, ttl ms, permit id.
/// Returns 1 when taken, 0 when the budget is used up.
static ACQUIRE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// A process's connection for rate limits. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimits {
    inner: Arc<LimitsInner>,
}

struct LimitsInner {
    connection: ConnectionManager,
    key_prefix: String,
    command_timeout: Duration,
}

impl fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimits")
            .field("key_prefix", &self.inner.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimits {
    /// Rate limits on `redis`'s shared connection and key prefix.
    pub fn new(redis: &Redis) -> Self {
        Self {
            inner: Arc::new(LimitsInner {
                connection: redis.connection(),
                key_prefix: redis.key_prefix().to_owned(),
                command_timeout: redis.command_timeout(),
            }),
        }
    }

    /// The keys of one (scope, IP): `(failures, lockout)`.
    pub fn auth_keys(&self, key: &LimitKey) -> (String, String) {
        auth_keys(&self.inner.key_prefix, key)
    }

    /// The key of one IP's budget slots.
    pub fn budget_key(&self, ip: IpAddr) -> String {
        budget_key(&self.inner.key_prefix, ip)
    }

    /// Runs one command or script call within the command timeout.
    async fn run<T, F>(&self, operation: &str, call: F) -> Result<T, LimitError>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> Result<T, RedisError>,
    {
        let mut connection = self.inner.connection.clone();
        tokio::time::timeout(self.inner.command_timeout, call(&mut connection))
            .await
            .map_err(|_| unavailable(operation, "timed out"))?
            .map_err(|err| redis_unavailable(operation, &err))
    }
}

// ---------------------------------------------------------------------------
// Failed-auth lockout
// ---------------------------------------------------------------------------

/// The Redis [`AuthLimiter`].
#[derive(Clone, Debug)]
pub struct RedisAuthLimiter {
    redis: RedisLimits,
    config: AuthLimitConfig,
}

impl RedisAuthLimiter {
    pub fn new(redis: RedisLimits, config: AuthLimitConfig) -> Self {
        Self {
            redis,
            config: config.normalized(),
        }
    }
}

#[async_trait]
impl AuthLimiter for RedisAuthLimiter {
    async fn check(&self, key: &LimitKey) -> Result<LimitDecision, LimitError> {
        if self.config.is_exempt(key.ip()) {
            return Ok(LimitDecision::Allowed);
        }
        let (_, lockout_key) = self.redis.auth_keys(key);
        let left: i64 = self
            .redis
            .run("auth check", async |connection| {
                redis::cmd("PTTL")
                    .arg(&lockout_key)
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(match left {
            // No expiry cannot be written by this module; count it as a fresh lockout
            // (the next recorded failure puts the TTL back).
            -1 => LimitDecision::Locked {
                retry_after_ms: millis(self.config.lockout),
            },
            left if left > 0 => LimitDecision::Locked {
                retry_after_ms: left.unsigned_abs(),
            },
            _ => LimitDecision::Allowed,
        })
    }

    async fn record_failure(&self, key: &LimitKey) -> Result<LimitDecision, LimitError> {
        if self.config.is_exempt(key.ip()) {
            return Ok(LimitDecision::Allowed);
        }
        let (failures_key, lockout_key) = self.redis.auth_keys(key);
        let member = uuid::Uuid::new_v4().simple().to_string();
        let config = &self.config;
        let (outcome, left): (i64, i64) = self
            .redis
            .run("auth record failure", async |connection| {
                RECORD_FAILURE
                    .key(&failures_key)
                    .key(&lockout_key)
                    .arg(millis(config.window))
                    .arg(config.max_failures)
                    .arg(millis(config.lockout))
                    .arg(&member)
                    .invoke_async(connection)
                    .await
            })
            .await?;
        if outcome == 0 {
            return Ok(LimitDecision::Allowed);
        }
        if outcome == 1 {
            tracing::info!(
                ip = %key.ip(),
                scope = %key.scope(),
                "too many failed authentication attempts; locked out"
            );
        }
        Ok(LimitDecision::Locked {
            retry_after_ms: left.unsigned_abs(),
        })
    }
}

// ---------------------------------------------------------------------------
// Pre-auth socket budget
// ---------------------------------------------------------------------------

/// The Redis [`SocketBudget`].
#[derive(Clone, Debug)]
pub struct RedisSocketBudget {
    redis: RedisLimits,
    config: SocketBudgetConfig,
}

impl RedisSocketBudget {
    pub fn new(redis: RedisLimits, config: SocketBudgetConfig) -> Self {
        Self {
            redis,
            config: config.normalized(),
        }
    }
}

#[async_trait]
impl SocketBudget for RedisSocketBudget {
    async fn acquire(&self, ip: IpAddr) -> Result<Option<BudgetPermit>, LimitError> {
        let ip = canonical_ip(ip);
        let key = self.redis.budget_key(ip);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = &self.config;
        let taken: i64 = self
            .redis
            .run("budget acquire", async |connection| {
                ACQUIRE_SLOT
                    .key(&key)
                    .arg(config.max_per_ip)
                    .arg(millis(config.permit_ttl))
                    .arg(&id)
                    .invoke_async(connection)
                    .await
            })
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        let slot = RedisSlot {
            redis: self.redis.clone(),
            key,
            id,
        };
        Ok(Some(BudgetPermit::new(ip, Box::new(slot))))
    }
}

struct RedisSlot {
    redis: RedisLimits,
    key: String,
    id: String,
}

#[async_trait]
impl SlotRelease for RedisSlot {
    async fn release(self: Box<Self>) {
        let result: Result<i64, LimitError> = self
            .redis
            .run("budget release", async |connection| {
                redis::cmd("ZREM")
                    .arg(&self.key)
                    .arg(&self.id)
                    .query_async(connection)
                    .await
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not release a pre-auth slot; it expires by itself");
        }
    }

    fn release_in_background(self: Box<Self>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.release());
            }
            Err(_) => {
                tracing::debug!("no runtime to release a pre-auth slot; it expires by itself");
            }
        }
    }
}

fn auth_keys(key_prefix: &str, key: &LimitKey) -> (String, String) {
    let base = format!("{key_prefix}:limit:auth:{{{}:{}}}", key.scope(), key.ip());
    (format!("{base}:failures"), format!("{base}:lockout"))
}

fn budget_key(key_prefix: &str, ip: IpAddr) -> String {
    format!("{key_prefix}:limit:preauth:{{{}}}", canonical_ip(ip))
}

fn unavailable(operation: &str, reason: &str) -> LimitError {
    LimitError::Unavailable(format!("redis {operation} failed: {reason}"))
}

/// Redis errors name the failure (I/O error, timeout, server reply), never the URL.
fn redis_unavailable(operation: &str, err: &RedisError) -> LimitError {
    unavailable(operation, &err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::AuthScope;

    #[test]
    fn keys_put_scope_and_ip_in_one_hash_tag() {
        let ip: IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        let (failures, lockout) = auth_keys("clawgate", &LimitKey::new(ip, AuthScope::DeviceToken));
        assert_eq!(
            failures,
            "clawgate:limit:auth:{device-token:203.0.113.7}:failures"
        );
        assert_eq!(
            lockout,
            "clawgate:limit:auth:{device-token:203.0.113.7}:lockout"
        );
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            budget_key("clawgate", v6),
            "clawgate:limit:preauth:{2001:db8::1}"
        );
    }
}
