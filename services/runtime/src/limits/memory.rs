//! In-process rate limits, for the embedded mode where one process runs the edge and
//! the auth service.
//!
//! Invariants:
//! - the lockout map holds at most `max_tracked_keys` keys, each with at most
//!   `max_failures` timestamps; stale keys (no failure within the window, no active
//!   lockout) are swept at least once per window, and when the map is full a batch of
//!   the least valuable keys is evicted (unlocked keys with the oldest failures first,
//!   locked keys only when every key is locked), so an insert costs amortized O(1);
//! - the budget map holds at most `max_tracked_ips` IPs, each with at most
//!   `max_per_ip` slots; an IP leaves the map with its last slot;
//! - a slot also expires after `permit_ttl`, like in Redis, so a leaked permit
//!   (`mem::forget`) cannot shrink a budget for good;
//! - no call awaits anything: the locks are held only for map updates.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    AuthLimitConfig, AuthLimiter, AuthScope, BudgetPermit, LimitDecision, LimitError, LimitKey,
    SlotRelease, SocketBudget, SocketBudgetConfig, canonical_ip, millis,
};

/// Locks a mutex, recovering from poisoning: the maps stay consistent after a
/// panic in another holder because every update is a single map operation.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Failed-auth lockout
// ---------------------------------------------------------------------------

/// The in-process [`AuthLimiter`].
pub struct MemoryAuthLimiter {
    config: AuthLimitConfig,
    state: Mutex<AuthState>,
}

struct AuthState {
    entries: HashMap<(IpAddr, AuthScope), AuthEntry>,
    last_sweep: Instant,
}

#[derive(Default)]
struct AuthEntry {
    /// Failures inside the window, oldest first; fewer than `max_failures`.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl AuthEntry {
    fn locked_for(&self, now: Instant) -> Option<u64> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| millis(until - now))
    }

    fn forget_failures_before(&mut self, cutoff: Option<Instant>) {
        while let Some(oldest) = self.failures.front() {
            if cutoff.is_some_and(|cutoff| *oldest > cutoff) {
                break;
            }
            self.failures.pop_front();
        }
    }

    /// Neither locked nor holding a failure inside the window.
    fn is_stale(&self, now: Instant, cutoff: Option<Instant>) -> bool {
        self.locked_for(now).is_none()
            && self
                .failures
                .back()
                .is_none_or(|newest| cutoff.is_none_or(|cutoff| *newest <= cutoff))
    }

    /// Eviction order: unlocked keys by their newest failure, then locked keys by the
    /// end of their lockout.
    fn eviction_rank(&self, now: Instant) -> (bool, Instant) {
        match self.locked_until.filter(|until| *until > now) {
            Some(until) => (true, until),
            None => (false, self.failures.back().copied().unwrap_or(now)),
        }
    }
}

