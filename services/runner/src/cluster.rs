//! A runner among several sharing one Redis: lease renewal, forwarded aborts and
//! the reaper of runs whose runner died.
//!
//! What it owns, per runner process (started by [`crate::RunnerBuilder`] when
//! [`ClusterOptions`] are given):
//! - **renewal**: every `renew_interval` (lease / 3 by default) the leases of
//!   every local run are extended in one round trip; a run whose lease is found
//!   lost is aborted locally (see `registry::RedisRegistry`);
//! - **control topic**: the runner subscribes to `Topic::runner(<runner id>)`.
//!   `AbortRun` for a run owned by another runner publishes a
//!   `RunnerControl.command` (abort) on the owner's topic and waits (bounded by
//!   `abort_wait` plus a margin) for its `RunnerControl.reply`, sent once the
//!   owner's run has written its partial text; without an answer it reads the
//!   run's record instead. Runner ids must be unique among live runners;
//! - **reaper**: every `reap_interval`, runs whose lease deadline passed are
//!   checked; for each whose lease is really gone while its record still says
//!   running, one runner wins the end claim and ends it: an error row (with the
//!   partial text rebuilt from the run's replay history, when complete) in the
//!   transcript, the record marked failed, the session's lease freed (it had
//!   already expired, so the session was free for the next message anyway), then
//!   an `error` event (kind `runner_lost`, `seq` after the last one in the
//!   history) to the run's watchers. A run is therefore ended within about
//!   `lease + reap_interval` after its runner stopped.
//!
//! Invariants: every loop ends when the service is shut down or dropped; all
//! waits are bounded; the pending-reply table holds one entry per abort being
//! forwarded right now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    AbortRunCommand, LifecycleError, RunnerCommand, RunnerControl, RunnerReply, run_event,
    runner_command, runner_control,
};
use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_proto::session::{AppendMessageRequest, MessageStatus};
use clawgate_runtime::bus::{Delivery, EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::lease::LostRun;
use clawgate_runtime::replay::{ReplayOptions, RunRef, assistant_text};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::events::{EventPublisher, RunIdentity};
use crate::registry::{RedisRegistry, RunEntry};
use crate::run::write_turn;
use crate::service::{Inner, RunnerService};

/// Stop reason, error kind and message of a run ended by a reaper.
pub const RUNNER_LOST: &str = "runner_lost";
const RUNNER_LOST_MESSAGE: &str = "the runner executing this run stopped unexpectedly";

/// Extra time a forwarded abort waits beyond the owner's own `abort_wait`.
const FORWARD_MARGIN: Duration = Duration::from_millis(500);
/// Forwarded commands handled at once; more wait for a slot.
const MAX_CONCURRENT_COMMANDS: usize = 256;
/// Queue of the control-topic subscriber.
const CONTROL_QUEUE: usize = 256;

/// How a runner takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Unique among live runners (e.g. the pod name); names the control topic
    /// and the owner of each run record.
    pub runner_id: String,
    /// A run whose lease is not renewed for this long is ended by a reaper.
    pub lease: Duration,
    /// How often leases are renewed; `None`: a third of `lease`.
    pub renew_interval: Option<Duration>,
    /// How often this runner looks for runs whose runner died.
    pub reap_interval: Duration,
    /// Runs checked per reaper pass at most.
    pub reap_batch: usize,
    /// Bounds of each run's replay history.
    pub replay: ReplayOptions,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            runner_id: format!("runner-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(10),
            renew_interval: None,
            reap_interval: Duration::from_secs(2),
            reap_batch: 100,
            replay: ReplayOptions::default(),
        }
    }
}

impl ClusterOptions {
    pub(crate) fn renew_every(&self) -> Duration {
        self.renew_interval
            .unwrap_or(self.lease / 3)
            .max(Duration::from_millis(10))
    }
}

/// The cluster part of a runner's state.
pub(crate) struct Cluster {
    pub options: ClusterOptions,
    pub registry: Arc<RedisRegistry>,
    /// Publishes control messages (the Redis bus).
    pub bus: Arc<dyn EventBus>,
    pending: Mutex<HashMap<String, oneshot::Sender<RunnerReply>>>,
}

