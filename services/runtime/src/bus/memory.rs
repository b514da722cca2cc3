//! In-process event bus for the embedded (single-process) mode.
//!
//! Each subscriber has a bounded queue; `publish` waits for room, so a stalled
//! subscriber slows publishers instead of growing memory. Subscribers must drain
//! their queue promptly (the edge hub never blocks on a socket).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{BusError, Delivery, EventBus, Subscriber, SubscriptionControl, Topic};

#[derive(Default)]
struct Routes {
    next_id: u64,
    /// topic → subscriber ids
    topics: HashMap<Topic, HashSet<u64>>,
    /// subscriber id → queue
    queues: HashMap<u64, mpsc::Sender<Delivery>>,
}

/// The in-process bus. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryBus {
    routes: Arc<Mutex<Routes>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A poisoned lock only means another thread panicked mid-update of plain maps.
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queues_for(&self, topic: &Topic) -> Vec<mpsc::Sender<Delivery>> {
        let routes = self.lock();
        routes
            .topics
            .get(topic)
            .into_iter()
            .flatten()
            .filter_map(|id| routes.queues.get(id).cloned())
            .collect()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        for queue in self.queues_for(topic) {
            let delivery = Delivery {
                topic: topic.clone(),
                payload: payload.clone(),
            };
            // A closed queue means its subscriber is gone; it is pruned on drop.
            let _ = queue.send(delivery).await;
        }
        Ok(())
    }

    async fn listeners(&self, topic: &Topic) -> Result<usize, BusError> {
        Ok(self.lock().topics.get(topic).map_or(0, HashSet::len))
    }

    async fn subscriber(&self, capacity: usize) -> Result<Subscriber, BusError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = {
            let mut routes = self.lock();
            routes.next_id += 1;
            let id = routes.next_id;
            routes.queues.insert(id, tx);
            id
        };
        let control = MemoryControl {
            bus: self.clone(),
            id,
        };
        Ok(Subscriber {
            control: Arc::new(control),
            deliveries: rx,
        })
    }
}

struct MemoryControl {
    bus: MemoryBus,
    id: u64,
}

#[async_trait]
impl SubscriptionControl for MemoryControl {
    async fn subscribe(&self, topic: &Topic) -> Result<(), BusError> {
        let mut routes = self.bus.lock();
        if !routes.queues.contains_key(&self.id) {
            return Err(BusError::Closed);
        }
        routes
            .topics
            .entry(topic.clone())
            .or_default()
            .insert(self.id);
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BusError> {
        let mut routes = self.bus.lock();
        if let Some(ids) = routes.topics.get_mut(topic) {
            ids.remove(&self.id);
            if ids.is_empty() {
                routes.topics.remove(topic);
            }
        }
        Ok(())
    }
}

impl Drop for MemoryControl {
    fn drop(&mut self) {
        let mut routes = self.bus.lock();
        routes.queues.remove(&self.id);
        routes.topics.retain(|_, ids| {
            ids.remove(&self.id);
            !ids.is_empty()
        });
    }
}
