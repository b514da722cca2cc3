//! Redis pub/sub implementation of the event bus, for deployments of more than one
//! process.
//!
//! **Channel names.** A topic `T` is carried on the Redis channel `{prefix}:ev:{T}`,
//! for example `clawgate:ev:{user.acme.u42}`. The topic sits inside a Redis Cluster
//! hash tag, so all messages of one topic hash to one slot: on Redis Cluster the same
//! names work with sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`), where only the shard
//! owning the slot carries a message. This implementation talks to a standalone
//! server and uses plain `PUBLISH`/`SUBSCRIBE`.
//!
//! **Publishing** goes through the process's one multiplexed, auto-pipelined
//! connection ([`Redis`], which reconnects by itself); `publish_many` sends all its
//! messages in one pipeline. Calls from one task are written in call order, so one
//! publisher's messages on one topic arrive in publish order.
//!
//! **Subscribing.** Each [`EventBus::subscriber`] call opens one dedicated pub/sub
//! connection ([`Redis`] dials it) owned by a background task. The task forwards messages into the bounded
//! deliveries queue; when the connection drops it reconnects with jittered exponential
//! backoff and re-subscribes every current topic, without the owner doing anything.
//!
//! Invariants:
//! - every Redis round trip is bounded by a timeout; while Redis is unreachable,
//!   `publish`, `subscribe` and `subscriber` fail with [`BusError::Unavailable`];
//! - a subscriber's memory is bounded: the task reads from the socket only while the
//!   deliveries queue has room (see `ReadGate`), so a consumer that does not drain
//!   pushes back into Redis, which drops the connection once its pub/sub output
//!   buffer limit is hit; the task then reconnects and re-subscribes (messages in
//!   between are lost, as pub/sub is at most once);
//! - after `unsubscribe` returns, no further message of that topic is queued;
//! - the Redis URL is never logged or put into an error (it may hold a password).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, StreamExt};
use redis::RedisError;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{BusError, Delivery, EventBus, Subscriber, SubscriptionControl, Topic};
use crate::redis::{Redis, RedisOptions};

/// The Redis-backed bus. Cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    redis: Redis,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("key_prefix", &self.redis.key_prefix())
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Publishes on `redis`'s shared connection and opens subscriber
    /// connections to the same server.
    pub fn new(redis: &Redis) -> Self {
        Self {
            redis: redis.clone(),
        }
    }

    /// The Redis channel that carries `topic`: `{prefix}:ev:{topic}`.
    pub fn channel_name(&self, topic: &Topic) -> String {
        channel_name(self.redis.key_prefix(), topic)
    }

    /// The prefix of every channel and key of this bus.
    pub fn key_prefix(&self) -> &str {
        self.redis.key_prefix()
    }

    async fn run_publish(&self, pipeline: redis::Pipeline) -> Result<(), BusError> {
        let mut connection = self.redis.connection();
        tokio::time::timeout(
            self.redis.command_timeout(),
            pipeline.exec_async(&mut connection),
        )
        .await
        .map_err(|_| unavailable("publish", "timed out"))?
        .map_err(|err| redis_unavailable("publish", &err))
    }
}

pub(crate) fn channel_name(key_prefix: &str, topic: &Topic) -> String {
    format!("{key_prefix}:ev:{{{topic}}}")
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("PUBLISH")
            .arg(self.channel_name(topic))
            .arg(payload.as_ref())
            .ignore();
        let span = tracing::debug_span!("bus.publish", topic = %topic, messages = 1);
        self.run_publish(pipeline).instrument(span).await
    }

    async fn publish_many(&self, messages: Vec<(Topic, Bytes)>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!("bus.publish", messages = messages.len());
        let mut pipeline = redis::pipe();
        for (topic, payload) in &messages {
            pipeline
                .cmd("PUBLISH")
                .arg(self.channel_name(topic))
                .arg(payload.as_ref())
                .ignore();
        }
        self.run_publish(pipeline).instrument(span).await
    }

    async fn listeners(&self, topic: &Topic) -> Result<usize, BusError> {
        let mut connection = self.redis.connection();
        let mut command = redis::cmd("PUBSUB");
        command.arg("NUMSUB").arg(self.channel_name(topic));
        let reply: (String, usize) = tokio::time::timeout(
            self.redis.command_timeout(),
            command.query_async(&mut connection),
        )
        .await
        .map_err(|_| unavailable("listeners", "timed out"))?
        .map_err(|err| redis_unavailable("listeners", &err))?;
        Ok(reply.1)
    }

    async fn subscriber(&self, capacity: usize) -> Result<Subscriber, BusError> {
        let shared = Arc::new(SubscriberShared {
            redis: self.redis.clone(),
            options: self.redis.options().clone(),
            gate: Arc::new(ReadGate::default()),
            routes: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(ControlState::Connecting),
        });
        let (sink, stream) = open_pubsub(&shared).await?.split();
        *shared.control.lock().await = ControlState::Connected(sink.clone());
        let (queue, deliveries) = mpsc::channel(capacity.max(1));
        tokio::spawn(run_subscriber(shared.clone(), sink, stream, queue));
        let control = RedisControl {
            shared,
            key_prefix: self.redis.key_prefix().to_owned(),
        };
        Ok(Subscriber {
            control: Arc::new(control),
            deliveries,
        })
    }
}

