//! Calling a node from any process ([`Invoker`]): the edge serving an
//! operator's `node.invoke`, or a runner whose agent uses a node.
//!
//! A call looks the node up in the registry (a record read within the last
//! [`RECORD_CACHE_FOR`] is reused, except to refuse a command: that is decided
//! on a fresh read), checks the command against the record's allowlist, publishes a [`NodeInvokeRequest`] on the holding pod's inbox
//! topic with this process's reply topic, and waits for the
//! [`NodeInvokeResult`] that the process's dispatcher hands to
//! [`Invoker::complete`].
//!
//! Failure semantics (a command runs at most once per call):
//! - not delivered (no live record, or the pod answers that the socket is not
//!   there): the node may be reconnecting, so the call looks again every
//!   [`RECONNECT_POLL`] for up to [`RECONNECT_GRACE`] (within its timeout),
//!   then fails `NotConnected`;
//! - delivered, then the node left (its pod answers at once) or its pod died
//!   (the pod's inbox has no listener any more; checked every
//!   [`POD_CHECK_EVERY`]): fails `NotConnected` at once, never retried;
//! - no answer within the timeout: `Timeout`.
//!
//! Retries of one idempotency key (per tenant and node) share the first call's
//! outcome for [`DEDUPE_FOR`] (at most [`DEDUPE_MAX`] keys are remembered).
//!
//! Invariants: every waiting call has one pending entry, removed when it ends
//! however it ends; queues and maps are bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clawgate_proto::pb::common::v1::{
    BusMessage, NodeInvokeRequest, NodeInvokeResult, bus_message,
};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use prost::Message as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{NodeRecord, NodeRegistry};
use crate::bus::{EventBus, Topic};
use crate::clock::now_ms;
use crate::device_registry::inbox_topic;

/// How long a call waits for a disconnected node to come back.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);
/// How often a call waiting for a node looks it up again.
pub const RECONNECT_POLL: Duration = Duration::from_millis(100);
/// How often a delivered call checks that the node's pod is still there.
pub const POD_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a record read from the registry is reused.
pub const RECORD_CACHE_FOR: Duration = Duration::from_secs(1);
/// How long an idempotency key's outcome is kept.
pub const DEDUPE_FOR: Duration = Duration::from_secs(60);
/// Most idempotency keys remembered at once.
pub const DEDUPE_MAX: usize = 10_000;
const CACHE_MAX: usize = 4_096;

/// One call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvokeCall {
    pub tenant_id: String,
    pub node_id: String,
    /// `Some(user)`: only a node of this user may be called (the caller does
    /// not see the whole tenant); another's reads as not connected.
    pub owner: Option<String>,
    pub command: String,
    /// JSON text; empty: no params.
    pub params_json: String,
    pub timeout: Duration,
    pub idempotency_key: String,
}

/// What the node answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Invoked {
    pub node_id: String,
    pub command: String,
    /// JSON text; empty: no payload.
    pub payload_json: String,
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvokeError {
    #[error("node not connected")]
    NotConnected,
    #[error("node command not allowed: {0}")]
    Disallowed(String),
    #[error("node invoke timed out")]
    Timeout,
    #[error("{code}: {message}")]
    Node { code: String, message: String },
    #[error("{0}")]
    Unavailable(String),
}

type Outcome = Result<Invoked, InvokeError>;
type DedupeKey = (String, String, String);

#[derive(Default)]
struct Dedupe {
    calls: HashMap<DedupeKey, Shared<BoxFuture<'static, Outcome>>>,
    order: VecDeque<(Instant, DedupeKey)>,
}

struct Inner {
    bus: Arc<dyn EventBus>,
    registry: Arc<dyn NodeRegistry>,
    reply_topic: Topic,
    pending: Mutex<HashMap<String, oneshot::Sender<NodeInvokeResult>>>,
    cache: Mutex<HashMap<(String, String), (Instant, NodeRecord)>>,
    dedupe: Mutex<Dedupe>,
}

