//! This edge's node sockets and its calls to nodes on any edge.
//!
//! [`EdgeNodes`] owns:
//! - the local node table: connection id → the node's registry record and the
//!   socket's inbox. A node socket is entered ([`EdgeNodes::add`]) before its
//!   `hello-ok` (the registry record is written first, so a call made after
//!   `hello-ok` finds it), refreshed in the registry every
//!   [`REFRESH_EVERY`] while it lives, and removed when it closes
//!   ([`EdgeNodes::remove`]: the registry record is marked disconnected and
//!   every call it had not answered fails at once);
//! - the calls delivered to local nodes and not answered yet (invoke id →
//!   where the answer goes), bounded by each call's deadline;
//! - the [`Invoker`] this edge's `node.invoke` uses, whose replies arrive on
//!   the pod inbox.
//!
//! Messages on the pod inbox ([`EdgeNodes::on_inbox`], called by the hub's
//! dispatcher, never blocks): a [`NodeInvokeRequest`] for a socket of this pod
//! is pushed into that socket's inbox (the socket sends `node.invoke.request`);
//! one for a socket that is not here is answered `NOT_CONNECTED` at once; a
//! [`NodeInvokeResult`] goes to the invoker.
//!
//! Answers (the nodes' results, and `NOT_CONNECTED` for absent sockets) are
//! queued and published in pipelined batches by one task, so a node answering
//! at a high rate costs one Redis round trip per batch, and the socket that
//! passes an answer on never waits.
//!
//! Invariants: a call is answered at most once (its entry is taken by the
//! first of: the node's answer, the socket's close, the deadline sweep); a
//! call reaches only the socket the registry record names, of its tenant and
//! node id.

pub mod seat;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clawgate_proto::pb::common::v1::{
    BusMessage, NodeInvokeRequest, NodeInvokeResult, bus_message,
};
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::device_registry::inbox_topic;
use clawgate_runtime::nodes::invoker::{DISALLOWED, Invoker, LEFT, NOT_HERE};
use clawgate_runtime::nodes::{NodeRecord, NodeRegistry, REFRESH_EVERY};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hub::{EventInbox, HubEvent};

/// Answers waiting to be published, at most.
const ANSWER_QUEUE: usize = 4096;
/// Answers published in one round trip, at most.
const ANSWER_BATCH: usize = 256;
/// Bytes charged for a call queued to a node socket besides its params.
const CALL_OVERHEAD_BYTES: usize = 256;
/// Longest a delivered call is remembered past its deadline (its caller has
/// given up by then).
const AFTER_DEADLINE: Duration = Duration::from_secs(5);

struct LocalNode {
    record: NodeRecord,
    inbox: Arc<EventInbox>,
}

struct AtNode {
    conn_id: String,
    reply_topic: Topic,
    tenant_id: String,
    node_id: String,
    deadline: Instant,
}

struct Inner {
    bus: Arc<dyn EventBus>,
    registry: Arc<dyn NodeRegistry>,
    invoker: Invoker,
    /// Answers on their way to the callers' topics (see [`publish_answers`]).
    answers: mpsc::Sender<(Topic, Bytes)>,
    local: Mutex<HashMap<String, LocalNode>>,
    at_node: Mutex<HashMap<String, AtNode>>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct EdgeNodes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EdgeNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeNodes")
            .field("local", &lock(&self.inner.local).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A result that travels on the bus.
fn encoded(result: NodeInvokeResult) -> Bytes {
    let message = BusMessage {
        body: Some(bus_message::Body::NodeInvokeResult(result)),
    };
    Bytes::from(message.encode_to_vec())
}

fn not_connected(request: &NodeInvokeRequest, code: &str) -> NodeInvokeResult {
    NodeInvokeResult {
        id: request.id.clone(),
        tenant_id: request.tenant_id.clone(),
        node_id: request.node_id.clone(),
        ok: false,
        error_code: code.to_owned(),
        error_message: "node not connected".to_owned(),
        not_connected: true,
        ..Default::default()
    }
}

impl EdgeNodes {
    /// Starts the refresh of this pod's node records (it ends once every
    /// handle is dropped). Replies to this edge's calls arrive on the inbox of
    /// `pod_id`.
    pub fn start(pod_id: &str, bus: Arc<dyn EventBus>, registry: Arc<dyn NodeRegistry>) -> Self {
        let invoker = Invoker::new(bus.clone(), registry.clone(), inbox_topic(pod_id));
        let (answers, queued) = mpsc::channel(ANSWER_QUEUE);
        tokio::spawn(publish_answers(bus.clone(), queued));
        let inner = Arc::new(Inner {
            bus,
            registry,
            invoker,
            answers,
            local: Mutex::new(HashMap::new()),
            at_node: Mutex::new(HashMap::new()),
        });
        let nodes = Self { inner };
        let weak = Arc::downgrade(&nodes.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REFRESH_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let records: Vec<NodeRecord> = {
                    let mut local = lock(&inner.local);
                    for node in local.values_mut() {
                        node.record = node.record.clone().renewed();
                    }
                    local.values().map(|node| node.record.clone()).collect()
                };
                let now = Instant::now();
                lock(&inner.at_node).retain(|_, call| call.deadline + AFTER_DEADLINE > now);
                if let Err(err) = inner.registry.put(&records).await {
                    tracing::warn!(error = %err, "cannot refresh the node registry");
                }
            }
        });
        nodes
    }

