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
//!   misses no later message; the last socket to leave a topic unsubscribes it;
//! - each delivery is decoded once and the same [`HubEvent`] is offered to every
//!   local socket of its topic with a non-blocking push into that socket's inbox,
//!   which is bounded in bytes; a full inbox marks the socket overflowed (it then
//!   closes as a slow consumer) and never slows the dispatcher or other sockets;
//!   which socket a tenant-wide message is really for is decided by the socket;
//! - one dispatcher and FIFO inboxes keep per-run order;
//! - the process's own inbox topic ([`Hub::subscribe_inbox`], see
//!   [`crate::registry`]) carries messages targeted at sockets of this pod: a
//!   disconnect arriving there is offered to the local sockets of its tenant,
//!   exactly as if it had come on the tenant's topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    BusMessage, Disconnect, PairingEvent, PresenceEvent, RunEvent, SessionChange, TranscriptNote,
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
    /// This process's inbox topic, once subscribed.
    pod_inbox: OnceLock<Topic>,
}

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
    /// every handle on the hub is dropped.
    pub async fn start(
        bus: &dyn EventBus,
        capacity: usize,
        inbox_bytes: usize,
    ) -> Result<Self, BusError> {
        let subscriber = bus.subscriber(capacity).await?;
        let inner = Arc::new(HubInner {
            control: subscriber.control,
            topics: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            inbox_bytes,
            pod_inbox: OnceLock::new(),
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

    async fn release(&self, topic: &Topic, state: &Arc<TopicState>) {
        let mut sub = state.subscription.lock().await;
        sub.refs = sub.refs.saturating_sub(1);
        if sub.refs > 0 {
            return;
        }
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
mod tests {
    use super::*;
    use crate::queue::Popped;
    use clawgate_proto::pb::common::v1::{AssistantDelta, run_event};
    use clawgate_runtime::bus::memory::MemoryBus;

    fn event(seq: u64) -> RunEvent {
        RunEvent {
            tenant_id: "t".into(),
            user_id: "u".into(),
            run_id: "r".into(),
            seq,
            kind: Some(run_event::Kind::Assistant(AssistantDelta {
                delta: "x".into(),
                offset: seq - 1,
            })),
            ..Default::default()
        }
    }

    async fn publish(bus: &MemoryBus, topic: &Topic, event: RunEvent) {
        let message = BusMessage {
            body: Some(bus_message::Body::RunEvent(event)),
        };
        bus.publish(topic, message.encode_to_vec().into())
            .await
            .expect("publish");
    }

    async fn next(inbox: &EventInbox) -> Vec<u64> {
        match tokio::time::timeout(std::time::Duration::from_secs(2), inbox.pop_all()).await {
            Ok(Popped::Items(items)) => items
                .iter()
                .map(|e| match e {
                    HubEvent::Run(run) => run.seq,
                    other => panic!("unexpected {other:?}"),
                })
                .collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn fans_out_and_refcounts_topics() {
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 1 << 20).await.expect("hub");
        let topic = Topic::user("t", "u");
        let a = hub.register(std::slice::from_ref(&topic)).await.expect("a");
        let b = hub.register(std::slice::from_ref(&topic)).await.expect("b");
        assert_eq!(hub.sockets_on(&topic), 2);
        publish(&bus, &topic, event(1)).await;
        assert_eq!(next(&a.inbox).await, vec![1]);
        assert_eq!(next(&b.inbox).await, vec![1]);
        a.release().await;
        assert_eq!(hub.topic_count(), 1);
        b.release().await;
        assert_eq!(hub.topic_count(), 0);
        // Re-registering subscribes again.
        let c = hub.register(std::slice::from_ref(&topic)).await.expect("c");
        publish(&bus, &topic, event(2)).await;
        assert_eq!(next(&c.inbox).await, vec![2]);
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(hub.topic_count(), 0);
    }

    #[tokio::test]
    async fn one_inbox_for_the_user_and_the_tenant_topics() {
        use clawgate_proto::pb::common::v1::Disconnect;
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 1 << 20).await.expect("hub");
        let topics = [Topic::user("t", "u"), Topic::tenant("t")];
        let a = hub.register(&topics).await.expect("a");
        let b = hub.register(&topics[1..]).await.expect("b");
        assert_eq!(hub.topic_count(), 2);
        assert_eq!(hub.sockets_on(&topics[1]), 2);
        let message = BusMessage {
            body: Some(bus_message::Body::Disconnect(Disconnect {
                tenant_id: "t".into(),
                device_id: "d".into(),
                ..Default::default()
            })),
        };
        bus.publish(&topics[1], message.encode_to_vec().into())
            .await
            .expect("publish");
        for inbox in [&a.inbox, &b.inbox] {
            match tokio::time::timeout(std::time::Duration::from_secs(2), inbox.pop_all()).await {
                Ok(Popped::Items(items)) => {
                    assert!(matches!(&items[..], [HubEvent::Disconnect(d)] if d.device_id == "d"));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        publish(&bus, &topics[0], event(1)).await;
        assert_eq!(next(&a.inbox).await, vec![1]);
        a.release().await;
        assert_eq!(hub.topic_count(), 1);
        b.release().await;
        assert_eq!(hub.topic_count(), 0);
        let none = hub.register(&[]).await.expect("no topics");
        assert_eq!(hub.topic_count(), 0);
        drop(none);
    }

    #[tokio::test]
    async fn a_disconnect_on_the_pod_inbox_reaches_the_tenant_sockets() {
        use clawgate_proto::pb::common::v1::Disconnect;
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 1 << 20).await.expect("hub");
        let inbox = Topic::from_name("edge.pod-1");
        hub.subscribe_inbox(inbox.clone()).await.expect("inbox");
        let socket = hub.register(&[Topic::tenant("t")]).await.expect("socket");
        let message = BusMessage {
            body: Some(bus_message::Body::Disconnect(Disconnect {
                tenant_id: "t".into(),
                device_id: "d".into(),
                ..Default::default()
            })),
        };
        bus.publish(&inbox, message.encode_to_vec().into())
            .await
            .expect("publish");
        match tokio::time::timeout(std::time::Duration::from_secs(2), socket.inbox.pop_all()).await
        {
            Ok(Popped::Items(items)) => {
                assert!(matches!(&items[..], [HubEvent::Disconnect(d)] if d.device_id == "d"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn admins_take_the_tenant_run_topic_operators_their_own() {
        let mut principal = Principal {
            tenant_id: "t".into(),
            user_id: "u".into(),
            role: "operator".into(),
            ..Default::default()
        };
        assert_eq!(
            socket_topics(&principal),
            [Topic::user("t", "u"), Topic::tenant("t")]
        );
        principal.scopes = vec!["operator.admin".into()];
        assert_eq!(run_topic(&principal), Topic::tenant_runs("t"));
        principal.scopes.clear();
        for role in ["admin", "owner"] {
            principal.role = role.into();
            assert_eq!(run_topic(&principal), Topic::tenant_runs("t"));
        }
        principal.role = "viewer".into();
        assert_eq!(run_topic(&principal), Topic::user("t", "u"));
    }

    #[tokio::test]
    async fn an_event_on_both_run_topics_reaches_each_socket_once() {
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 1 << 20).await.expect("hub");
        let (user, tenant) = (Topic::user("t", "u"), Topic::tenant_runs("t"));
        let operator = hub
            .register(std::slice::from_ref(&user))
            .await
            .expect("operator");
        let admin = hub
            .register(std::slice::from_ref(&tenant))
            .await
            .expect("admin");
        let message = BusMessage {
            body: Some(bus_message::Body::RunEvent(event(1))),
        };
        let payload: bytes::Bytes = message.encode_to_vec().into();
        bus.publish_many(vec![(user, payload.clone()), (tenant, payload)])
            .await
            .expect("publish");
        assert_eq!(next(&operator.inbox).await, vec![1]);
        assert_eq!(next(&admin.inbox).await, vec![1]);
        publish(&bus, &Topic::user("t", "u"), event(2)).await;
        assert_eq!(next(&operator.inbox).await, vec![2]);
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(50), admin.inbox.pop_all()).await;
        assert!(
            nothing.is_err(),
            "the admin got an event twice or one not for it"
        );
    }

    #[tokio::test]
    async fn a_full_inbox_overflows_without_blocking_others() {
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 300).await.expect("hub");
        let topic = Topic::user("t", "u");
        let slow = hub
            .register(std::slice::from_ref(&topic))
            .await
            .expect("slow");
        let fast = hub
            .register(std::slice::from_ref(&topic))
            .await
            .expect("fast");
        for seq in 1..=10 {
            publish(&bus, &topic, event(seq)).await;
            assert_eq!(next(&fast.inbox).await, vec![seq]);
        }
        assert!(matches!(slow.inbox.pop_all().await, Popped::Overflowed));
    }
}