impl MemoryAuthLimiter {
    pub fn new(config: AuthLimitConfig) -> Self {
        Self {
            config: config.normalized(),
            state: Mutex::new(AuthState {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// How many (IP, scope) keys are tracked now (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// The instant before which failures no longer count; `None` when the window
    /// reaches back before the clock's origin.
    fn cutoff(&self, now: Instant) -> Option<Instant> {
        now.checked_sub(self.config.window)
    }

    fn sweep(&self, state: &mut AuthState, now: Instant) {
        let cutoff = self.cutoff(now);
        state
            .entries
            .retain(|_, entry| !entry.is_stale(now, cutoff));
        state.last_sweep = now;
    }

    /// Makes room for one new key.
    fn make_room(&self, state: &mut AuthState, now: Instant) {
        let cap = self.config.max_tracked_keys;
        if state.entries.len() < cap {
            return;
        }
        self.sweep(state, now);
        if state.entries.len() < cap {
            return;
        }
        let batch = (cap / 8).max(1);
        let mut ranked: Vec<((bool, Instant), (IpAddr, AuthScope))> = state
            .entries
            .iter()
            .map(|(key, entry)| (entry.eviction_rank(now), *key))
            .collect();
        if batch < ranked.len() {
            ranked.select_nth_unstable_by_key(batch, |(rank, _)| *rank);
            ranked.truncate(batch);
        }
        for (_, key) in ranked {
            state.entries.remove(&key);
        }
        tracing::warn!(
            evicted = batch,
            cap,
            "failed-auth limiter is tracking its maximum of keys; evicted the oldest"
        );
    }
}

#[async_trait]
impl AuthLimiter for MemoryAuthLimiter {
    async fn check(&self, key: &LimitKey) -> Result<LimitDecision, LimitError> {
        if self.config.is_exempt(key.ip()) {
            return Ok(LimitDecision::Allowed);
        }
        let now = Instant::now();
        let state = lock(&self.state);
        let locked = state
            .entries
            .get(&(key.ip(), key.scope()))
            .and_then(|entry| entry.locked_for(now));
        Ok(match locked {
            Some(retry_after_ms) => LimitDecision::Locked { retry_after_ms },
            None => LimitDecision::Allowed,
        })
    }

    async fn record_failure(&self, key: &LimitKey) -> Result<LimitDecision, LimitError> {
        if self.config.is_exempt(key.ip()) {
            return Ok(LimitDecision::Allowed);
        }
        let now = Instant::now();
        let cutoff = self.cutoff(now);
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if now.duration_since(state.last_sweep) >= self.config.window {
            self.sweep(state, now);
        }
        let map_key = (key.ip(), key.scope());
        if !state.entries.contains_key(&map_key) {
            self.make_room(state, now);
        }
        let entry = state.entries.entry(map_key).or_default();
        if let Some(retry_after_ms) = entry.locked_for(now) {
            return Ok(LimitDecision::Locked { retry_after_ms });
        }
        entry.locked_until = None;
        entry.forget_failures_before(cutoff);
        entry.failures.push_back(now);
        if entry.failures.len() < self.config.max_failures as usize {
            return Ok(LimitDecision::Allowed);
        }
        entry.failures.clear();
        entry.locked_until = Some(now + self.config.lockout);
        tracing::info!(
            ip = %key.ip(),
            scope = %key.scope(),
            "too many failed authentication attempts; locked out"
        );
        Ok(LimitDecision::Locked {
            retry_after_ms: millis(self.config.lockout),
        })
    }
}

// ---------------------------------------------------------------------------
// Pre-auth socket budget
// ---------------------------------------------------------------------------

/// The in-process [`SocketBudget`].
pub struct MemorySocketBudget {
    config: SocketBudgetConfig,
    state: Arc<Mutex<BudgetState>>,
}

#[derive(Default)]
struct BudgetState {
    /// IP → (slot id, expiry) of every slot held; no IP maps to an empty list.
    slots: HashMap<IpAddr, Vec<(u64, Instant)>>,
    next_id: u64,
}

impl BudgetState {
    fn drop_expired(&mut self, ip: IpAddr, now: Instant) {
        if let Some(slots) = self.slots.get_mut(&ip) {
            slots.retain(|(_, expiry)| *expiry > now);
            if slots.is_empty() {
                self.slots.remove(&ip);
            }
        }
    }

    fn release(&mut self, ip: IpAddr, id: u64) {
        if let Some(slots) = self.slots.get_mut(&ip) {
            slots.retain(|(slot_id, _)| *slot_id != id);
            if slots.is_empty() {
                self.slots.remove(&ip);
            }
        }
    }
}

impl MemorySocketBudget {
    pub fn new(config: SocketBudgetConfig) -> Self {
        Self {
            config: config.normalized(),
            state: Arc::new(Mutex::new(BudgetState::default())),
        }
    }

    /// How many client IPs hold at least one slot now (for tests and metrics).
    pub fn tracked_ips(&self) -> usize {
        lock(&self.state).slots.len()
    }
}

#[async_trait]
impl SocketBudget for MemorySocketBudget {
    async fn acquire(&self, ip: IpAddr) -> Result<Option<BudgetPermit>, LimitError> {
        let ip = canonical_ip(ip);
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.drop_expired(ip, now);
        if !state.slots.contains_key(&ip) && state.slots.len() >= self.config.max_tracked_ips {
            state.slots.retain(|_, slots| {
                slots.retain(|(_, expiry)| *expiry > now);
                !slots.is_empty()
            });
            if state.slots.len() >= self.config.max_tracked_ips {
                tracing::warn!(
                    cap = self.config.max_tracked_ips,
                    "pre-auth socket budget is tracking its maximum of client IPs; refusing"
                );
                return Ok(None);
            }
        }
        let held = state.slots.get(&ip).map_or(0, Vec::len);
        if held >= self.config.max_per_ip as usize {
            return Ok(None);
        }
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        state
            .slots
            .entry(ip)
            .or_default()
            .push((id, now + self.config.permit_ttl));
        let slot = MemorySlot {
            state: self.state.clone(),
            ip,
            id,
        };
        Ok(Some(BudgetPermit::new(ip, Box::new(slot))))
    }
}

struct MemorySlot {
    state: Arc<Mutex<BudgetState>>,
    ip: IpAddr,
    id: u64,
}

#[async_trait]
impl SlotRelease for MemorySlot {
    async fn release(self: Box<Self>) {
        self.release_in_background();
    }

    fn release_in_background(self: Box<Self>) {
        lock(&self.state).release(self.ip, self.id);
    }
}
