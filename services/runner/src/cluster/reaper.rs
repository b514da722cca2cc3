//! The reaper: every `reap_interval`, runs whose lease deadline passed are
//! checked; for each whose lease is really gone while its record still says
//! running, one runner wins the end claim and ends it (error row with the
//! partial text rebuilt from the run's history, record marked failed, then the
//! `error` event of kind [`RUNNER_LOST`] after the last `seq` in the history).
//!
//! Invariant: a lost run is ended by exactly one runner (the end claim), and
//! its terminal event follows every event its history holds.

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{LifecycleError, run_event};
use clawgate_proto::run_events::assistant_text;
use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_proto::session::{AppendMessageRequest, MessageStatus};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::lease::{HeldLease, LostRun};
use clawgate_runtime::replay::RunRef;

use super::{Cluster, RUNNER_LOST, RUNNER_LOST_MESSAGE};
use crate::context::{LOST_RUN_PART, write_turn};
use crate::events::{EventPublisher, RunIdentity};
use crate::service::RunnerService;

/// One reaper pass: ends every run whose runner stopped renewing its lease.
pub(super) async fn reap_once(service: &RunnerService, cluster: &Cluster) {
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
                end_lost_run(service, cluster, record.info, &token).await;
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "reaper claim failed"),
        }
    }
}

/// Ends a run whose runner died: error row, record, then the error event.
async fn end_lost_run(service: &RunnerService, cluster: &Cluster, info: RunInfo, token: &str) {
    let run = RunRef::new(&info.tenant_id, &info.user_id, &info.run_id);
    let history = match service.inner.replay.read_from(&run, 0, 0).await {
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
        // Past any part the run wrote itself (its tool-loop steps).
        part: LOST_RUN_PART,
        ..Default::default()
    };
    write_turn(&service.inner.session, &principal, request).await;

    let ended_at_ms = now_ms();
    let ended = RunInfo {
        state: RunState::Failed as i32,
        ended_at_ms,
        text: text.clone(),
        error: RUNNER_LOST_MESSAGE.to_owned(),
        stop_reason: RUNNER_LOST.to_owned(),
        ..info.clone()
    };
    let lease = HeldLease {
        run: run.clone(),
        session_key: info.session_key.clone(),
        token: token.to_owned(),
    };
    if let Err(err) = cluster.registry.leases().finish(&lease, &ended).await {
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
        service.inner.replay.clone(),
        identity,
        service.inner.config.publish_timeout,
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
