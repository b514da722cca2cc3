//! The fan-out hub: one bus subscriber per edge process, shared by all sockets.
//!
//! Owns the topic refcounts and the dispatcher task. Invariants:
//! - a socket registers on exactly one run-event topic ([`run_topic`]): its
//!   user's ([`Topic::user`]) when it sees only its own runs (operators,
//!   viewers), its tenant's run topic ([`Topic::tenant_runs`]) when it sees the
//!   whole tenant (admins, owners: [`Principal::sees_tenant`]); runners publish
//!   every run event on both, so each socket gets each event once, its own runs
//!   included; and on its tenant's topic ([`Topic::tenant`], pairing events and
//!   targeted disconnects, filtered per socket);
//!   the first socket of a topic subscribes it and [`Hub::register`] returns only
//!   after the bus confirmed every topic, so a socket that answered `hello-ok`
//!   misses no later message; a topic whose last socket left stays subscribed
//!   for the hub's linger time (a reconnecting client finds it subscribed) and
//!   is unsubscribed then unless a socket joined it again;
//! - each delivery is decoded once and the same [`HubEvent`] is offered to every
//!   local socket of its topic with a non-blocking push into that socket's inbox,
//!   which is bounded in bytes; a full inbox marks the socket overflowed (it then
//!   closes as a slow consumer) and never slows the dispatcher or other sockets;
//!   which socket a tenant-wide message is really for is decided by the socket;
//! - one dispatcher and FIFO inboxes keep per-run order;
//! - the process's own inbox topic ([`Hub::subscribe_inbox`], see
//!   [`crate::registry`]) carries messages targeted at sockets of this pod: a
//!   disconnect arriving there is offered to the local sockets of its tenant,
//!   exactly as if it had come on the tenant's topic; node calls and their
//!   results arriving there go to the pod's node handler
//!   ([`Hub::on_node_messages`], see [`crate::nodes`]), never to a topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    BusMessage, Disconnect, ExecApprovalEvent, NodeInvokeRequest, NodeInvokeResult,
    NodePairingEvent, PairingEvent, PresenceEvent, RunEvent, SessionChange, TranscriptNote,
    bus_message,
};
use clawgate_runtime::bus::{BusError, Delivery, EventBus, SubscriptionControl, Topic};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::queue::ByteQueue;

/// Bytes charged per queued event on top of its encoded size (the `Arc`, the
/// queue slot and the ids it will be rendered with).
const EVENT_OVERHEAD_BYTES: usize = 128;

/// One message of the bus, as a socket receives it.
#[derive(Clone, Debug)]
pub enum HubEvent {
    Run(Arc<RunEvent>),
    Pairing(Arc<PairingEvent>),
    Disconnect(Arc<Disconnect>),
    Presence(Arc<PresenceEvent>),
    Note(Arc<TranscriptNote>),
    Session(Arc<SessionChange>),
    Approval(Arc<ExecApprovalEvent>),
    /// A call for a node socket of this pod (from the pod's inbox, handed to
    /// the socket by [`crate::nodes`]).
    NodeInvoke(Arc<NodeInvokeRequest>),
    /// The answer to a node call this pod made (pod inbox only).
    NodeResult(Arc<NodeInvokeResult>),
    NodePairing(Arc<NodePairingEvent>),
}

impl HubEvent {
    fn decode(message: BusMessage) -> Option<(Self, usize)> {
        let size = message.encoded_len() + EVENT_OVERHEAD_BYTES;
        let event = match message.body? {
            bus_message::Body::RunEvent(event) => Self::Run(Arc::new(event)),
            bus_message::Body::PairingEvent(event) => Self::Pairing(Arc::new(event)),
            bus_message::Body::Disconnect(disconnect) => Self::Disconnect(Arc::new(disconnect)),
            bus_message::Body::PresenceEvent(event) => Self::Presence(Arc::new(event)),
            bus_message::Body::TranscriptNote(note) => Self::Note(Arc::new(note)),
            bus_message::Body::SessionChange(change) => Self::Session(Arc::new(change)),
            bus_message::Body::ExecApprovalEvent(event) => Self::Approval(Arc::new(event)),
            bus_message::Body::NodeInvokeRequest(request) => Self::NodeInvoke(Arc::new(request)),
            bus_message::Body::NodeInvokeResult(result) => Self::NodeResult(Arc::new(result)),
            bus_message::Body::NodePairingEvent(event) => Self::NodePairing(Arc::new(event)),
        };
        Some((event, size))
    }
}

/// A socket's inbound event queue.
pub type EventInbox = ByteQueue<HubEvent>;

