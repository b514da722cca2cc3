//! A single-consumer queue bounded in bytes, used twice per socket: for events
//! handed over by the hub (bounded: a full inbox marks the socket a slow
//! consumer), and for the results of the socket's service calls (bounded by the
//! number of calls in flight instead).
//!
//! Invariants:
//! - producers never wait: a push either succeeds at once or reports that the
//!   queue is full, and the caller decides (drop the item or close the socket);
//! - the bytes held never exceed the bound by more than one item;
//! - items are taken only in the synchronous part of [`ByteQueue::pop_all`], so a
//!   dropped wait loses nothing;
//! - an empty queue holds no buffer (it is freed when drained).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The backlog is above the queue's limit.
    Full,
}

/// What the consumer gets from [`ByteQueue::pop_all`].
#[derive(Debug)]
pub enum Popped<T> {
    /// Everything queued, oldest first (never empty).
    Items(Vec<T>),
    /// A producer found the queue full and marked it failed.
    Overflowed,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    overflowed: bool,
}

pub struct ByteQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    limit: usize,
}

impl<T> std::fmt::Debug for ByteQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteQueue")
            .field("limit", &self.limit)
            .field("backlog", &self.backlog())
            .finish()
    }
}

impl<T> ByteQueue<T> {
    /// A queue bounded by `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                overflowed: false,
            }),
            notify: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Poisoning only means a panic elsewhere mid-push of plain data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes currently queued.
    pub fn backlog(&self) -> usize {
        self.lock().bytes
    }

    /// Queues `item` whatever the backlog (for producers bounded otherwise).
    pub fn push(&self, item: T, size: usize) {
        {
            let mut state = self.lock();
            state.bytes += size;
            state.items.push_back((item, size));
        }
        self.notify.notify_one();
    }

    /// Queues `item` if the backlog *including it* stays within the limit (or the
    /// queue is empty); otherwise marks the queue overflowed so the consumer stops.
    pub fn push_or_overflow(&self, item: T, size: usize) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if !state.items.is_empty() && state.bytes + size > self.limit {
                state.overflowed = true;
                drop(state);
                self.notify.notify_one();
                return Err(Refused::Full);
            }
            state.bytes += size;
            state.items.push_back((item, size));
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Takes everything queued without waiting; `None` when nothing is queued.
    pub fn try_pop_all(&self) -> Option<Popped<T>> {
        let mut state = self.lock();
        if state.overflowed {
            return Some(Popped::Overflowed);
        }
        if state.items.is_empty() {
            return None;
        }
        state.bytes = 0;
        let items = std::mem::take(&mut state.items);
        drop(state);
        Some(Popped::Items(
            items.into_iter().map(|(item, _)| item).collect(),
        ))
    }

    /// Waits until something is queued, then takes all of it. Cancel safe: items
    /// are only taken in the synchronous part after a wake-up. Single consumer.
    pub async fn pop_all(&self) -> Popped<T> {
        loop {
            if let Some(popped) = self.try_pop_all() {
                return popped;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_while_backlog_within_limit() {
        let queue = ByteQueue::new(10);
        assert!(queue.push_or_overflow("a", 8).is_ok());
        assert_eq!(queue.backlog(), 8);
        match queue.pop_all().await {
            Popped::Items(items) => assert_eq!(items, vec!["a"]),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(queue.backlog(), 0);
        assert!(
            queue.lock().items.capacity() == 0,
            "a drained queue keeps no buffer"
        );
    }

    #[tokio::test]
    async fn overflow_marks_the_queue() {
        let queue = ByteQueue::new(10);
        assert!(
            queue.push_or_overflow(1, 20).is_ok(),
            "an empty queue admits one"
        );
        assert_eq!(queue.push_or_overflow(2, 1), Err(Refused::Full));
        assert!(matches!(queue.pop_all().await, Popped::Overflowed));
    }

    #[tokio::test]
    async fn unbounded_pushes_are_always_admitted() {
        let queue = ByteQueue::new(1);
        queue.push(1, 5);
        queue.push(2, 5);
        match queue.pop_all().await {
            Popped::Items(items) => assert_eq!(items, vec![1, 2]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn wakes_a_waiting_consumer() {
        let queue = std::sync::Arc::new(ByteQueue::new(10));
        let consumer = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop_all().await })
        };
        tokio::task::yield_now().await;
        queue.push(7, 1);
        match consumer.await {
            Ok(Popped::Items(items)) => assert_eq!(items, vec![7]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
