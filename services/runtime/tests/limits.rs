//! Behaviour suite of the shared rate limits: the same tests run against the
//! in-process limiters and the Redis ones, plus Redis-only tests of key layout and
//! failure handling, and memory-only tests of the memory bounds.
//!
//! "Two processes" are two limiter instances: on Redis each has its own connection
//! and they share a key prefix; in memory they are one instance (one process).
//!
//! Redis tests use `redis://127.0.0.1:6379` unless `CLAWGATE_TEST_REDIS_URL` is set;
//! each test uses its own random key prefix. The dead-broker test starts its own
//! `redis-server` (which must be on `PATH`) on a free port.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_runtime::ErrorCode;
use clawgate_runtime::limits::fallback::FailOpenSocketBudget;
use clawgate_runtime::limits::memory::{MemoryAuthLimiter, MemorySocketBudget};
use clawgate_runtime::limits::redis::{RedisAuthLimiter, RedisLimits, RedisSocketBudget};
use clawgate_runtime::limits::{
    AuthLimitConfig, AuthLimiter, AuthScope, BudgetPermit, LimitDecision, LimitError, LimitKey,
    SocketBudget, SocketBudgetConfig,
};

mod support;

use clawgate_runtime::redis::RedisOptions;
use support::{RedisServer, connect_limits, fast_options, free_port};

const WAIT: Duration = Duration::from_secs(10);
const ALLOWED: LimitDecision = LimitDecision::Allowed;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Redis,
}

