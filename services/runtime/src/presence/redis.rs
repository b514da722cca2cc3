//! The Redis presence registry, on the process's shared connection.
//!
//! Per tenant four keys, all with the hash tag `{<tenant>}` (escaped) so one
//! Lua script may touch them on Redis Cluster:
//! - `{prefix}:presence:{<tenant>}:x`, a sorted set of record keys scored with
//!   their expiry (epoch ms, Redis's clock);
//! - `{prefix}:presence:{<tenant>}:e`, a hash of record key → payload;
//! - `{prefix}:presence:{<tenant>}:o`, a hash of record key → owner;
//! - `{prefix}:presence:{<tenant>}:v`, the count of changes (the version is one
//!   more).
//!
//! Every call is one round trip: a script that prunes the expired records
//! (bumping the version when it removed any), applies the change and, for
//! register, remove and list, returns the version and at most
//! [`MAX_LISTED`] payloads, latest expiry first (refreshes of many records are
//! one pipeline). The three record keys expire [`super::ENTRY_TTL`] after the
//! last write, so a tenant whose edges all died leaves nothing behind; the
//! version lives [`VERSION_TTL`] after its last use. No `KEYS`/`SCAN`.
//!
//! Invariants: as [`super`]; the Redis URL is never logged.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{COMMAND_TIMEOUT, MAX_LISTED, PresenceList, PresenceRecord, PresenceRegistry, Refresh};
use crate::redis::Redis;
use crate::redis::keys::escape;

/// How long a tenant's version outlives its last use.
pub const VERSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Shared by the scripts that answer a list: `now` (Redis time, ms), `prune`
/// (removes expired records, counts a change) and `listing` (the reply).
const COMMON: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function prune()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  if #dead == 0 then return end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #dead, 500 do
    local chunk = {}
    for j = i, math.min(i + 499, #dead) do chunk[#chunk + 1] = dead[j] end
    redis.call('HDEL', KEYS[2], unpack(chunk))
    redis.call('HDEL', KEYS[3], unpack(chunk))
  end
  redis.call('INCR', KEYS[4])
end
local function listing(max, version_ttl)
  local keys = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'LIMIT', 0, max)
  local payloads = {}
  if #keys > 0 then payloads = redis.call('HMGET', KEYS[2], unpack(keys)) end
  local live = {}
  for _, p in ipairs(payloads) do if p then live[#live + 1] = p end end
  local changes = tonumber(redis.call('GET', KEYS[4]) or '0')
  if changes > 0 then redis.call('PEXPIRE', KEYS[4], version_ttl) end
  return {changes, live}
end
";

/// KEYS: x, e, o, v. ARGV: key, owner, payload, ttl ms, max listed, version ttl ms.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{COMMON}
prune()
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
redis.call('INCR', KEYS[4])
return listing(tonumber(ARGV[5]), ARGV[6])
"
    ))
});

/// KEYS: x, e, o, v. ARGV: key, owner, max listed, version ttl ms.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{COMMON}
if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('INCR', KEYS[4])
end
prune()
return listing(tonumber(ARGV[3]), ARGV[4])
"
    ))
});

/// KEYS: x, e, o, v. ARGV: max listed, version ttl ms.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{COMMON}
prune()
return listing(tonumber(ARGV[1]), ARGV[2])
"
    ))
});

/// KEYS: x, e, o. ARGV: key, owner, payload, ttl ms. Returns 1 when refreshed.
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
",
    )
});

/// Records refreshed per pipeline.
const REFRESH_BATCH: usize = 500;

/// Presence shared by every edge through Redis.
#[derive(Clone)]
pub struct RedisPresence {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(operation: &str) -> ServiceError {
    ServiceError::unavailable(format!("presence {operation} failed"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl RedisPresence {
    /// The registry on `redis`'s shared connection and key prefix.
    pub fn new(redis: &Redis) -> Self {
        Self {
            connection: redis.connection(),
            prefix: redis.key_prefix().to_owned(),
        }
    }

    /// The four keys of a tenant: expiries, payloads, owners, version.
    pub fn keys(&self, tenant_id: &str) -> [String; 4] {
        let base = format!("{}:presence:{{{}}}", self.prefix, escape(tenant_id));
        ["x", "e", "o", "v"].map(|suffix| format!("{base}:{suffix}"))
    }

    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, ServiceError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, operation, "presence registry error");
                Err(unavailable(operation))
            }
            Err(_) => Err(unavailable(operation)),
        }
    }

    async fn listing(
        &self,
        operation: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<PresenceList, ServiceError> {
        let mut connection = self.connection.clone();
        let (changes, payloads): (u64, Vec<Vec<u8>>) = self
            .bounded(operation, invocation.invoke_async(&mut connection))
            .await?;
        Ok(PresenceList {
            payloads,
            version: changes + 1,
        })
    }
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    async fn register(
        &self,
        tenant_id: &str,
        record: &PresenceRecord,
        ttl: Duration,
    ) -> Result<PresenceList, ServiceError> {
        let keys = self.keys(tenant_id);
        let mut invocation = REGISTER.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        invocation
            .arg(&record.key)
            .arg(&record.owner)
            .arg(&record.payload)
            .arg(millis(ttl))
            .arg(MAX_LISTED)
            .arg(millis(VERSION_TTL));
        self.listing("register", &invocation).await
    }

    async fn refresh(&self, records: &[Refresh], ttl: Duration) -> Result<(), ServiceError> {
        for batch in records.chunks(REFRESH_BATCH) {
            let keys: Vec<[String; 4]> = batch.iter().map(|r| self.keys(&r.tenant_id)).collect();
            let invocations: Vec<redis::ScriptInvocation<'_>> = batch
                .iter()
                .zip(&keys)
                .map(|(refresh, keys)| {
                    let mut invocation = REFRESH.key(&keys[0]);
                    invocation
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(&refresh.record.key)
                        .arg(&refresh.record.owner)
                        .arg(&refresh.record.payload)
                        .arg(millis(ttl));
                    invocation
                })
                .collect();
            let mut pipeline = redis::pipe();
            pipeline.load_script(&REFRESH).ignore();
            for invocation in &invocations {
                pipeline.invoke_script(invocation).ignore();
            }
            let mut connection = self.connection.clone();
            self.bounded("refresh", pipeline.exec_async(&mut connection))
                .await?;
        }
        Ok(())
    }

    async fn remove(
        &self,
        tenant_id: &str,
        key: &str,
        owner: &str,
    ) -> Result<PresenceList, ServiceError> {
        let keys = self.keys(tenant_id);
        let mut invocation = REMOVE.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation
            .arg(key)
            .arg(owner)
            .arg(MAX_LISTED)
            .arg(millis(VERSION_TTL));
        self.listing("remove", &invocation).await
    }

    async fn list(&self, tenant_id: &str) -> Result<PresenceList, ServiceError> {
        let keys = self.keys(tenant_id);
        let mut invocation = LIST.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.arg(MAX_LISTED).arg(millis(VERSION_TTL));
        self.listing("list", &invocation).await
    }
}