/// Calls nodes; cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("reply_topic", &self.inner.reply_topic)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the pending entry of a call when the call ends, however it ends.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

/// What one delivery attempt came to.
enum Attempt {
    Done(Outcome),
    /// Not delivered: the node may come back.
    Absent,
}

impl Invoker {
    /// An invoker whose results arrive on `reply_topic` (which the process
    /// subscribes and whose [`NodeInvokeResult`]s it passes to
    /// [`Invoker::complete`]).
    pub fn new(
        bus: Arc<dyn EventBus>,
        registry: Arc<dyn NodeRegistry>,
        reply_topic: Topic,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bus,
                registry,
                reply_topic,
                pending: Mutex::new(HashMap::new()),
                cache: Mutex::new(HashMap::new()),
                dedupe: Mutex::new(Dedupe::default()),
            }),
        }
    }

    pub fn registry(&self) -> &Arc<dyn NodeRegistry> {
        &self.inner.registry
    }

    /// Calls waiting for their node's answer.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Hands a result that arrived on the reply topic to its call (a late or
    /// unknown one is dropped).
    pub fn complete(&self, result: NodeInvokeResult) {
        if let Some(waiter) = lock(&self.inner.pending).remove(&result.id) {
            let _ = waiter.send(result);
        }
    }

    /// Runs `call` (or joins the earlier call of its idempotency key).
    pub async fn invoke(&self, call: InvokeCall) -> Outcome {
        if call.idempotency_key.is_empty() {
            return self.run(call).await;
        }
        let key = (
            call.tenant_id.clone(),
            call.node_id.clone(),
            call.idempotency_key.clone(),
        );
        let shared = {
            let mut dedupe = lock(&self.inner.dedupe);
            let now = Instant::now();
            while let Some((at, _)) = dedupe.order.front() {
                if now.duration_since(*at) < DEDUPE_FOR && dedupe.order.len() < DEDUPE_MAX {
                    break;
                }
                if let Some((_, old)) = dedupe.order.pop_front() {
                    dedupe.calls.remove(&old);
                }
            }
            match dedupe.calls.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let this = self.clone();
                    let shared = async move { this.run(call).await }.boxed().shared();
                    dedupe.calls.insert(key.clone(), shared.clone());
                    dedupe.order.push_back((now, key));
                    shared
                }
            }
        };
        shared.await
    }

    async fn run(&self, call: InvokeCall) -> Outcome {
        let deadline = Instant::now() + call.timeout;
        let grace_end = Instant::now() + RECONNECT_GRACE.min(call.timeout);
        let mut fresh = false;
        loop {
            let record = self.lookup(&call, fresh).await?;
            let live = record
                .as_ref()
                .filter(|r| r.is_live(now_ms()))
                .filter(|r| call.owner.as_ref().is_none_or(|owner| *owner == r.user_id));
            if let Some(record) = live {
                if !record.allows(&call.command) {
                    // A cached record may predate an approval: refuse on a fresh one only.
                    if !fresh {
                        fresh = true;
                        continue;
                    }
                    return Err(InvokeError::Disallowed(call.command.clone()));
                }
                match self.deliver(&call, record, deadline).await {
                    Attempt::Done(outcome) => return outcome,
                    Attempt::Absent => self.forget_cached(&call),
                }
            }
            let known = record
                .as_ref()
                .is_some_and(|r| call.owner.as_ref().is_none_or(|owner| *owner == r.user_id));
            if !known || Instant::now() + RECONNECT_POLL > grace_end {
                return Err(InvokeError::NotConnected);
            }
            tokio::time::sleep(RECONNECT_POLL).await;
            fresh = true;
        }
    }

    async fn lookup(
        &self,
        call: &InvokeCall,
        fresh: bool,
    ) -> Result<Option<NodeRecord>, InvokeError> {
        let key = (call.tenant_id.clone(), call.node_id.clone());
        if !fresh
            && let Some((at, record)) = lock(&self.inner.cache).get(&key)
            && at.elapsed() < RECORD_CACHE_FOR
        {
            return Ok(Some(record.clone()));
        }
        let record = self
            .inner
            .registry
            .get(&call.tenant_id, &call.node_id)
            .await
            .map_err(|err| InvokeError::Unavailable(err.message))?;
        let mut cache = lock(&self.inner.cache);
        match &record {
            Some(record) if record.is_live(now_ms()) => {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (Instant::now(), record.clone()));
            }
            _ => {
                cache.remove(&key);
            }
        }
        Ok(record)
    }

    fn forget_cached(&self, call: &InvokeCall) {
        lock(&self.inner.cache).remove(&(call.tenant_id.clone(), call.node_id.clone()));
    }

    async fn deliver(&self, call: &InvokeCall, record: &NodeRecord, deadline: Instant) -> Attempt {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, mut rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id.clone(), tx);
        let _guard = PendingGuard {
            inner: &self.inner,
            id: id.clone(),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = NodeInvokeRequest {
            id,
            tenant_id: call.tenant_id.clone(),
            node_id: call.node_id.clone(),
            conn_id: record.conn_id.clone(),
            command: call.command.clone(),
            params_json: call.params_json.clone(),
            timeout_ms: i64::try_from(remaining.as_millis()).unwrap_or(i64::MAX),
            idempotency_key: call.idempotency_key.clone(),
            reply_topic: self.inner.reply_topic.as_str().to_owned(),
        };
        let message = BusMessage {
            body: Some(bus_message::Body::NodeInvokeRequest(request)),
        };
        let pod = inbox_topic(&record.pod_id);
        if let Err(err) = self
            .inner
            .bus
            .publish(&pod, Bytes::from(message.encode_to_vec()))
            .await
        {
            return Attempt::Done(Err(InvokeError::Unavailable(err.to_string())));
        }
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        let mut check = tokio::time::interval_at(Instant::now() + POD_CHECK_EVERY, POD_CHECK_EVERY);
        loop {
            tokio::select! {
                result = &mut rx => {
                    return match result {
                        Ok(result) => answer(call, result),
                        Err(_) => Attempt::Done(Err(InvokeError::NotConnected)),
                    };
                }
                () = &mut timeout => return Attempt::Done(Err(InvokeError::Timeout)),
                _ = check.tick() => {
                    if let Ok(0) = self.inner.bus.listeners(&pod).await {
                        tracing::debug!(pod = %record.pod_id, "node's edge is gone");
                        return Attempt::Done(Err(InvokeError::NotConnected));
                    }
                }
            }
        }
    }
}

/// Error code of a result whose node was not on the pod (never delivered).
pub const NOT_HERE: &str = "NOT_CONNECTED";
/// Error code of a result whose node left after the request reached it.
pub const LEFT: &str = "NODE_DISCONNECTED";
/// Error code of a result the node's edge refused: the command is no longer
/// allowed there (its pairing changed after the caller's cached read).
pub const DISALLOWED: &str = "COMMAND_DISALLOWED";

fn answer(call: &InvokeCall, result: NodeInvokeResult) -> Attempt {
    if result.not_connected {
        return if result.error_code == NOT_HERE {
            Attempt::Absent
        } else {
            Attempt::Done(Err(InvokeError::NotConnected))
        };
    }
    if !result.ok && result.error_code == DISALLOWED {
        return Attempt::Done(Err(InvokeError::Disallowed(call.command.clone())));
    }
    Attempt::Done(if result.ok {
        Ok(Invoked {
            node_id: call.node_id.clone(),
            command: call.command.clone(),
            payload_json: result.payload_json,
        })
    } else {
        Err(InvokeError::Node {
            code: if result.error_code.is_empty() {
                "UNAVAILABLE".to_owned()
            } else {
                result.error_code
            },
            message: result.error_message,
        })
    })
}