fn redis_url() -> String {
    std::env::var("CLAWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random_prefix() -> String {
    format!("cgtest-{}", uuid::Uuid::new_v4().simple())
}

async fn connect(url: &str, prefix: &str) -> RedisLimits {
    match connect_limits(url, prefix, RedisOptions::default()).await {
        Ok(limits) => limits,
        Err(err) => panic!(
            "Redis limit tests need a Redis server (set CLAWGATE_TEST_REDIS_URL to point \
             elsewhere): {err}"
        ),
    }
}

/// Two "processes" of one deployment, with the given settings.
async fn auth_pair(
    backend: Backend,
    config: AuthLimitConfig,
) -> (Arc<dyn AuthLimiter>, Arc<dyn AuthLimiter>) {
    match backend {
        Backend::Memory => {
            let limiter: Arc<dyn AuthLimiter> = Arc::new(MemoryAuthLimiter::new(config));
            (limiter.clone(), limiter)
        }
        Backend::Redis => {
            let prefix = random_prefix();
            let a = RedisAuthLimiter::new(connect(&redis_url(), &prefix).await, config.clone());
            let b = RedisAuthLimiter::new(connect(&redis_url(), &prefix).await, config);
            (Arc::new(a), Arc::new(b))
        }
    }
}

async fn budget_pair(
    backend: Backend,
    config: SocketBudgetConfig,
) -> (Arc<dyn SocketBudget>, Arc<dyn SocketBudget>) {
    match backend {
        Backend::Memory => {
            let budget: Arc<dyn SocketBudget> = Arc::new(MemorySocketBudget::new(config));
            (budget.clone(), budget)
        }
        Backend::Redis => {
            let prefix = random_prefix();
            let a = RedisSocketBudget::new(connect(&redis_url(), &prefix).await, config.clone());
            let b = RedisSocketBudget::new(connect(&redis_url(), &prefix).await, config);
            (Arc::new(a), Arc::new(b))
        }
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip address")
}

fn key(address: &str, scope: AuthScope) -> LimitKey {
    LimitKey::new(ip(address), scope)
}

fn auth_config(max_failures: u32, window_ms: u64, lockout_ms: u64) -> AuthLimitConfig {
    AuthLimitConfig {
        max_failures,
        window: Duration::from_millis(window_ms),
        lockout: Duration::from_millis(lockout_ms),
        ..AuthLimitConfig::default()
    }
}

fn budget_config(max_per_ip: u32, ttl_ms: u64) -> SocketBudgetConfig {
    SocketBudgetConfig {
        max_per_ip,
        permit_ttl: Duration::from_millis(ttl_ms),
        ..SocketBudgetConfig::default()
    }
}

async fn check(limiter: &Arc<dyn AuthLimiter>, key: &LimitKey) -> LimitDecision {
    limiter.check(key).await.expect("check")
}

async fn fail(limiter: &Arc<dyn AuthLimiter>, key: &LimitKey) -> LimitDecision {
    limiter.record_failure(key).await.expect("record failure")
}

async fn take(budget: &Arc<dyn SocketBudget>, address: &str) -> Option<BudgetPermit> {
    budget.acquire(ip(address)).await.expect("acquire")
}

fn retry_after(decision: LimitDecision) -> u64 {
    match decision {
        LimitDecision::Locked { retry_after_ms } => retry_after_ms,
        LimitDecision::Allowed => panic!("expected a lockout"),
    }
}

// ---------------------------------------------------------------------------
// The behaviour suite (both implementations)
// ---------------------------------------------------------------------------

async fn locks_out_after_exactly_max_failures(backend: Backend) {
    let (a, b) = auth_pair(backend, auth_config(4, 60_000, 60_000)).await;
    let client = key("203.0.113.7", AuthScope::DeviceToken);
    // Failures recorded by either process count together.
    for (n, limiter) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(fail(limiter, &client).await, ALLOWED, "failure {n}");
        assert_eq!(check(&b, &client).await, ALLOWED);
    }
    let locked = retry_after(fail(&b, &client).await);
    assert!(locked > 59_000 && locked <= 60_000, "{locked}");
    let left = retry_after(check(&a, &client).await);
    assert!(left > 0 && left <= locked, "{left}");
    // Failing again while locked neither counts nor extends the lockout.
    let again = retry_after(fail(&a, &client).await);
    assert!(again <= locked, "{again} > {locked}");
}

async fn lockout_expires_and_counting_restarts(backend: Backend) {
    let (a, b) = auth_pair(backend, auth_config(2, 60_000, 300)).await;
    let client = key("198.51.100.20", AuthScope::SharedSecret);
    assert_eq!(fail(&a, &client).await, ALLOWED);
    assert!(fail(&b, &client).await.is_locked());
    assert!(check(&a, &client).await.is_locked());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(check(&a, &client).await, ALLOWED);
    assert_eq!(check(&b, &client).await, ALLOWED);
    // The failures before the lockout are gone: one more is not enough again.
    assert_eq!(fail(&a, &client).await, ALLOWED);
    assert!(fail(&a, &client).await.is_locked());
}

async fn failures_older_than_the_window_do_not_count(backend: Backend) {
    let (a, _) = auth_pair(backend, auth_config(3, 300, 60_000)).await;
    let client = key("198.51.100.21", AuthScope::ApiKey);
    assert_eq!(fail(&a, &client).await, ALLOWED);
    assert_eq!(fail(&a, &client).await, ALLOWED);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fail(&a, &client).await, ALLOWED);
    assert_eq!(fail(&a, &client).await, ALLOWED);
    assert!(fail(&a, &client).await.is_locked());
}

async fn keys_are_independent(backend: Backend) {
    let (a, b) = auth_pair(backend, auth_config(2, 60_000, 60_000)).await;
    let locked = key("203.0.113.1", AuthScope::DeviceToken);
    let other = key("203.0.113.2", AuthScope::DeviceToken);
    let v6 = key("2001:db8::1", AuthScope::DeviceToken);
    let v6_neighbour = key("2001:db8::2", AuthScope::DeviceToken);
    fail(&a, &locked).await;
    assert!(fail(&a, &locked).await.is_locked());
    assert_eq!(check(&b, &other).await, ALLOWED);
    assert_eq!(fail(&b, &other).await, ALLOWED);
    fail(&b, &v6).await;
    assert!(fail(&a, &v6).await.is_locked());
    assert_eq!(check(&a, &v6_neighbour).await, ALLOWED);
    // An IPv4-mapped IPv6 address is its IPv4 address.
    let mapped = key("::ffff:203.0.113.1", AuthScope::DeviceToken);
    assert!(check(&a, &mapped).await.is_locked());
}

