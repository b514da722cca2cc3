//! The control topic of a runner (`Topic::runner(<runner id>)`): commands from
//! other runners (a forwarded abort) are served on their own tasks, at most
//! [`MAX_CONCURRENT_COMMANDS`] at once; replies complete the matching abort
//! this runner forwarded ([`Cluster::forward_abort`]).
//!
//! Invariant: a command is answered (found or not) whenever this runner is
//! alive, so the forwarding runner waits at most its bound.

use std::sync::{Arc, Weak};

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    RunnerCommand, RunnerControl, RunnerReply, runner_command, runner_control,
};
use clawgate_runtime::bus::{Delivery, SubscriptionControl};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::service::{Inner, RunnerService};

/// Forwarded commands handled at once; more wait for a slot.
const MAX_CONCURRENT_COMMANDS: usize = 256;

/// Serves one command from another runner.
async fn handle_command(service: &RunnerService, command: RunnerCommand) {
    let abort = match command.command {
        Some(runner_command::Command::AbortRun(abort)) => abort,
        Some(runner_command::Command::ApprovalDecided(decided)) => {
            service.inner.approvals.woken(&decided.approval_id);
            return;
        }
        None => return,
    };
    let entry = service
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
            (true, service.abort_entry(&principal, &entry, reason).await)
        }
        None => (false, false),
    };
    if let Some(cluster) = &service.inner.cluster {
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

/// Receives this runner's control topic: commands are served on their own
/// tasks (bounded), replies complete the matching forwarded abort.
pub(super) async fn serve_control(
    weak: Weak<Inner>,
    stop: CancellationToken,
    mut deliveries: mpsc::Receiver<Delivery>,
    // Keeps the subscription alive.
    _control: Arc<dyn SubscriptionControl>,
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
                    handle_command(&service, command).await;
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
