//! A gRPC [`Channel`] that balances calls over every replica of a service and
//! follows membership changes, so no caller is pinned to one pod by one
//! long-lived HTTP/2 connection.
//!
//! [`balanced_channel`] takes a spec:
//! - `dns://<host>:<port>` — e.g. a Kubernetes headless service
//!   (`dns://runner-headless.ns.svc:50051`): the name is resolved now and every
//!   [`BalanceOptions::refresh`] (5 s by default); each address is one endpoint
//!   (`http://<ip>:<port>`), added when it appears and removed when it is gone;
//! - a comma-separated list of URLs (`http://10.0.0.1:50051,http://10.0.0.2:50051`),
//!   or a single URL: a fixed set; [`balanced`] gives an [`EndpointSet`] handle
//!   to change it at runtime.
//!
//! Calls are spread by tonic's power-of-two-choices balancer over ready
//! endpoints; each endpoint connects lazily and reconnects by itself.
//!
//! Invariants: a failed or empty DNS answer keeps the current endpoints (a DNS
//! hiccup never empties the set); the refresh task ends once the channel and
//! all its clones are dropped; must be called inside a Tokio runtime.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::ServiceError;
use tokio::sync::{Mutex, mpsc};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// Capacity of the membership change queue of one channel.
const CHANGE_QUEUE: usize = 64;

/// Resolves a host name to addresses (the system resolver by default; tests
/// substitute their own).
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`), which sees every A/AAAA
/// record of a headless service.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Settings of a balanced channel.
#[derive(Clone, Debug)]
pub struct BalanceOptions {
    /// How often a `dns://` name is resolved again.
    pub refresh: Duration,
    /// Bound on connecting to one endpoint.
    pub connect_timeout: Duration,
}

impl Default for BalanceOptions {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The endpoints a balanced channel spreads calls over. Cheap to clone.
#[derive(Clone)]
pub struct EndpointSet {
    inner: Arc<SetInner>,
}

struct SetInner {
    changes: mpsc::Sender<Change<String, Endpoint>>,
    current: Mutex<BTreeSet<String>>,
    options: BalanceOptions,
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet").finish_non_exhaustive()
    }
}

impl EndpointSet {
    /// Makes `urls` the endpoints: new ones are added, missing ones removed
    /// (their connections close once in-flight calls end).
    pub async fn set<I, S>(&self, urls: I) -> Result<(), ServiceError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let wanted: BTreeSet<String> = urls.into_iter().map(Into::into).collect();
        let mut endpoints = Vec::with_capacity(wanted.len());
        for url in &wanted {
            endpoints.push((url.clone(), endpoint(url, &self.inner.options)?));
        }
        let mut current = self.inner.current.lock().await;
        let closed = || ServiceError::unavailable("the balanced channel was dropped");
        for gone in current.difference(&wanted) {
            tracing::info!(endpoint = %gone, "endpoint removed");
            self.inner
                .changes
                .send(Change::Remove(gone.clone()))
                .await
                .map_err(|_| closed())?;
        }
        for (url, endpoint) in endpoints {
            if !current.contains(&url) {
                tracing::info!(endpoint = %url, "endpoint added");
                self.inner
                    .changes
                    .send(Change::Insert(url, endpoint))
                    .await
                    .map_err(|_| closed())?;
            }
        }
        *current = wanted;
        Ok(())
    }

    /// The endpoints now in the set.
    pub async fn urls(&self) -> Vec<String> {
        self.inner.current.lock().await.iter().cloned().collect()
    }

    fn is_closed(&self) -> bool {
        self.inner.changes.is_closed()
    }
}

fn endpoint(url: &str, options: &BalanceOptions) -> Result<Endpoint, ServiceError> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|err| ServiceError::invalid(format!("bad service address {url:?}: {err}")))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// An empty balanced channel and the handle that fills it.
pub fn balanced(options: BalanceOptions) -> (Channel, EndpointSet) {
    let (channel, changes) = Channel::balance_channel(CHANGE_QUEUE);
    let set = EndpointSet {
        inner: Arc::new(SetInner {
            changes,
            current: Mutex::new(BTreeSet::new()),
            options,
        }),
    };
    (channel, set)
}

/// A channel for `spec` (see the module doc) with default options and the
/// system resolver.
pub fn balanced_channel(spec: &str) -> Result<Channel, ServiceError> {
    balanced_channel_with(spec, BalanceOptions::default(), Arc::new(SystemResolver))
        .map(|(channel, _)| channel)
}

/// A channel for `spec`, and the handle of its endpoint set. For `dns://`
/// specs a background task owns the set (changing it by hand is overridden at
/// the next refresh).
pub fn balanced_channel_with(
    spec: &str,
    options: BalanceOptions,
    resolver: Arc<dyn Resolve>,
) -> Result<(Channel, EndpointSet), ServiceError> {
    let spec = spec.trim();
    if let Some(target) = spec.strip_prefix("dns://") {
        let (host, port) = split_host_port(target)?;
        let refresh = options.refresh;
        let (channel, set) = balanced(options);
        tokio::spawn(follow_dns(set.clone(), resolver, host, port, refresh));
        return Ok((channel, set));
    }
    let urls: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(ServiceError::invalid("no service address given"));
    }
    let (channel, set) = balanced(options);
    // The queue is empty and large enough for a list given on the command line;
    // insert synchronously so the channel is usable at once.
    let mut seen = BTreeSet::new();
    {
        let mut current = set
            .inner
            .current
            .try_lock()
            .map_err(|_| ServiceError::internal("a fresh endpoint set is locked"))?;
        for url in urls {
            if !seen.insert(url.clone()) {
                continue;
            }
            let endpoint = endpoint(&url, &set.inner.options)?;
            set.inner
                .changes
                .try_send(Change::Insert(url.clone(), endpoint))
                .map_err(|_| ServiceError::invalid("too many service addresses"))?;
            current.insert(url);
        }
    }
    Ok((channel, set))
}

fn split_host_port(target: &str) -> Result<(String, u16), ServiceError> {
    let bad = || {
        ServiceError::invalid(format!(
            "bad dns target {target:?}: expected dns://<host>:<port>"
        ))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok((host.to_owned(), port))
}

/// Resolves `host` every `refresh` and mirrors the answer into `set`, until the
/// channel is dropped.
async fn follow_dns(
    set: EndpointSet,
    resolver: Arc<dyn Resolve>,
    host: String,
    port: u16,
    refresh: Duration,
) {
    loop {
        if set.is_closed() {
            return;
        }
        match resolver.resolve(&host, port).await {
            Ok(addrs) if !addrs.is_empty() => {
                let urls = addrs.iter().map(|addr| format!("http://{addr}"));
                if set.set(urls).await.is_err() {
                    return;
                }
            }
            Ok(_) => tracing::warn!(%host, "dns answer is empty; keeping current endpoints"),
            Err(err) => {
                tracing::warn!(%host, error = %err, "dns resolution failed; keeping current endpoints");
            }
        }
        tokio::time::sleep(refresh).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_targets_parse() {
        assert_eq!(
            split_host_port("runner.ns.svc:50051").ok(),
            Some(("runner.ns.svc".to_owned(), 50051))
        );
        assert_eq!(split_host_port("[::1]:1").ok(), Some(("::1".to_owned(), 1)));
        assert!(split_host_port("runner").is_err());
        assert!(split_host_port(":1").is_err());
    }
}