async fn scopes_are_counted_separately(backend: Backend) {
    let (a, _) = auth_pair(backend, auth_config(2, 60_000, 60_000)).await;
    let (address, locked) = ("203.0.113.50", key("203.0.113.50", AuthScope::DeviceToken));
    fail(&a, &locked).await;
    assert!(fail(&a, &locked).await.is_locked());
    let others = [
        AuthScope::SharedSecret,
        AuthScope::ApiKey,
        AuthScope::PairingCode,
    ];
    for scope in others {
        assert_eq!(check(&a, &key(address, scope)).await, ALLOWED);
        assert_eq!(fail(&a, &key(address, scope)).await, ALLOWED);
    }
}

async fn loopback_is_exempt_unless_configured(backend: Backend) {
    let (a, _) = auth_pair(backend, auth_config(2, 60_000, 60_000)).await;
    for address in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
        let client = key(address, AuthScope::SharedSecret);
        for _ in 0..5 {
            assert_eq!(fail(&a, &client).await, ALLOWED, "{address}");
        }
        assert_eq!(check(&a, &client).await, ALLOWED, "{address}");
    }
    let strict = AuthLimitConfig {
        exempt_loopback: false,
        ..auth_config(2, 60_000, 60_000)
    };
    let (a, _) = auth_pair(backend, strict).await;
    let client = key("::1", AuthScope::SharedSecret);
    fail(&a, &client).await;
    assert!(fail(&a, &client).await.is_locked());
    assert!(check(&a, &client).await.is_locked());
}

async fn budget_is_shared_across_processes(backend: Backend) {
    let (a, b) = budget_pair(backend, budget_config(2, 60_000)).await;
    let client = "203.0.113.9";
    let first = take(&a, client).await.expect("slot 1");
    let second = take(&b, client).await.expect("slot 2");
    assert!(take(&a, client).await.is_none());
    assert!(take(&b, client).await.is_none());
    // The same IP written as IPv4-mapped IPv6 shares the budget.
    assert!(take(&b, "::ffff:203.0.113.9").await.is_none());
    // Other IPs have their own budget.
    let other = take(&a, "203.0.113.10").await.expect("another IP");
    // Released on one process, available on the other.
    first.release().await;
    let third = take(&b, client).await.expect("slot freed");
    assert_eq!(third.ip(), ip(client));
    assert!(take(&a, client).await.is_none());
    drop((second, third, other));
}

async fn dropping_a_permit_releases_its_slot(backend: Backend) {
    let (a, b) = budget_pair(backend, budget_config(1, 60_000)).await;
    let client = "198.51.100.77";
    let permit = take(&a, client).await.expect("slot");
    assert!(take(&b, client).await.is_none());
    drop(permit);
    let deadline = Instant::now() + WAIT;
    while take(&b, client).await.is_none() {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn slots_of_a_crashed_holder_expire(backend: Backend) {
    let (a, b) = budget_pair(backend, budget_config(2, 300)).await;
    let client = "198.51.100.88";
    // The holder dies without releasing: its permits are never dropped.
    for _ in 0..2 {
        std::mem::forget(take(&a, client).await.expect("slot"));
    }
    drop(a);
    assert!(take(&b, client).await.is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = take(&b, client).await.expect("first slot back");
    let second = take(&b, client).await.expect("second slot back");
    drop((first, second));
}

async fn concurrent_acquires_never_exceed_the_budget(backend: Backend) {
    let (a, b) = budget_pair(backend, budget_config(8, 60_000)).await;
    let attempts = (0..40).map(|n| {
        let budget = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { take(&budget, "203.0.113.77").await })
    });
    let mut granted = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        granted.extend(attempt.await.expect("task"));
    }
    assert_eq!(granted.len(), 8);
}

async fn a_budget_of_zero_refuses_everyone(backend: Backend) {
    let (a, _) = budget_pair(backend, budget_config(0, 60_000)).await;
    assert!(take(&a, "203.0.113.99").await.is_none());
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        // In memory the windows and lockouts run on tokio's clock, paused here:
        // waiting them out takes no real time.
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $test() {
                    super::$test(super::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Redis).await;
                }
            )*
        }
    };
}