    pub fn invoker(&self) -> &Invoker {
        &self.inner.invoker
    }

    pub fn registry(&self) -> &Arc<dyn NodeRegistry> {
        &self.inner.registry
    }

    /// Enters a node socket (before its `hello-ok`): its record is written
    /// to the registry first.
    pub async fn add(
        &self,
        record: NodeRecord,
        inbox: Arc<EventInbox>,
    ) -> Result<(), clawgate_proto::ServiceError> {
        let record = record.renewed();
        self.inner
            .registry
            .put(std::slice::from_ref(&record))
            .await?;
        let conn_id = record.conn_id.clone();
        lock(&self.inner.local).insert(conn_id, LocalNode { record, inbox });
        Ok(())
    }

    /// A node socket closed: its calls fail at once and its record reads
    /// disconnected.
    pub async fn remove(&self, conn_id: &str, reason: &str) {
        let Some(node) = lock(&self.inner.local).remove(conn_id) else {
            return;
        };
        let abandoned: Vec<(String, AtNode)> = {
            let mut at_node = lock(&self.inner.at_node);
            let ids: Vec<String> = at_node
                .iter()
                .filter(|(_, call)| call.conn_id == conn_id)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| at_node.remove(&id).map(|call| (id, call)))
                .collect()
        };
        let messages: Vec<(Topic, Bytes)> = abandoned
            .into_iter()
            .map(|(id, call)| {
                let request = NodeInvokeRequest {
                    id,
                    tenant_id: call.tenant_id,
                    node_id: call.node_id,
                    ..Default::default()
                };
                (call.reply_topic, encoded(not_connected(&request, LEFT)))
            })
            .collect();
        if !messages.is_empty()
            && let Err(err) = self.inner.bus.publish_many(messages).await
        {
            tracing::warn!(error = %err, "cannot fail the calls of a closed node");
        }
        let record = &node.record;
        if let Err(err) = self
            .inner
            .registry
            .disconnect(&record.tenant_id, &record.node_id, conn_id, reason)
            .await
        {
            tracing::debug!(error = %err, "cannot mark a node disconnected");
        }
    }

    /// Applies a pairing decision to the local sockets of `node_id`: the
    /// commands they may run become those declared and `approved` (`None`:
    /// the pairing was removed, nothing is allowed).
    pub async fn apply_pairing(
        &self,
        tenant_id: &str,
        node_id: &str,
        approved: Option<&[String]>,
        approved_at_ms: i64,
    ) {
        let changed: Vec<NodeRecord> = {
            let mut local = lock(&self.inner.local);
            local
                .values_mut()
                .filter(|node| node.record.tenant_id == tenant_id && node.record.node_id == node_id)
                .map(|node| {
                    let record = &mut node.record;
                    match approved {
                        Some(approved) => {
                            record.allowed_commands = seat::allowed(&record.commands, approved);
                            record.paired = true;
                            record.approved_at_ms = approved_at_ms;
                        }
                        None => {
                            record.allowed_commands.clear();
                            record.paired = false;
                        }
                    }
                    record.clone()
                })
                .collect()
        };
        if let Err(err) = self.inner.registry.put(&changed).await {
            tracing::warn!(error = %err, "cannot update a node's commands");
        }
    }

    /// A call or result from the pod inbox (see the module doc). Never blocks.
    pub fn on_inbox(&self, event: HubEvent) {
        match event {
            HubEvent::NodeInvoke(request) => self.deliver(request),
            HubEvent::NodeResult(result) => self.inner.invoker.complete((*result).clone()),
            _ => {}
        }
    }

    fn deliver(&self, request: Arc<NodeInvokeRequest>) {
        let refused = {
            let local = lock(&self.inner.local);
            match local.get(&request.conn_id) {
                // The edge holding the node has its pairing first-hand: a
                // command no longer allowed never reaches the socket.
                Some(node)
                    if node.record.tenant_id == request.tenant_id
                        && node.record.node_id == request.node_id
                        && !node.record.allowed_commands.contains(&request.command) =>
                {
                    Some(NodeInvokeResult {
                        id: request.id.clone(),
                        tenant_id: request.tenant_id.clone(),
                        node_id: request.node_id.clone(),
                        ok: false,
                        error_code: DISALLOWED.to_owned(),
                        error_message: format!("node command not allowed: {}", request.command),
                        ..Default::default()
                    })
                }
                Some(node)
                    if node.record.tenant_id == request.tenant_id
                        && node.record.node_id == request.node_id =>
                {
                    let timeout =
                        Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
                    lock(&self.inner.at_node).insert(
                        request.id.clone(),
                        AtNode {
                            conn_id: request.conn_id.clone(),
                            reply_topic: Topic::from_name(request.reply_topic.clone()),
                            tenant_id: request.tenant_id.clone(),
                            node_id: request.node_id.clone(),
                            deadline: Instant::now() + timeout,
                        },
                    );
                    let size = request.params_json.len() + CALL_OVERHEAD_BYTES;
                    // A full inbox closes the socket as a slow consumer; its
                    // calls, this one included, fail when it is removed.
                    let _ = node
                        .inbox
                        .push_or_overflow(HubEvent::NodeInvoke(request.clone()), size);
                    None
                }
                _ => Some(not_connected(&request, NOT_HERE)),
            }
        };
        if let Some(result) = refused {
            let topic = Topic::from_name(request.reply_topic.clone());
            self.send(topic, encoded(result));
        }
    }

    /// Queues an answer for publishing (never waits: when the queue is full
    /// it is published on its own task).
    fn send(&self, topic: Topic, payload: Bytes) {
        if let Err(err) = self.inner.answers.try_send((topic, payload)) {
            let (topic, payload) = match err {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            let bus = self.inner.bus.clone();
            tokio::spawn(async move {
                if let Err(err) = bus.publish(&topic, payload).await {
                    tracing::warn!(error = %err, "cannot pass a node's answer on");
                }
            });
        }
    }

    /// The answer a node socket sent for call `result.id`: passed on to the
    /// caller (queued, never waits). `false`: no such call is waiting for
    /// this socket (late, unknown, or another node's).
    pub fn answer(&self, conn_id: &str, result: NodeInvokeResult) -> bool {
        let call = {
            let mut at_node = lock(&self.inner.at_node);
            match at_node.get(&result.id) {
                Some(call) if call.conn_id == conn_id => at_node.remove(&result.id),
                _ => None,
            }
        };
        let Some(call) = call else {
            return false;
        };
        let result = NodeInvokeResult {
            tenant_id: call.tenant_id,
            node_id: call.node_id,
            not_connected: false,
            ..result
        };
        self.send(call.reply_topic, encoded(result));
        true
    }
}

/// Publishes queued answers, as many as are waiting in one pipelined round
/// trip (at most [`ANSWER_BATCH`]).
async fn publish_answers(bus: Arc<dyn EventBus>, mut queued: mpsc::Receiver<(Topic, Bytes)>) {
    let mut batch = Vec::with_capacity(ANSWER_BATCH);
    while queued.recv_many(&mut batch, ANSWER_BATCH).await > 0 {
        if let Err(err) = bus.publish_many(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %err, "cannot pass node answers on");
        }
    }
}
