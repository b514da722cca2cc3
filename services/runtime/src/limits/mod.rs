//! Rate limits that hold across every process of a deployment: the failed-auth
//! lockout and the per-IP budget of unauthenticated sockets.
//!
//! Each limit is one trait with two implementations, like the event bus: in-process
//! ([`memory`]) for the embedded single-process mode, and Redis ([`redis`]) when
//! several edge and auth processes must see the same counts.
//!
//! **Failed-auth lockout** ([`AuthLimiter`]). Failures are counted per
//! [`LimitKey`] = (client IP, [`AuthScope`]). `max_failures` failures within any
//! `window` (a sliding window: 10 per 60 s by default) lock the key out for `lockout`
//! (5 min). While locked, further failures are not counted and do not extend the
//! lockout; when it ends the count starts from zero. A successful authentication
//! does **not** erase earlier failures: there is deliberately no "reset" call, so a
//! client holding one valid credential (its own device token, say) cannot interleave
//! successes to keep guessing other credentials of the same scope. Loopback clients
//! are exempt by default ([`AuthLimitConfig::exempt_loopback`]).
//!
//! **Pre-auth socket budget** ([`SocketBudget`]). At most `max_per_ip` sockets per
//! client IP may be open without a completed handshake, counted over all edge
//! processes; over budget the edge answers the upgrade with HTTP 503. A slot is held
//! by a [`BudgetPermit`]; releasing or dropping the permit gives it back. Every slot
//! also carries an expiry (`permit_ttl`, longer than the handshake timeout), so slots
//! of a process that died without releasing come back by themselves.
//!
//! Invariants (both implementations, checked by one behaviour suite):
//! - IPv4-mapped IPv6 addresses count as their IPv4 address (so `::ffff:127.0.0.1`
//!   is loopback and shares the budget of `127.0.0.1`);
//! - memory is bounded: the in-process limiters cap the number of tracked keys and
//!   drop stale entries; Redis keys all carry a TTL;
//! - no call waits on Redis longer than the configured command timeout, and none
//!   panics: a store that cannot answer yields [`LimitError::Unavailable`].
//!
//! **What callers do when the store is unavailable.**
//! - The auth path fails **closed**: when [`AuthLimiter::check`] fails, answer
//!   `UNAVAILABLE` (retryable) without verifying the credential, otherwise a Redis
//!   outage would switch off brute-force protection. When
//!   [`AuthLimiter::record_failure`] fails, the attempt is still rejected as it would
//!   have been; log the error.
//! - The socket budget fails **open, to a local budget**: wrap the Redis budget in
//!   [`fallback::FailOpenSocketBudget`], which logs a warning and enforces the budget
//!   per process while Redis is down. Refusing every upgrade would turn a Redis outage
//!   into an outage of all new connections (including loopback ones, which the auth
//!   limiter exempts), while pre-auth sockets are bounded anyway by the handshake
//!   timeout and the pre-auth frame cap; the per-process budget keeps one IP from
//!   exhausting any single edge meanwhile.

pub mod fallback;
pub mod memory;
pub mod redis;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

/// What an authentication attempt presented; failures of different scopes are
/// counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthScope {
    /// The gateway's shared token or password.
    SharedSecret,
    /// A device token issued on pairing.
    DeviceToken,
    /// A goclaw API key.
    ApiKey,
    /// A goclaw browser pairing code or sender id.
    PairingCode,
}

impl AuthScope {
    /// The scope's name in logs and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedSecret => "shared-secret",
            Self::DeviceToken => "device-token",
            Self::ApiKey => "api-key",
            Self::PairingCode => "pairing-code",
        }
    }
}

impl fmt::Display for AuthScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What failed-auth attempts are counted per: the client IP and the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey {
    ip: IpAddr,
    scope: AuthScope,
}

impl LimitKey {
    /// The IP is stored canonically: an IPv4-mapped IPv6 address becomes IPv4.
    pub fn new(ip: IpAddr, scope: AuthScope) -> Self {
        Self {
            ip: canonical_ip(ip),
            scope,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn scope(&self) -> AuthScope {
        self.scope
    }
}

/// The answer of a limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitDecision {
    Allowed,
    /// Refuse the attempt; the lockout ends in `retry_after_ms`.
    Locked {
        retry_after_ms: u64,
    },
}

impl LimitDecision {
    pub fn is_locked(self) -> bool {
        matches!(self, Self::Locked { .. })
    }

