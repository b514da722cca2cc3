//! A single-consumer queue bounded in bytes, used twice per socket: for run events
//! handed over by the hub, and for encoded frames waiting for the writer.
//!
//! Invariants:
//! - producers never wait: a push either succeeds at once or reports that the
//!   queue is full, and the caller decides (drop the item or close the socket);
//! - the bytes held never exceed the bound by more than one item (an item is
//!   admitted when the backlog before it is within the bound, as OpenClaw checks
//!   `bufferedAmount` before a send);
//! - once closed, nothing more is admitted and the consumer drains what is left.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The backlog is above the limit the caller asked for.
    Full,
    /// The queue was closed.
    Closed,
}

/// What the consumer gets from [`ByteQueue::pop_all`].
#[derive(Debug)]
pub enum Popped<T> {
    /// Everything queued, oldest first (never empty).
    Items(Vec<T>),
    /// A producer found the queue full and marked it failed.
    Overflowed,
    /// Closed and drained.
    Closed,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
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
    /// A queue whose default admission limit is `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
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

    /// The configured limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently queued.
    pub fn backlog(&self) -> usize {
        self.lock().bytes
    }

    /// Queues `item` if the backlog is at most `limit` bytes.
    pub fn push_within(&self, item: T, size: usize, limit: usize) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
            if state.bytes > limit {
                return Err(Refused::Full);
            }
            state.bytes += size;
            state.items.push_back((item, size));
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues `item` if the backlog is within the queue's own limit.
    #[cfg(test)]
    pub fn push(&self, item: T, size: usize) -> Result<(), Refused> {
        self.push_within(item, size, self.limit)
    }

    /// Queues `item` if the backlog *including it* stays within the limit (or the
    /// queue is empty); otherwise marks the queue overflowed so the consumer stops.
    pub fn push_or_overflow(&self, item: T, size: usize) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
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

    /// Drops everything queued, then queues `item` as the last one and closes the
    /// queue. Used for close frames, which must not wait behind a backlog.
    pub fn replace_and_close(&self, item: T, size: usize) {
        {
            let mut state = self.lock();
            state.items.clear();
            state.bytes = size;
            state.items.push_back((item, size));
            state.closed = true;
        }
        self.notify.notify_one();
    }

    /// Closes the queue; the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Takes everything queued without waiting; `None` when nothing is queued.
    pub fn try_pop_all(&self) -> Option<Popped<T>> {
        let mut state = self.lock();
        if state.overflowed {
            return Some(Popped::Overflowed);
        }
        if !state.items.is_empty() {
            state.bytes = 0;
            let items = state.items.drain(..).map(|(item, _)| item).collect();
            return Some(Popped::Items(items));
        }
        if state.closed {
            return Some(Popped::Closed);
        }
        None
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
        assert!(queue.push("a", 8).is_ok());
        assert!(
            queue.push("b", 8).is_ok(),
            "backlog 8 <= 10 before the push"
        );
        assert_eq!(queue.push("c", 1), Err(Refused::Full));
        assert_eq!(queue.backlog(), 16);
        match queue.pop_all().await {
            Popped::Items(items) => assert_eq!(items, vec!["a", "b"]),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(queue.backlog(), 0);
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
    async fn close_drains_then_reports_closed() {
        let queue = ByteQueue::new(10);
        queue.push(1, 1).ok();
        queue.replace_and_close(9, 1);
        assert_eq!(queue.push(2, 1), Err(Refused::Closed));
        match queue.pop_all().await {
            Popped::Items(items) => assert_eq!(items, vec![9]),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(queue.pop_all().await, Popped::Closed));
    }

    #[tokio::test]
    async fn wakes_a_waiting_consumer() {
        let queue = std::sync::Arc::new(ByteQueue::new(10));
        let consumer = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop_all().await })
        };
        tokio::task::yield_now().await;
        queue.push(7, 1).ok();
        match consumer.await {
            Ok(Popped::Items(items)) => assert_eq!(items, vec![7]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