/// The topic a socket of `principal` receives run events on: its tenant's run
/// topic when it sees the whole tenant, else its user's.
pub fn run_topic(principal: &Principal) -> Topic {
    if principal.sees_tenant() {
        Topic::tenant_runs(&principal.tenant_id)
    } else {
        Topic::user(&principal.tenant_id, &principal.user_id)
    }
}

/// Every topic a connected socket of `principal` registers on.
pub fn socket_topics(principal: &Principal) -> [Topic; 2] {
    [run_topic(principal), Topic::tenant(&principal.tenant_id)]
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct SubState {
    refs: usize,
    subscribed: bool,
    /// How often the topic lost its last socket: a lingering unsubscribe
    /// applies only if no socket came and went since it was scheduled.
    idle_epoch: u64,
    /// Removed from the topic map; a registrant holding it must look up again.
    retired: bool,
}

#[derive(Default)]
struct TopicState {
    sockets: Mutex<HashMap<u64, Arc<EventInbox>>>,
    subscription: tokio::sync::Mutex<SubState>,
}

struct HubInner {
    control: Arc<dyn SubscriptionControl>,
    topics: Mutex<HashMap<Topic, Arc<TopicState>>>,
    next_id: AtomicU64,
    inbox_bytes: usize,
    /// How long a topic without sockets stays subscribed.
    linger: Duration,
    /// This process's inbox topic, once subscribed.
    pod_inbox: OnceLock<Topic>,
    /// Takes the node calls and results arriving on the pod inbox.
    node_handler: OnceLock<NodeHandler>,
}

/// What the hub hands node calls and results of the pod inbox to.
pub type NodeHandler = Arc<dyn Fn(HubEvent) + Send + Sync>;

/// Handle on the process's hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("topics", &self.topic_count())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Opens the subscriber and starts the dispatcher. The dispatcher stops once
    /// every handle on the hub is dropped. A topic whose last socket left is
    /// unsubscribed after `linger` (at once for zero).
    pub async fn start(
        bus: &dyn EventBus,
        capacity: usize,
        inbox_bytes: usize,
        linger: Duration,
    ) -> Result<Self, BusError> {
        let subscriber = bus.subscriber(capacity).await?;
        let inner = Arc::new(HubInner {
            control: subscriber.control,
            topics: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            inbox_bytes,
            linger,
            pod_inbox: OnceLock::new(),
            node_handler: OnceLock::new(),
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), subscriber.deliveries));
        Ok(Self { inner })
    }

    /// Adds a socket to every topic of `topics` (one inbox for all), subscribing
    /// each topic first if this is its first socket. Returns once every
    /// subscription is confirmed; on failure the socket is on no topic.
    pub async fn register(&self, topics: &[Topic]) -> Result<Registration, BusError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(EventInbox::new(self.inner.inbox_bytes));
        let mut registration = Registration {
            hub: self.inner.clone(),
            topics: Vec::with_capacity(topics.len()),
            id,
            inbox,
            released: false,
        };
        let mut distinct: Vec<&Topic> = Vec::with_capacity(topics.len());
        for topic in topics {
            if !distinct.contains(&topic) {
                distinct.push(topic);
            }
        }
        // Every topic is joined at once: a socket's subscriptions cost one
        // bus round trip, not one per topic.
        let joined =
            futures_util::future::join_all(distinct.iter().map(|t| self.inner.join(t))).await;
        let mut failed = None;
        for (topic, joined) in distinct.into_iter().zip(joined) {
            match joined {
                Ok(state) => {
                    lock(&state.sockets).insert(id, registration.inbox.clone());
                    registration.topics.push((topic.clone(), state));
                }
                // The topics joined are released with the registration.
                Err(err) => failed = Some(err),
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(registration),
        }
    }

    /// Subscribes this process's inbox topic (once; returns once confirmed).
    pub async fn subscribe_inbox(&self, topic: Topic) -> Result<(), BusError> {
        self.inner.control.subscribe(&topic).await?;
        let _ = self.inner.pod_inbox.set(topic);
        Ok(())
    }

    /// Sets what node calls and results arriving on the pod inbox go to
    /// (once; later calls are ignored).
    pub fn on_node_messages(&self, handler: NodeHandler) {
        let _ = self.inner.node_handler.set(handler);
    }

    /// Topics currently subscribed by this process.
    pub fn topic_count(&self) -> usize {
        lock(&self.inner.topics).len()
    }

    /// Local sockets registered on `topic`.
    pub fn sockets_on(&self, topic: &Topic) -> usize {
        lock(&self.inner.topics)
            .get(topic)
            .map(|state| lock(&state.sockets).len())
            .unwrap_or(0)
    }
}

