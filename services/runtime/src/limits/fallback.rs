//! A socket budget that fails open to a local one: the shared (Redis) budget is asked
//! first; while it is unavailable, the budget is enforced per process instead.
//!
//! Invariant: `acquire` never returns an error and never waits longer than the
//! shared budget's command timeout. One warning is logged when the shared budget
//! becomes unavailable and one notice when it answers again, not one per socket.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{BudgetPermit, LimitError, SocketBudget};

/// See the module doc. Build it from the Redis budget and a
/// [`super::memory::MemorySocketBudget`] with the same settings.
pub struct FailOpenSocketBudget {
    shared: Arc<dyn SocketBudget>,
    local: Arc<dyn SocketBudget>,
    degraded: AtomicBool,
}

impl FailOpenSocketBudget {
    pub fn new(shared: Arc<dyn SocketBudget>, local: Arc<dyn SocketBudget>) -> Self {
        Self {
            shared,
            local,
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether the last `acquire` fell back to the local budget.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SocketBudget for FailOpenSocketBudget {
    async fn acquire(&self, ip: IpAddr) -> Result<Option<BudgetPermit>, LimitError> {
        match self.shared.acquire(ip).await {
            Ok(permit) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("shared pre-auth socket budget available again");
                }
                Ok(permit)
            }
            Err(err) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %err,
                        "shared pre-auth socket budget unavailable; enforcing it per process"
                    );
                }
                self.local.acquire(ip).await
            }
        }
    }
}
