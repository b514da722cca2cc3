//! gRPC health (the standard health checking protocol) of the services one
//! process runs, reflecting their dependencies.
//!
//! Each service registers the dependencies it cannot work without
//! ([`Dependency`]: its database, the Redis of a clustered runner). A probe task
//! checks every dependency every [`PROBE_INTERVAL`] (each check bounded by
//! [`PROBE_TIMEOUT`]) and reports a service `SERVING` while all of its
//! dependencies answer, `NOT_SERVING` otherwise; the overall status (`""`) is
//! `SERVING` while every service is. A stopping service is marked with
//! [`Health::stopping`] and stays `NOT_SERVING` whatever its dependencies do.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::db::Database;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often dependencies are checked.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Bound of one dependency check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Something a service needs to serve.
#[derive(Clone)]
pub enum Dependency {
    /// A database, checked with `SELECT 1`.
    Database(Database),
    /// An event bus (Redis), checked by publishing an empty message on a topic
    /// nobody subscribes to.
    Bus(Arc<dyn EventBus>),
}

impl Dependency {
    async fn check(&self) -> bool {
        let check = async {
            match self {
                Self::Database(db) => sqlx::query("SELECT 1").execute(db.pool()).await.is_ok(),
                Self::Bus(bus) => bus
                    .publish(&Topic::from_name("health.probe"), Bytes::new())
                    .await
                    .is_ok(),
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, check)
            .await
            .unwrap_or(false)
    }
}

struct State {
    /// gRPC service name → its dependencies.
    services: HashMap<String, Vec<Dependency>>,
    stopping: HashSet<String>,
}

/// The health of this process's gRPC services. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Self {
            reporter,
            state: Arc::new(Mutex::new(State {
                services: HashMap::new(),
                stopping: HashSet::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `service` (serving until a probe says otherwise).
    pub async fn add(&self, service: &str, dependencies: Vec<Dependency>) {
        self.lock()
            .services
            .insert(service.to_owned(), dependencies);
        self.reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }

    /// Marks `service` as stopping: `NOT_SERVING` from now on.
    pub async fn stopping(&self, service: &str) {
        self.lock().stopping.insert(service.to_owned());
        self.reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    }

    /// Checks every dependency once and reports the outcome.
    pub async fn probe(&self) {
        let services: Vec<(String, Vec<Dependency>)> = self
            .lock()
            .services
            .iter()
            .map(|(name, deps)| (name.clone(), deps.clone()))
            .collect();
        let mut all = true;
        for (name, dependencies) in services {
            let mut ok = true;
            for dependency in &dependencies {
                ok &= dependency.check().await;
            }
            ok &= !self.lock().stopping.contains(&name);
            all &= ok;
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            self.reporter.set_service_status(&name, status).await;
        }
        let overall = if all {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", overall).await;
    }

    /// Probes every [`PROBE_INTERVAL`] until the returned handle is dropped.
    pub fn spawn_probes(&self) -> ProbeTask {
        let health = self.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(PROBE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                health.probe().await;
            }
        });
        ProbeTask(task)
    }
}

/// The probe loop; stops when dropped.
#[derive(Debug)]
pub struct ProbeTask(tokio::task::JoinHandle<()>);

impl Drop for ProbeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