impl HubInner {
    /// Takes one reference on `topic`, subscribing it if it had none.
    async fn join(&self, topic: &Topic) -> Result<Arc<TopicState>, BusError> {
        loop {
            let state = lock(&self.topics).entry(topic.clone()).or_default().clone();
            let mut sub = state.subscription.lock().await;
            if sub.retired {
                continue;
            }
            if !sub.subscribed {
                if let Err(err) = self.control.subscribe(topic).await {
                    if sub.refs == 0 {
                        sub.retired = true;
                        self.forget(topic, &state);
                    }
                    return Err(err);
                }
                sub.subscribed = true;
            }
            sub.refs += 1;
            drop(sub);
            return Ok(state);
        }
    }

    /// Removes `topic` from the map if it still maps to `state`.
    fn forget(&self, topic: &Topic, state: &Arc<TopicState>) {
        let mut topics = lock(&self.topics);
        if topics
            .get(topic)
            .is_some_and(|current| Arc::ptr_eq(current, state))
        {
            topics.remove(topic);
        }
    }

    /// Gives back one reference on `topic`; the last one unsubscribes it, at
    /// once or after the linger time.
    async fn release(self: &Arc<Self>, topic: &Topic, state: &Arc<TopicState>) {
        let mut sub = state.subscription.lock().await;
        sub.refs = sub.refs.saturating_sub(1);
        if sub.refs > 0 {
            return;
        }
        if self.linger.is_zero() || !sub.subscribed {
            self.retire(topic, state, &mut sub).await;
            return;
        }
        sub.idle_epoch += 1;
        let epoch = sub.idle_epoch;
        drop(sub);
        let hub = Arc::downgrade(self);
        let (topic, state) = (topic.clone(), state.clone());
        let linger = self.linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            // A hub that is gone has no subscriptions left to end.
            let Some(hub) = hub.upgrade() else { return };
            let mut sub = state.subscription.lock().await;
            if sub.refs == 0 && sub.idle_epoch == epoch && !sub.retired {
                hub.retire(&topic, &state, &mut sub).await;
            }
        });
    }

    /// Unsubscribes `topic` (which has no sockets) and removes it from the map.
    async fn retire(&self, topic: &Topic, state: &Arc<TopicState>, sub: &mut SubState) {
        if sub.subscribed {
            if let Err(err) = self.control.unsubscribe(topic).await {
                tracing::warn!(topic = %topic, error = %err, "unsubscribe failed");
            }
            sub.subscribed = false;
        }
        sub.retired = true;
        self.forget(topic, state);
    }
}

/// One socket's place in the hub. Release it with [`Registration::release`]; a
/// dropped registration releases itself in the background.
pub struct Registration {
    hub: Arc<HubInner>,
    topics: Vec<(Topic, Arc<TopicState>)>,
    id: u64,
    pub inbox: Arc<EventInbox>,
    released: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&Topic> = self.topics.iter().map(|(t, _)| t).collect();
        f.debug_struct("Registration")
            .field("topics", &topics)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Leaves every topic; the last socket of a topic unsubscribes it.
    pub async fn release(mut self) {
        self.released = true;
        for (topic, state) in std::mem::take(&mut self.topics) {
            lock(&state.sockets).remove(&self.id);
            self.hub.release(&topic, &state).await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.released || self.topics.is_empty() {
            return;
        }
        let topics = std::mem::take(&mut self.topics);
        for (_, state) in &topics {
            lock(&state.sockets).remove(&self.id);
        }
        let hub = self.hub.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (topic, state) in topics {
                    hub.release(&topic, &state).await;
                }
            });
        }
    }
}

async fn dispatch(hub: Weak<HubInner>, mut deliveries: mpsc::Receiver<Delivery>) {
    while let Some(delivery) = deliveries.recv().await {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let (event, size) = match BusMessage::decode(delivery.payload) {
            Ok(message) => match HubEvent::decode(message) {
                Some(decoded) => decoded,
                None => continue,
            },
            Err(err) => {
                tracing::warn!(topic = %delivery.topic, error = %err, "undecodable bus message");
                continue;
            }
        };
        let topic = match hub.pod_inbox.get() {
            Some(inbox) if *inbox == delivery.topic => match &event {
                HubEvent::Disconnect(disconnect) => Topic::tenant(&disconnect.tenant_id),
                HubEvent::NodeInvoke(_) | HubEvent::NodeResult(_) => {
                    if let Some(handler) = hub.node_handler.get() {
                        handler(event);
                    }
                    continue;
                }
                _ => continue,
            },
            _ => delivery.topic,
        };
        let Some(state) = lock(&hub.topics).get(&topic).cloned() else {
            continue;
        };
        let sockets = lock(&state.sockets);
        for inbox in sockets.values() {
            if inbox.push_or_overflow(event.clone(), size).is_err() {
                tracing::debug!(topic = %topic, "socket inbox full");
            }
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
