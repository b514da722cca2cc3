//! Starts a cluster runner's background loops: lease renewal every
//! `renew_interval`, the reaper every `reap_interval` ([`super::reaper`]) and
//! the control topic ([`super::control`]).
//!
//! Invariant: each loop holds the service weakly and ends when it is shut down
//! (the stop token) or dropped; the control subscription is confirmed before
//! [`start`] returns, so no forwarded abort sent afterwards is missed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use clawgate_runtime::bus::Topic;
use tokio_util::sync::CancellationToken;

use super::{Cluster, control, reaper};
use crate::service::{Inner, RunnerService};

/// Queue of the control-topic subscriber.
const CONTROL_QUEUE: usize = 256;

/// Starts the cluster loops of the service behind `inner`. The subscription to
/// the control topic is confirmed before this returns.
pub(crate) async fn start(
    inner: &Arc<Inner>,
    cluster: &Cluster,
    stop: CancellationToken,
) -> Result<(), clawgate_proto::ServiceError> {
    let subscriber = cluster.bus.subscriber(CONTROL_QUEUE).await?;
    subscriber
        .control
        .subscribe(&Topic::runner(&cluster.options.runner_id))
        .await?;
    let weak = Arc::downgrade(inner);
    tokio::spawn(every(
        weak.clone(),
        stop.clone(),
        cluster.options.renew_every(),
        |service| async move {
            if let Some(cluster) = &service.inner.cluster {
                cluster.registry.renew().await;
            }
        },
    ));
    tokio::spawn(every(
        weak.clone(),
        stop.clone(),
        cluster.options.reap_interval.max(Duration::from_millis(10)),
        |service| async move {
            if let Some(cluster) = &service.inner.cluster {
                reaper::reap_once(&service, cluster).await;
            }
        },
    ));
    tokio::spawn(control::serve_control(
        weak,
        stop,
        subscriber.deliveries,
        subscriber.control,
    ));
    Ok(())
}

/// Calls `tick` every `period` until `stop` or until the service is dropped.
async fn every<F, Fut>(weak: Weak<Inner>, stop: CancellationToken, period: Duration, tick: F)
where
    F: Fn(RunnerService) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tick(RunnerService { inner }) => {}
        }
    }
}