impl Cluster {
    pub fn new(
        options: ClusterOptions,
        registry: Arc<RedisRegistry>,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        Self {
            options,
            registry,
            bus,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<RunnerReply>>> {
        // A poisoned lock only means a panic mid-update of a plain map.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn send(&self, runner_id: &str, body: runner_control::Body) -> bool {
        let payload = RunnerControl { body: Some(body) }.encode_to_vec();
        match self
            .bus
            .publish(&Topic::runner(runner_id), payload.into())
            .await
        {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, to = runner_id, "runner control message not sent");
                false
            }
        }
    }
}

/// Removes a pending reply slot when the waiting abort gives up.
struct PendingSlot<'a> {
    cluster: &'a Cluster,
    request_id: String,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.cluster.pending().remove(&self.request_id);
    }
}

impl RunnerService {
    /// Asks `owner` to abort the run of `entry` and waits (bounded) for it to
    /// confirm. Returns whether the run ended aborted (or is being aborted).
    pub(crate) async fn forward_abort(
        &self,
        cluster: &Cluster,
        entry: &RunEntry,
        owner: &str,
        reason: &str,
    ) -> bool {
        let info = &entry.info;
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (reply_tx, reply_rx) = oneshot::channel();
        cluster.pending().insert(request_id.clone(), reply_tx);
        let _slot = PendingSlot {
            cluster,
            request_id: request_id.clone(),
        };
        let command = RunnerCommand {
            request_id,
            reply_to: cluster.options.runner_id.clone(),
            command: Some(runner_command::Command::AbortRun(AbortRunCommand {
                tenant_id: info.tenant_id.clone(),
                user_id: info.user_id.clone(),
                session_key: info.session_key.clone(),
                run_id: info.run_id.clone(),
                stop_reason: reason.to_owned(),
            })),
        };
        if cluster
            .send(owner, runner_control::Body::Command(command))
            .await
        {
            let limit = self.inner.config.abort_wait + FORWARD_MARGIN;
            match tokio::time::timeout(limit, reply_rx).await {
                Ok(Ok(reply)) if reply.found => return reply.aborted,
                Ok(Ok(_)) => {}
                _ => tracing::warn!(owner, run_id = %info.run_id, "no answer to a forwarded abort"),
            }
        }
        // No owner answered for the run: its record says how it ended.
        match self
            .inner
            .registry
            .get(&info.tenant_id, &info.user_id, &info.run_id)
            .await
        {
            Ok(Some(now)) => !now.running && now.info.state == RunState::Aborted as i32,
            _ => false,
        }
    }

    /// Serves one command from another runner.
    async fn handle_command(&self, command: RunnerCommand) {
        let Some(runner_command::Command::AbortRun(abort)) = command.command else {
            return;
        };
        let entry = self
            .inner
            .registry
            .local(&abort.tenant_id, &abort.user_id, &abort.run_id)
            .await
            .filter(|entry| entry.info.session_key == abort.session_key);
        let (found, aborted) = match entry {
            Some(entry) => {
                let principal = Principal {
                    tenant_id: abort.tenant_id.clone(),
                    user_id: abort.user_id.clone(),
                    ..Default::default()
                };
                let reason = match abort.stop_reason.as_str() {
                    "" => "rpc",
                    reason => reason,
                };
                (true, self.abort_entry(&principal, &entry, reason).await)
            }
            None => (false, false),
        };
        if let Some(cluster) = &self.inner.cluster {
            let reply = RunnerReply {
                request_id: command.request_id,
                found,
                aborted,
            };
            cluster
                .send(&command.reply_to, runner_control::Body::Reply(reply))
                .await;
        }
    }