suite!(
    locks_out_after_exactly_max_failures,
    lockout_expires_and_counting_restarts,
    failures_older_than_the_window_do_not_count,
    keys_are_independent,
    scopes_are_counted_separately,
    loopback_is_exempt_unless_configured,
    budget_is_shared_across_processes,
    dropping_a_permit_releases_its_slot,
    slots_of_a_crashed_holder_expire,
    concurrent_acquires_never_exceed_the_budget,
    a_budget_of_zero_refuses_everyone,
);

// ---------------------------------------------------------------------------
// Both: the error a lockout is answered with
// ---------------------------------------------------------------------------

#[test]
fn a_lockout_maps_to_a_retryable_resource_exhausted_error() {
    assert!(LimitDecision::Allowed.to_error().is_none());
    let error = LimitDecision::Locked {
        retry_after_ms: 1234,
    }
    .to_error()
    .expect("an error");
    assert_eq!(error.code, ErrorCode::ResourceExhausted);
    assert!(error.retryable);
    assert_eq!(error.retry_after_ms, Some(1234));
}

// ---------------------------------------------------------------------------
// Memory only: bounds
// ---------------------------------------------------------------------------

#[tokio::test]
async fn memory_auth_limiter_caps_tracked_keys_and_keeps_lockouts() {
    let limiter = MemoryAuthLimiter::new(AuthLimitConfig {
        max_tracked_keys: 16,
        ..auth_config(2, 60_000, 60_000)
    });
    let locked = key("203.0.113.1", AuthScope::DeviceToken);
    for _ in 0..2 {
        limiter.record_failure(&locked).await.expect("failure");
    }
    assert!(limiter.check(&locked).await.expect("check").is_locked());
    for n in 0..1000u16 {
        let [high, low] = n.to_be_bytes();
        let client = LimitKey::new(IpAddr::from([10, 0, high, low]), AuthScope::DeviceToken);
        limiter.record_failure(&client).await.expect("failure");
        assert!(limiter.tracked_keys() <= 16, "{}", limiter.tracked_keys());
    }
    // Unlocked keys are evicted before locked ones.
    assert!(limiter.check(&locked).await.expect("check").is_locked());
}

#[tokio::test(start_paused = true)]
async fn memory_auth_limiter_sweeps_stale_keys() {
    let limiter = MemoryAuthLimiter::new(auth_config(5, 100, 60_000));
    for n in 0..50u8 {
        let client = LimitKey::new(IpAddr::from([10, 1, 0, n]), AuthScope::ApiKey);
        limiter.record_failure(&client).await.expect("failure");
    }
    assert_eq!(limiter.tracked_keys(), 50);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let client = LimitKey::new(IpAddr::from([10, 2, 0, 1]), AuthScope::ApiKey);
    limiter.record_failure(&client).await.expect("failure");
    assert_eq!(limiter.tracked_keys(), 1);
}

#[tokio::test]
async fn memory_budget_caps_tracked_ips_and_forgets_empty_ones() {
    let memory = Arc::new(MemorySocketBudget::new(SocketBudgetConfig {
        max_tracked_ips: 3,
        ..budget_config(2, 60_000)
    }));
    let budget: Arc<dyn SocketBudget> = memory.clone();
    let mut permits = Vec::new();
    for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        permits.push(take(&budget, address).await.expect("slot"));
    }
    assert!(take(&budget, "10.0.0.4").await.is_none());
    // An IP already tracked still gets its budget.
    permits.push(take(&budget, "10.0.0.1").await.expect("second slot"));
    permits.swap_remove(2);
    assert_eq!(memory.tracked_ips(), 2);
    permits.push(take(&budget, "10.0.0.4").await.expect("room for a new IP"));
    drop(permits);
    assert_eq!(memory.tracked_ips(), 0);
}

