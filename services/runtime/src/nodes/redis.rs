//! The Redis node registry: per tenant one hash `{prefix}:nodes:{<tenant>}`,
//! field = node id, value = `<conn id>|<record JSON>` (the prefix lets a
//! disconnect compare the socket without decoding JSON). The braces are a
//! Redis Cluster hash tag. The hash expires [`SEEN_RETENTION`] after its last
//! write.
//!
//! Invariants: a disconnect is one Lua check-and-set (it changes the record
//! only if it still names the closing socket, so a node that reconnected
//! elsewhere meanwhile is not marked gone); every call is bounded by
//! [`COMMAND_TIMEOUT`]; the Redis URL is never logged.

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use redis::aio::ConnectionManager;

use super::{COMMAND_TIMEOUT, NodeRecord, NodeRegistry, SEEN_RETENTION, ttl_ms};
use crate::clock::now_ms;
use crate::redis::Redis;

/// Marks a record disconnected if it names the socket.
/// KEYS[1] hash; ARGV[1] node id, ARGV[2] `<conn id>|`, ARGV[3] new value,
/// ARGV[4] retention (ms).
const DISCONNECT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
";

/// The registry on the process's shared connection.
#[derive(Clone)]
pub struct RedisNodeRegistry {
    connection: ConnectionManager,
    prefix: String,
    disconnect: redis::Script,
}

impl std::fmt::Debug for RedisNodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNodeRegistry")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(operation: &str) -> ServiceError {
    ServiceError::unavailable(format!("node registry {operation} failed"))
}

fn encode(record: &NodeRecord) -> String {
    let json = serde_json::to_string(record).unwrap_or_default();
    format!("{}|{json}", record.conn_id)
}

fn decode(value: &str) -> Option<NodeRecord> {
    let (_, json) = value.split_once('|')?;
    serde_json::from_str(json).ok()
}

impl RedisNodeRegistry {
    pub fn new(redis: &Redis) -> Self {
        Self {
            connection: redis.connection(),
            prefix: redis.key_prefix().to_owned(),
            disconnect: redis::Script::new(DISCONNECT),
        }
    }

    /// The hash of one tenant's nodes.
    pub fn key(&self, tenant_id: &str) -> String {
        format!("{}:nodes:{{{tenant_id}}}", self.prefix)
    }

    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ServiceError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, operation, "node registry error");
                Err(unavailable(operation))
            }
            Err(_) => Err(unavailable(operation)),
        }
    }
}

#[async_trait]
impl NodeRegistry for RedisNodeRegistry {
    async fn put(&self, records: &[NodeRecord]) -> Result<(), ServiceError> {
        if records.is_empty() {
            return Ok(());
        }
        let retention = ttl_ms(SEEN_RETENTION);
        let mut pipeline = redis::pipe();
        for record in records {
            let key = self.key(&record.tenant_id);
            pipeline
                .hset(&key, &record.node_id, encode(record))
                .ignore()
                .pexpire(&key, retention)
                .ignore();
        }
        let mut connection = self.connection.clone();
        self.bounded("put", pipeline.query_async::<()>(&mut connection))
            .await
    }

    async fn disconnect(
        &self,
        tenant_id: &str,
        node_id: &str,
        conn_id: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let Some(record) = self.get(tenant_id, node_id).await? else {
            return Ok(());
        };
        if record.conn_id != conn_id {
            return Ok(());
        }
        let gone = record.disconnected(now_ms(), reason);
        let mut connection = self.connection.clone();
        let mut invocation = self.disconnect.key(self.key(tenant_id));
        invocation
            .arg(node_id)
            .arg(format!("{conn_id}|"))
            .arg(encode(&gone))
            .arg(ttl_ms(SEEN_RETENTION));
        self.bounded(
            "disconnect",
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<NodeRecord>, ServiceError> {
        let mut connection = self.connection.clone();
        let key = self.key(tenant_id);
        let all: Vec<(String, String)> = self
            .bounded("list", async {
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(all
            .iter()
            .filter_map(|(_, value)| decode(value))
            .filter(|record| record.tenant_id == tenant_id)
            .collect())
    }

    async fn get(
        &self,
        tenant_id: &str,
        node_id: &str,
    ) -> Result<Option<NodeRecord>, ServiceError> {
        let mut connection = self.connection.clone();
        let key = self.key(tenant_id);
        let value: Option<String> = self
            .bounded("get", async {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(node_id)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(value
            .as_deref()
            .and_then(decode)
            .filter(|record| record.tenant_id == tenant_id))
    }

    async fn forget(&self, tenant_id: &str, node_id: &str) -> Result<(), ServiceError> {
        let mut connection = self.connection.clone();
        let key = self.key(tenant_id);
        self.bounded("forget", async {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(node_id)
                .query_async::<i64>(&mut connection)
                .await
        })
        .await
        .map(drop)
    }
}
