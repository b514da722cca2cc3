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
//! This module holds a runner's cluster state (`Cluster`) and forwards
//! aborts; the loops live beside it (`background` starts them; `control`
//! serves the control topic; `reaper` ends lost runs) and are the only part
//! that reaches back into the service.
//!
//! Invariants: every loop ends when the service is shut down or dropped; all
//! waits are bounded; the pending-reply table holds one entry per abort being
//! forwarded right now.

pub(crate) mod background;
mod control;
mod reaper;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clawgate_proto::pb::common::v1::{
    AbortRunCommand, RunnerCommand, RunnerControl, RunnerReply, runner_command, runner_control,
};
use clawgate_proto::runner::RunState;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::replay::ReplayOptions;
use prost::Message as _;
use tokio::sync::oneshot;

use crate::registry::{RedisRegistry, RunEntry, RunRegistry as _};

/// Stop reason, error kind and message of a run ended by a reaper.
pub const RUNNER_LOST: &str = "runner_lost";
const RUNNER_LOST_MESSAGE: &str = "the runner executing this run stopped unexpectedly";

/// Extra time a forwarded abort waits beyond the owner's own `abort_wait`.
const FORWARD_MARGIN: Duration = Duration::from_millis(500);

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

/// The cluster part of a runner's state. `registry` is the service's registry
/// (the same object), typed for lease renewal and the reaper.
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

impl Cluster {
    /// Asks `owner` to abort the run of `entry` and waits (bounded: the
    /// owner's `abort_wait` plus a margin) for it to confirm. Returns whether
    /// the run ended aborted (or is being aborted).
    pub(crate) async fn forward_abort(
        &self,
        entry: &RunEntry,
        owner: &str,
        reason: &str,
        abort_wait: Duration,
    ) -> bool {
        let info = &entry.info;
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.pending().insert(request_id.clone(), reply_tx);
        let _slot = PendingSlot {
            cluster: self,
            request_id: request_id.clone(),
        };
        let command = RunnerCommand {
            request_id,
            reply_to: self.options.runner_id.clone(),
            command: Some(runner_command::Command::AbortRun(AbortRunCommand {
                tenant_id: info.tenant_id.clone(),
                user_id: info.user_id.clone(),
                session_key: info.session_key.clone(),
                run_id: info.run_id.clone(),
                stop_reason: reason.to_owned(),
            })),
        };
        if self
            .send(owner, runner_control::Body::Command(command))
            .await
        {
            let limit = abort_wait + FORWARD_MARGIN;
            match tokio::time::timeout(limit, reply_rx).await {
                Ok(Ok(reply)) if reply.found => return reply.aborted,
                Ok(Ok(_)) => {}
                _ => tracing::warn!(owner, run_id = %info.run_id, "no answer to a forwarded abort"),
            }
        }
        // No owner answered for the run: its record says how it ended.
        match self
            .registry
            .get(&info.tenant_id, &info.user_id, &info.run_id)
            .await
        {
            Ok(Some(now)) => !now.running && now.info.state == RunState::Aborted as i32,
            _ => false,
        }
    }
}
