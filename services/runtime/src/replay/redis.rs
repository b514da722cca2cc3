//! Redis replay log: one bounded stream per run, written in the same pipeline as
//! the event's `PUBLISH`.
//!
//! **Key.** `{prefix}:replay:{<tenant>:<user>}:<run id>` (the user's hash tag, see
//! `redis::keys`), a Redis stream whose entry ids are `<seq>-0`, so reading "after
//! seq N" is one `XRANGE key (N+1)-0 + COUNT limit`. Each entry has one field,
//! `e`, holding the event's payload (what was published).
//!
//! **Per event, one round trip** on the process's multiplexed connection:
//! `XADD key MAXLEN ~ N <seq>-0 e <payload>`, `PEXPIRE key retention`, then
//! `PUBLISH channel payload` for each topic, in that order, in one pipeline. The TTL is renewed
//! by every event, so a history disappears `retention` after its run's last event
//! (also when its runner died and never published a terminal event).
//!
//! Invariants: every call is bounded by the handle's command timeout; every key has
//! a TTL; the Redis URL is never logged (this type never sees it).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;

use super::{ReplayError, ReplayEvent, ReplayLog, ReplayOptions, RunRef};
use crate::bus::Topic;
use crate::bus::redis::channel_name;
use crate::redis::Redis;
use crate::redis::keys::user_tag;

/// The Redis [`ReplayLog`]. Cheap to clone.
#[derive(Clone)]
pub struct RedisReplayLog {
    connection: ConnectionManager,
    command_timeout: Duration,
    key_prefix: String,
    options: ReplayOptions,
}

impl std::fmt::Debug for RedisReplayLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayLog")
            .field("key_prefix", &self.key_prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisReplayLog {
    /// Histories on `redis`'s shared connection (the bus publishes on it too),
    /// key prefix and command timeout.
    pub fn new(redis: &Redis, options: ReplayOptions) -> Self {
        Self {
            connection: redis.connection(),
            command_timeout: redis.command_timeout(),
            key_prefix: redis.key_prefix().to_owned(),
            options,
        }
    }

    /// The stream holding `run`'s history.
    pub fn stream_key(&self, run: &RunRef) -> String {
        format!(
            "{}:replay:{}:{}",
            self.key_prefix,
            user_tag(&run.tenant_id, &run.user_id),
            run.run_id
        )
    }

    async fn run<T, F>(&self, operation: &str, call: F) -> Result<T, ReplayError>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> Result<T, redis::RedisError>,
    {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.command_timeout, call(&mut connection))
            .await
            .map_err(|_| ReplayError::Unavailable(format!("redis {operation} timed out")))?
            .map_err(|err| ReplayError::Unavailable(format!("redis {operation} failed: {err}")))
    }
}

#[async_trait]
impl ReplayLog for RedisReplayLog {
    async fn append_and_publish(
        &self,
        topics: &[Topic],
        event: &ReplayEvent,
    ) -> Result<(), ReplayError> {
        let payload = &event.payload;
        let key = self.stream_key(&event.run);
        let retention_ms = u64::try_from(self.options.retention.as_millis()).unwrap_or(u64::MAX);
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.options.max_events_per_run.max(1))
            .arg(format!("{}-0", event.seq))
            .arg("e")
            .arg(payload.as_ref())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(retention_ms)
            .ignore();
        for topic in topics {
            pipeline
                .cmd("PUBLISH")
                .arg(channel_name(&self.key_prefix, topic))
                .arg(payload.as_ref())
                .ignore();
        }
        self.run("publish", async |connection| {
            pipeline.exec_async(connection).await
        })
        .await
    }

    async fn read_from(
        &self,
        run: &RunRef,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Bytes>, ReplayError> {
        let bound = self.options.max_events_per_run.max(1);
        // `MAXLEN ~` may keep somewhat more than the bound; read those too.
        let limit = match limit {
            0 => bound + bound / 4 + 128,
            limit => limit,
        };
        let key = self.stream_key(run);
        let start = format!("{}-0", after_seq.saturating_add(1));
        let reply: StreamRangeReply = self
            .run("xrange", async |connection| {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|entry| match entry.map.get("e") {
                Some(redis::Value::BulkString(bytes)) => Some(Bytes::copy_from_slice(bytes)),
                _ => None,
            })
            .collect())
    }
}