// ---------------------------------------------------------------------------
// Redis only: key layout and failure handling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redis_keys_follow_the_documented_layout_and_all_expire() {
    let prefix = random_prefix();
    let limits = connect(&redis_url(), &prefix).await;
    let auth = RedisAuthLimiter::new(limits.clone(), auth_config(3, 60_000, 60_000));
    let budget = RedisSocketBudget::new(limits.clone(), budget_config(3, 20_000));
    let client = key("203.0.113.5", AuthScope::DeviceToken);
    let (failures_key, lockout_key) = limits.auth_keys(&client);
    let base = format!("{prefix}:limit:auth:{{device-token:203.0.113.5}}");
    assert_eq!(failures_key, format!("{base}:failures"));
    assert_eq!(lockout_key, format!("{base}:lockout"));
    let budget_key = limits.budget_key(ip("::ffff:203.0.113.5"));
    assert_eq!(
        budget_key,
        format!("{prefix}:limit:preauth:{{203.0.113.5}}")
    );

    let client_redis = ::redis::Client::open(redis_url()).expect("client");
    let mut raw = client_redis
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let pttl = async |raw: &mut ::redis::aio::MultiplexedConnection, key: &str| -> i64 {
        ::redis::cmd("PTTL")
            .arg(key)
            .query_async(raw)
            .await
            .expect("PTTL")
    };

    auth.record_failure(&client).await.expect("failure");
    let ttl = pttl(&mut raw, &failures_key).await;
    assert!(ttl > 0 && ttl <= 60_000, "failures TTL {ttl}");
    auth.record_failure(&client).await.expect("failure");
    assert!(
        auth.record_failure(&client)
            .await
            .expect("failure")
            .is_locked()
    );
    assert_eq!(
        pttl(&mut raw, &failures_key).await,
        -2,
        "failures kept after lockout"
    );
    let ttl = pttl(&mut raw, &lockout_key).await;
    assert!(ttl > 0 && ttl <= 60_000, "lockout TTL {ttl}");

    let permit = budget.acquire(ip("203.0.113.5")).await.expect("acquire");
    let ttl = pttl(&mut raw, &budget_key).await;
    assert!(ttl > 0 && ttl <= 20_000, "budget TTL {ttl}");
    permit.expect("slot").release().await;
    assert_eq!(
        pttl(&mut raw, &budget_key).await,
        -2,
        "empty budget key kept"
    );
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, LimitError>, started: Instant) {
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(LimitError::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test]
async fn redis_unreachable_at_connect_gives_unavailable_quickly() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let result = connect_limits(&url, &random_prefix(), fast_options()).await;
    assert_unavailable(result, started);
    // The error names the failure but never the URL (it may carry a password).
    let secret = "redis://:hunter2@127.0.0.1:1";
    let error = connect_limits(secret, "p", fast_options())
        .await
        .expect_err("port 1 is closed");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // A prefix that would break the hash tags is refused.
    let result = connect_limits(&redis_url(), "bad{prefix}", fast_options()).await;
    assert!(
        matches!(result, Err(LimitError::InvalidConfig(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_down_gives_unavailable_quickly_and_the_budget_fails_open() {
    let mut server = RedisServer::start(free_port(), &[]).await;
    let limits = connect_limits(&server.url(), &random_prefix(), fast_options())
        .await
        .expect("connect");
    let auth = RedisAuthLimiter::new(limits.clone(), auth_config(3, 60_000, 60_000));
    let shared: Arc<dyn SocketBudget> =
        Arc::new(RedisSocketBudget::new(limits, budget_config(1, 60_000)));
    let local: Arc<dyn SocketBudget> = Arc::new(MemorySocketBudget::new(budget_config(1, 60_000)));
    let budget = FailOpenSocketBudget::new(shared.clone(), local);
    let client = key("203.0.113.44", AuthScope::SharedSecret);
    assert_eq!(
        auth.check(&client).await.expect("check"),
        LimitDecision::Allowed
    );
    let held = budget.acquire(client.ip()).await.expect("acquire");
    assert!(held.is_some() && !budget.is_degraded());

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        assert_unavailable(auth.check(&client).await, started);
        let started = Instant::now();
        assert_unavailable(auth.record_failure(&client).await, started);
        let started = Instant::now();
        assert_unavailable(shared.acquire(client.ip()).await, started);
    }
    // Releasing into a dead Redis neither hangs nor panics.
    let started = Instant::now();
    if let Some(permit) = held {
        permit.release().await;
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // The fail-open budget falls back to a per-process budget.
    let started = Instant::now();
    let local_permit = budget.acquire(client.ip()).await.expect("never fails");
    assert!(local_permit.is_some() && budget.is_degraded());
    assert!(
        budget
            .acquire(client.ip())
            .await
            .expect("never fails")
            .is_none()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
