//! The fan-out hub: one bus subscriber per edge process, shared by all sockets.
//!
//! Owns the topic refcounts and the dispatcher task. Invariants:
//! - the first socket of a (tenant, user) subscribes [`Topic::user`] and
//!   [`Hub::register`] returns only after the bus confirmed, so a socket that
//!   answered `hello-ok` misses no later event; the last socket to leave
//!   unsubscribes;
//! - each delivery is decoded once and the same `Arc<RunEvent>` is offered to every
//!   local socket of its topic with a non-blocking push into that socket's inbox,
//!   which is bounded in bytes; a full inbox marks the socket overflowed (it then
//!   closes as a slow consumer) and never slows the dispatcher or other sockets;
//! - one dispatcher and FIFO inboxes keep per-run order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use clawgate_proto::pb::common::v1::{BusMessage, RunEvent, bus_message};
use clawgate_runtime::bus::{BusError, Delivery, EventBus, SubscriptionControl, Topic};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::queue::ByteQueue;

/// Bytes charged per queued event on top of its encoded size (the `Arc`, the
/// queue slot and the ids it will be rendered with).
const EVENT_OVERHEAD_BYTES: usize = 128;

/// A socket's inbound event queue.
pub type EventInbox = ByteQueue<Arc<RunEvent>>;

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
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), subscriber.deliveries));
        Ok(Self { inner })
    }

    /// Adds a socket to `topic`, subscribing the topic first if this is its first
    /// socket. Returns once the subscription is confirmed.
    pub async fn register(&self, topic: Topic) -> Result<Registration, BusError> {
        loop {
            let state = lock(&self.inner.topics)
                .entry(topic.clone())
                .or_default()
                .clone();
            let mut sub = state.subscription.lock().await;
            if sub.retired {
                continue;
            }
            if !sub.subscribed {
                if let Err(err) = self.inner.control.subscribe(&topic).await {
                    if sub.refs == 0 {
                        sub.retired = true;
                        self.inner.forget(&topic, &state);
                    }
                    return Err(err);
                }
                sub.subscribed = true;
            }
            sub.refs += 1;
            drop(sub);
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let inbox = Arc::new(EventInbox::new(self.inner.inbox_bytes));
            lock(&state.sockets).insert(id, inbox.clone());
            return Ok(Registration {
                hub: self.inner.clone(),
                topic,
                state,
                id,
                inbox,
                released: false,
            });
        }
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
    topic: Topic,
    state: Arc<TopicState>,
    id: u64,
    pub inbox: Arc<EventInbox>,
    released: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("topic", &self.topic)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Leaves the topic; the last socket of a topic unsubscribes it.
    pub async fn release(mut self) {
        self.released = true;
        lock(&self.state.sockets).remove(&self.id);
        self.hub.release(&self.topic, &self.state).await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        lock(&self.state.sockets).remove(&self.id);
        let (hub, topic, state) = (self.hub.clone(), self.topic.clone(), self.state.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { hub.release(&topic, &state).await });
        }
    }
}

async fn dispatch(hub: Weak<HubInner>, mut deliveries: mpsc::Receiver<Delivery>) {
    while let Some(delivery) = deliveries.recv().await {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let event = match BusMessage::decode(delivery.payload) {
            Ok(BusMessage {
                body: Some(bus_message::Body::RunEvent(event)),
            }) => event,
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(topic = %delivery.topic, error = %err, "undecodable bus message");
                continue;
            }
        };
        let size = event.encoded_len() + EVENT_OVERHEAD_BYTES;
        let event = Arc::new(event);
        let Some(state) = lock(&hub.topics).get(&delivery.topic).cloned() else {
            continue;
        };
        let sockets = lock(&state.sockets);
        for inbox in sockets.values() {
            if inbox.push_or_overflow(event.clone(), size).is_err() {
                tracing::debug!(topic = %delivery.topic, "socket inbox full");
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
            Ok(Popped::Items(items)) => items.iter().map(|e| e.seq).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn fans_out_and_refcounts_topics() {
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 1 << 20).await.expect("hub");
        let topic = Topic::user("t", "u");
        let a = hub.register(topic.clone()).await.expect("a");
        let b = hub.register(topic.clone()).await.expect("b");
        assert_eq!(hub.sockets_on(&topic), 2);
        publish(&bus, &topic, event(1)).await;
        assert_eq!(next(&a.inbox).await, vec![1]);
        assert_eq!(next(&b.inbox).await, vec![1]);
        a.release().await;
        assert_eq!(hub.topic_count(), 1);
        b.release().await;
        assert_eq!(hub.topic_count(), 0);
        // Re-registering subscribes again.
        let c = hub.register(topic.clone()).await.expect("c");
        publish(&bus, &topic, event(2)).await;
        assert_eq!(next(&c.inbox).await, vec![2]);
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(hub.topic_count(), 0);
    }

    #[tokio::test]
    async fn a_full_inbox_overflows_without_blocking_others() {
        let bus = MemoryBus::new();
        let hub = Hub::start(&bus, 16, 300).await.expect("hub");
        let topic = Topic::user("t", "u");
        let slow = hub.register(topic.clone()).await.expect("slow");
        let fast = hub.register(topic.clone()).await.expect("fast");
        for seq in 1..=10 {
            publish(&bus, &topic, event(seq)).await;
            assert_eq!(next(&fast.inbox).await, vec![seq]);
        }
        assert!(matches!(slow.inbox.pop_all().await, Popped::Overflowed));
    }
}