    /// The error to answer a locked-out attempt with: `RESOURCE_EXHAUSTED`, retryable
    /// after the lockout, `details: {reason: "auth-rate-limited"}`. The dialects map
    /// it to their wire form (OpenClaw: `AUTH_RATE_LIMITED`, `wait_then_retry`).
    /// `None` when allowed.
    pub fn to_error(self) -> Option<clawgate_proto::ServiceError> {
        match self {
            Self::Allowed => None,
            Self::Locked { retry_after_ms } => Some(
                clawgate_proto::ServiceError::new(
                    clawgate_proto::ErrorCode::ResourceExhausted,
                    "too many failed authentication attempts; retry later",
                )
                .retry_after(retry_after_ms)
                .with_details(serde_json::json!({ "reason": "auth-rate-limited" })),
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The shared store cannot be reached or did not answer in time. See the module
    /// doc for what callers do.
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
    /// A limiter was set up with an unusable setting (e.g. an invalid key prefix).
    #[error("invalid rate limit configuration: {0}")]
    InvalidConfig(String),
}

impl From<crate::redis::ConnectError> for LimitError {
    fn from(err: crate::redis::ConnectError) -> Self {
        match err {
            crate::redis::ConnectError::InvalidConfig(reason) => Self::InvalidConfig(reason.into()),
            crate::redis::ConnectError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

impl From<LimitError> for clawgate_proto::ServiceError {
    fn from(err: LimitError) -> Self {
        tracing::warn!(error = %err, "rate limit error");
        clawgate_proto::ServiceError::unavailable("rate limiter unavailable")
    }
}

/// Settings of the failed-auth lockout. Defaults follow the OpenClaw reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthLimitConfig {
    /// Failures within `window` that trigger a lockout (the last of them does).
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Never count or lock out loopback clients.
    pub exempt_loopback: bool,
    /// In-process only: the most (IP, scope) keys tracked at once.
    pub max_tracked_keys: usize,
}

impl Default for AuthLimitConfig {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(5 * 60),
            exempt_loopback: true,
            max_tracked_keys: 50_000,
        }
    }
}

impl AuthLimitConfig {
    /// Clamps settings to usable values (at least one failure, windows of at least
    /// 1 ms, at least one tracked key).
    pub(crate) fn normalized(&self) -> Self {
        Self {
            max_failures: self.max_failures.max(1),
            window: self.window.max(Duration::from_millis(1)),
            lockout: self.lockout.max(Duration::from_millis(1)),
            exempt_loopback: self.exempt_loopback,
            max_tracked_keys: self.max_tracked_keys.max(1),
        }
    }

    pub(crate) fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt_loopback && ip.is_loopback()
    }
}

/// Checks and records failed authentication attempts.
#[async_trait]
pub trait AuthLimiter: Send + Sync + 'static {
    /// Whether an attempt for `key` may be verified now. Call before verifying the
    /// credential; on `Locked` refuse without verifying.
    async fn check(&self, key: &LimitKey) -> Result<LimitDecision, LimitError>;

    /// Counts one failed attempt; `Locked` when this failure reached the limit (or
    /// the key was already locked, in which case nothing is counted).
    async fn record_failure(&self, key: &LimitKey) -> Result<LimitDecision, LimitError>;
}

/// Settings of the pre-auth socket budget. Defaults follow the OpenClaw reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketBudgetConfig {
    /// Unauthenticated sockets allowed per client IP at once.
    pub max_per_ip: u32,
    /// How long a slot is held at most; a slot not released by then is given back.
    /// Must exceed the handshake timeout (15 s), after which the edge closes every
    /// socket that has not authenticated.
    pub permit_ttl: Duration,
    /// In-process only: the most client IPs tracked at once; a new IP beyond it is
    /// refused (as over budget).
    pub max_tracked_ips: usize,
}

impl Default for SocketBudgetConfig {
    fn default() -> Self {
        Self {
            max_per_ip: 32,
            permit_ttl: Duration::from_secs(20),
            max_tracked_ips: 100_000,
        }
    }
}

impl SocketBudgetConfig {
    pub(crate) fn normalized(&self) -> Self {
        Self {
            max_per_ip: self.max_per_ip,
            permit_ttl: self.permit_ttl.max(Duration::from_millis(1)),
            max_tracked_ips: self.max_tracked_ips.max(1),
        }
    }
}

/// The budget of unauthenticated sockets per client IP.
#[async_trait]
pub trait SocketBudget: Send + Sync + 'static {
    /// Takes one slot for `ip`; `None` when its budget is used up (answer the upgrade
    /// with HTTP 503). Hold the permit until the handshake ends, however it ends.
    async fn acquire(&self, ip: IpAddr) -> Result<Option<BudgetPermit>, LimitError>;
}

/// Gives a held slot back. Implemented by each [`SocketBudget`].
#[async_trait]
pub trait SlotRelease: Send + Sync + 'static {
    /// Gives the slot back, waiting until the store has it.
    async fn release(self: Box<Self>);
    /// Gives the slot back without waiting (called on drop; must not block).
    fn release_in_background(self: Box<Self>);
}

/// One slot of a client IP's pre-auth budget. Dropping it gives the slot back.
pub struct BudgetPermit {
    ip: IpAddr,
    slot: Option<Box<dyn SlotRelease>>,
}

impl BudgetPermit {
    pub fn new(ip: IpAddr, slot: Box<dyn SlotRelease>) -> Self {
        Self {
            ip,
            slot: Some(slot),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Gives the slot back and waits until the store has it (dropping the permit
    /// does the same in the background).
    pub async fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release().await;
        }
    }
}

impl fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetPermit")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release_in_background();
        }
    }
}

/// IPv4-mapped IPv6 addresses become IPv4; everything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A duration in whole milliseconds, at least 1.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
