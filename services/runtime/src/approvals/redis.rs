//! The approval store in Redis, shared by every runner.
//!
//! Keys (the braces are a Redis Cluster hash tag: one tenant's keys share a
//! slot; ids are escaped like every key component):
//! - `{prefix}:approval:{<tenant>}:r:<id>`, a hash: `p` payload, `x` expiry
//!   (epoch ms), `d` decision once set; it expires [`KEEP_AFTER_EXPIRY`]
//!   after the approval does;
//! - `{prefix}:approval:{<tenant>}:i`, a sorted set of the tenant's ids scored
//!   with their expiry, for listing (members past their keep time are pruned
//!   on every create).
//!
//! Invariant: a decision is set by one script that checks and sets it
//! atomically, so of two concurrent decisions exactly one applies.

use std::sync::LazyLock;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{
    ApprovalStore, COMMAND_TIMEOUT, Decide, KEEP_AFTER_EXPIRY, MAX_LISTED, StoredApproval, keep_ms,
};
use crate::clock::now_ms;
use crate::redis::Redis;
use crate::redis::keys::escape;

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
",
    )
});

static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', ARGV[3] .. id, 'p', 'x', 'd')
  if v[1] and not v[3] then
    table.insert(out, id)
    table.insert(out, v[1])
    table.insert(out, v[2])
  end
end
return out
",
    )
});

static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local d = redis.call('HGET', KEYS[1], 'd')
if d then return {2, d} end
redis.call('HSET', KEYS[1], 'd', ARGV[1])
return {1}
",
    )
});

/// Approvals shared by every runner through Redis.
#[derive(Clone)]
pub struct RedisApprovals {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisApprovals")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(operation: &str) -> ServiceError {
    ServiceError::unavailable(format!("approval store {operation} failed"))
}

impl RedisApprovals {
    /// The store on `redis`'s shared connection and key prefix.
    pub fn new(redis: &Redis) -> Self {
        Self {
            connection: redis.connection(),
            prefix: redis.key_prefix().to_owned(),
        }
    }

    fn base(&self, tenant_id: &str) -> String {
        format!("{}:approval:{{{}}}", self.prefix, escape(tenant_id))
    }

    fn record_key(&self, tenant_id: &str, id: &str) -> String {
        format!("{}:r:{}", self.base(tenant_id), escape(id))
    }

    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, ServiceError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, operation, "approval store error");
                Err(unavailable(operation))
            }
            Err(_) => Err(unavailable(operation)),
        }
    }
}

fn parse_ms(raw: &[u8]) -> i64 {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl ApprovalStore for RedisApprovals {
    async fn create(
        &self,
        tenant_id: &str,
        id: &str,
        payload: &[u8],
        expires_at_ms: i64,
    ) -> Result<(), ServiceError> {
        let now = now_ms();
        let keep = i64::try_from(KEEP_AFTER_EXPIRY.as_millis()).unwrap_or(i64::MAX);
        let mut invocation = CREATE.prepare_invoke();
        invocation
            .key(self.record_key(tenant_id, id))
            .key(format!("{}:i", self.base(tenant_id)))
            .arg(escape(id))
            .arg(payload)
            .arg(expires_at_ms)
            .arg(keep_ms(expires_at_ms, now))
            .arg(now.saturating_sub(keep));
        let mut connection = self.connection.clone();
        let _: i64 = self
            .bounded("create", invocation.invoke_async(&mut connection))
            .await?;
        Ok(())
    }

    async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<StoredApproval>, ServiceError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("HMGET");
        command
            .arg(self.record_key(tenant_id, id))
            .arg("p")
            .arg("x")
            .arg("d");
        let (payload, expires, decision): (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>) =
            self.bounded("get", command.query_async(&mut connection))
                .await?;
        Ok(payload.map(|payload| StoredApproval {
            id: id.to_owned(),
            payload,
            expires_at_ms: expires.as_deref().map(parse_ms).unwrap_or(0),
            decision,
        }))
    }

    async fn list(
        &self,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<Vec<StoredApproval>, ServiceError> {
        let mut invocation = LIST.prepare_invoke();
        invocation
            .key(format!("{}:i", self.base(tenant_id)))
            .arg(now_ms)
            .arg(MAX_LISTED)
            .arg(format!("{}:r:", self.base(tenant_id)));
        let mut connection = self.connection.clone();
        let flat: Vec<Vec<u8>> = self
            .bounded("list", invocation.invoke_async(&mut connection))
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|chunk| StoredApproval {
                id: unescape(&chunk[0]),
                payload: chunk[1].clone(),
                expires_at_ms: parse_ms(&chunk[2]),
                decision: None,
            })
            .collect())
    }

    async fn decide(
        &self,
        tenant_id: &str,
        id: &str,
        decision: &[u8],
    ) -> Result<Decide, ServiceError> {
        let mut invocation = DECIDE.prepare_invoke();
        invocation.key(self.record_key(tenant_id, id)).arg(decision);
        let mut connection = self.connection.clone();
        let reply: Vec<redis::Value> = self
            .bounded("decide", invocation.invoke_async(&mut connection))
            .await?;
        let code = match reply.first() {
            Some(redis::Value::Int(code)) => *code,
            _ => return Err(unavailable("decide")),
        };
        Ok(match (code, reply.get(1)) {
            (1, _) => Decide::Applied,
            (2, Some(redis::Value::BulkString(existing))) => Decide::Already(existing.clone()),
            (0, _) => Decide::Unknown,
            _ => return Err(unavailable("decide")),
        })
    }
}

/// The id of an escaped key component (escaping is reversible: `%XX`).
fn unescape(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take(2).collect();
        match u8::from_str_radix(&hex, 16) {
            Ok(byte) => out.push(char::from(byte)),
            Err(_) => {
                out.push('%');
                out.push_str(&hex);
            }
        }
    }
    out
}