    /// One reaper pass: ends every run whose runner stopped renewing its lease.
    pub(crate) async fn reap_once(&self, cluster: &Cluster) {
        let leases = cluster.registry.leases();
        let candidates = match leases.expired(cluster.options.reap_batch).await {
            Ok(candidates) => candidates,
            Err(err) => {
                tracing::debug!(error = %err, "reaper pass skipped");
                return;
            }
        };
        for run in candidates {
            match leases.claim_lost(&run, &cluster.options.runner_id).await {
                Ok(LostRun::Claimed { record, token }) => {
                    tracing::warn!(run_id = %run.run_id, owner = %record.owner, "ending a run whose runner stopped");
                    self.end_lost_run(cluster, record.info, &token).await;
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(error = %err, "reaper claim failed"),
            }
        }
    }

    /// Ends a run whose runner died: error row, record, then the error event.
    async fn end_lost_run(&self, cluster: &Cluster, info: RunInfo, token: &str) {
        let run = RunRef::new(&info.tenant_id, &info.user_id, &info.run_id);
        let history = match self.inner.replay.read_from(&run, 0, 0).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(error = %err, "run history unavailable; ending without partial text");
                Vec::new()
            }
        };
        let last_seq = history.last().map_or(0, |event| event.seq);
        let text = assistant_text(&history).unwrap_or_default();
        let principal = Principal {
            tenant_id: info.tenant_id.clone(),
            user_id: info.user_id.clone(),
            ..Default::default()
        };
        let request = AppendMessageRequest {
            session_key: info.session_key.clone(),
            role: "assistant".to_owned(),
            content: text.clone(),
            run_id: info.run_id.clone(),
            status: MessageStatus::Error as i32,
            error: RUNNER_LOST_MESSAGE.to_owned(),
            agent_id: info.agent_id.clone(),
        };
        write_turn(&self.inner.session, &principal, request).await;

        let ended_at_ms = now_ms();
        let ended = RunInfo {
            state: RunState::Failed as i32,
            ended_at_ms,
            text: text.clone(),
            error: RUNNER_LOST_MESSAGE.to_owned(),
            stop_reason: RUNNER_LOST.to_owned(),
            ..info.clone()
        };
        if let Err(err) = cluster.registry.leases().finish(&ended, token).await {
            tracing::error!(error = %err, run_id = %info.run_id, "lost run's end not recorded");
        }
        let identity = RunIdentity {
            tenant_id: info.tenant_id.clone(),
            user_id: info.user_id.clone(),
            session_key: info.session_key.clone(),
            run_id: info.run_id.clone(),
            agent_id: info.agent_id.clone(),
        };
        let mut publisher = EventPublisher::resume(
            self.inner.replay.clone(),
            identity,
            self.inner.config.publish_timeout,
            last_seq,
        );
        publisher
            .publish(run_event::Kind::Error(LifecycleError {
                started_at_ms: info.started_at_ms,
                ended_at_ms,
                message: RUNNER_LOST_MESSAGE.to_owned(),
                kind: RUNNER_LOST.to_owned(),
                text,
            }))
            .await;
    }
}

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
                service.reap_once(cluster).await;
            }
        },
    ));
    tokio::spawn(serve_control(
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

/// Receives this runner's control topic: commands are served on their own
/// tasks (bounded), replies complete the matching forwarded abort.
async fn serve_control(
    weak: Weak<Inner>,
    stop: CancellationToken,
    mut deliveries: mpsc::Receiver<Delivery>,
    // Keeps the subscription alive.
    _control: Arc<dyn clawgate_runtime::bus::SubscriptionControl>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_COMMANDS));
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return,
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let Ok(message) = RunnerControl::decode(delivery.payload) else {
            tracing::warn!("undecodable runner control message");
            continue;
        };
        let Some(inner) = weak.upgrade() else { return };
        match message.body {
            Some(runner_control::Body::Command(command)) => {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let service = RunnerService { inner };
                tokio::spawn(async move {
                    service.handle_command(command).await;
                    drop(slot);
                });
            }
            Some(runner_control::Body::Reply(reply)) => {
                if let Some(cluster) = &inner.cluster
                    && let Some(waiter) = cluster.pending().remove(&reply.request_id)
                {
                    let _ = waiter.send(reply);
                }
            }
            None => {}
        }
    }
}
