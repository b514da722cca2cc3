//! A periodic refresh tied to the life of what it refreshes: the tables of
//! live entries (presence, approvers, device sockets) that an edge re-writes
//! in a shared registry so they do not expire while they live.
//!
//! Invariants: the first refresh comes one period after the start; a late
//! tick is not made up for; the loop ends once its owner is dropped; the
//! owner is only borrowed while its snapshot is taken, never across the
//! refresh's await (so dropping the last handle is never held up).

use std::sync::{Arc, Weak};
use std::time::Duration;

/// Every `period` while `owner` lives: `snapshot` reads it (synchronously)
/// and the future it returns runs with the owner released.
pub fn while_alive<T, S, F>(owner: &Arc<T>, period: Duration, mut snapshot: S)
where
    T: Send + Sync + 'static,
    S: FnMut(&T) -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let owner: Weak<T> = Arc::downgrade(owner);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let refresh = {
                let Some(owner) = owner.upgrade() else {
                    return;
                };
                snapshot(&owner)
            };
            refresh.await;
        }
    });
}