/// State shared by a subscriber's control handle and its background task.
struct SubscriberShared {
    /// Dials the subscriber's dedicated connections.
    redis: Redis,
    options: RedisOptions,
    gate: Arc<ReadGate>,
    /// Channel → topic of every subscription that is wanted now. The task forwards
    /// only messages of these channels and re-subscribes them after a reconnect.
    routes: Mutex<HashMap<String, Topic>>,
    /// Serializes subscription changes against each other and against reconnects.
    control: tokio::sync::Mutex<ControlState>,
}

impl SubscriberShared {
    fn routes(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        // A poisoned lock only means a panic mid-update of a plain map.
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum ControlState {
    Connecting,
    Connected(PubSubSink),
    /// The deliveries receiver is gone; the task has ended.
    Closed,
}

struct RedisControl {
    shared: Arc<SubscriberShared>,
    key_prefix: String,
}

#[async_trait]
impl SubscriptionControl for RedisControl {
    async fn subscribe(&self, topic: &Topic) -> Result<(), BusError> {
        let channel = channel_name(&self.key_prefix, topic);
        let state = self.shared.control.lock().await;
        let mut sink = match &*state {
            ControlState::Connected(sink) => sink.clone(),
            ControlState::Connecting => {
                return Err(unavailable("subscribe", "reconnecting to redis"));
            }
            ControlState::Closed => return Err(BusError::Closed),
        };
        // Route first, so messages that follow the confirmation are forwarded
        // (and a reconnect from here on subscribes it again).
        let known = self
            .shared
            .routes()
            .insert(channel.clone(), topic.clone())
            .is_some();
        // Subscriptions of different topics wait for their confirmations
        // concurrently (one socket's topics cost one round trip); the sink
        // is a handle of the connection's task, so this is safe to share.
        drop(state);
        let _reading = self.shared.gate.open();
        let result = tokio::time::timeout(
            self.shared.options.command_timeout,
            sink.subscribe(&channel),
        )
        .await;
        let error = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => redis_unavailable("subscribe", &err),
            Err(_) => unavailable("subscribe", "timed out"),
        };
        if !known {
            self.shared.routes().remove(&channel);
        }
        Err(error)
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BusError> {
        let channel = channel_name(&self.key_prefix, topic);
        let state = self.shared.control.lock().await;
        // Delivery stops here; the UNSUBSCRIBE below only spares the traffic. If it
        // fails, the connection is broken and its subscriptions die with it.
        if self.shared.routes().remove(&channel).is_none() {
            return Ok(());
        }
        if let ControlState::Connected(sink) = &*state {
            let mut sink = sink.clone();
            let _reading = self.shared.gate.open();
            let result = tokio::time::timeout(
                self.shared.options.command_timeout,
                sink.unsubscribe(&channel),
            )
            .await;
            if !matches!(result, Ok(Ok(()))) {
                tracing::debug!("redis UNSUBSCRIBE did not complete; delivery stopped locally");
            }
        }
        Ok(())
    }
}

/// Why forwarding on one connection stopped.
enum Stop {
    ConnectionLost,
    ReceiverGone,
}

/// Owns the subscriber's connection for its whole life: forwards messages, and
/// reconnects and re-subscribes when the connection drops. Ends when the deliveries
/// receiver is dropped.
async fn run_subscriber(
    shared: Arc<SubscriberShared>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    queue: mpsc::Sender<Delivery>,
) {
    loop {
        let stop = forward(&shared, &mut sink, &mut stream, &queue).await;
        drop(stream);
        if matches!(stop, Stop::ReceiverGone) {
            break;
        }
        *shared.control.lock().await = ControlState::Connecting;
        tracing::warn!("redis subscriber connection lost; reconnecting");
        match reconnect(&shared, &queue).await {
            Some((new_sink, new_stream)) => {
                sink = new_sink;
                stream = new_stream;
            }
            None => break,
        }
    }
    *shared.control.lock().await = ControlState::Closed;
}

/// Moves messages from the connection into the deliveries queue until the connection
/// or the receiver goes away.
async fn forward(
    shared: &SubscriberShared,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    queue: &mpsc::Sender<Delivery>,
) -> Stop {
    let heartbeat_every = shared.options.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Wait for room first: while the queue is full the socket is not read.
        let Ok(permit) = queue.reserve().await else {
            return Stop::ReceiverGone;
        };
        let message = match stream.next().now_or_never() {
            Some(message) => message,
            None => {
                // Nothing decoded yet: let the connection read until a message comes.
                let _reading = shared.gate.open();
                loop {
                    tokio::select! {
                        message = stream.next() => break message,
                        _ = queue.closed() => return Stop::ReceiverGone,
                        _ = heartbeat.tick() => {
                            let ping = tokio::time::timeout(
                                shared.options.command_timeout,
                                sink.ping::<redis::Value>(),
                            );
                            if !matches!(ping.await, Ok(Ok(_))) {
                                return Stop::ConnectionLost;
                            }
                        }
                    }
                }
            }
        };
        let Some(message) = message else {
            return Stop::ConnectionLost;
        };
        let topic = shared.routes().get(message.get_channel_name()).cloned();
        if let Some(topic) = topic {
            permit.send(Delivery {
                topic,
                payload: Bytes::copy_from_slice(message.get_payload_bytes()),
            });
        }
    }
}

/// Opens a new connection and re-subscribes every wanted channel, retrying with
/// jittered exponential backoff. `None` when the receiver went away meanwhile.
async fn reconnect(
    shared: &SubscriberShared,
    queue: &mpsc::Sender<Delivery>,
) -> Option<(PubSubSink, PubSubStream)> {
    let options = &shared.options;
    let mut delay = options.reconnect_min_delay;
    let mut attempt: u32 = 0;
    loop {
        tokio::select! {
            _ = queue.closed() => return None,
            _ = tokio::time::sleep(jittered(delay)) => {}
        }
        delay = (delay * 2).min(options.reconnect_max_delay);
        attempt += 1;
        let (mut sink, stream) = match open_pubsub(shared).await {
            Ok(connection) => connection.split(),
            Err(err) => {
                tracing::debug!(attempt, error = %err, "redis subscriber reconnect failed");
                continue;
            }
        };
        let mut state = shared.control.lock().await;
        let channels: Vec<String> = shared.routes().keys().cloned().collect();
        if !channels.is_empty() {
            let _reading = shared.gate.open();
            let result =
                tokio::time::timeout(options.command_timeout, sink.subscribe(&channels)).await;
            if !matches!(result, Ok(Ok(()))) {
                tracing::debug!(attempt, "redis re-subscribe failed");
                continue;
            }
        }
        *state = ControlState::Connected(sink.clone());
        tracing::info!(
            attempt,
            topics = channels.len(),
            "redis subscriber reconnected"
        );
        return Some((sink, stream));
    }
}

fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    let half = delay / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// Opens one pub/sub connection whose reads go through the subscriber's gate.
async fn open_pubsub(shared: &SubscriberShared) -> Result<PubSub, BusError> {
    let timeout = shared.options.connect_timeout;
    let io = shared
        .redis
        .dial()
        .await
        .map_err(|reason| unavailable("connect", &reason))?;
    let io = GatedIo {
        io,
        gate: shared.gate.clone(),
    };
    // The handshake (AUTH, SELECT, ...) must read its replies.
    let _reading = shared.gate.open();
    tokio::time::timeout(timeout, PubSub::new(shared.redis.settings(), io))
        .await
        .map_err(|_| unavailable("connect", "timed out"))?
        .map_err(|err| redis_unavailable("connect", &err))
}

/// Lets a subscriber connection read from its socket only while someone waits for
/// what it reads: the forwarder (holding room in the deliveries queue and nothing
/// decoded yet) or a command awaiting its reply. The redis client decodes into an
/// unbounded queue; gating its reads keeps that queue at most one read buffer deep
/// and leaves the backlog in the kernel and in Redis, where it is bounded.
#[derive(Default)]
struct ReadGate {
    openers: AtomicUsize,
    waker: AtomicWaker,
}

impl ReadGate {
    fn open(self: &Arc<Self>) -> GateOpener {
        self.openers.fetch_add(1, Ordering::SeqCst);
        self.waker.wake();
        GateOpener(self.clone())
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.openers.load(Ordering::SeqCst) > 0 {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.openers.load(Ordering::SeqCst) > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Keeps the gate open while alive.
struct GateOpener(Arc<ReadGate>);

impl Drop for GateOpener {
    fn drop(&mut self) {
        self.0.openers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket whose reads wait for the [`ReadGate`]; writes pass straight through.
struct GatedIo<S> {
    io: S,
    gate: Arc<ReadGate>,
}

impl<S: AsyncRead + Unpin> AsyncRead for GatedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn unavailable(operation: &str, reason: &str) -> BusError {
    BusError::Unavailable(format!("redis {operation} failed: {reason}"))
}

/// Redis errors name the failure (I/O error, timeout, server reply), never the URL.
fn redis_unavailable(operation: &str, err: &RedisError) -> BusError {
    unavailable(operation, &err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_puts_the_topic_in_a_hash_tag() {
        let topic = Topic::user("acme", "u42");
        assert_eq!(
            channel_name("clawgate", &topic),
            "clawgate:ev:{user.acme.u42}"
        );
    }
}
