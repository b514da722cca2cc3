//! What the session service tells the rest of the system about its changes:
//! one [`SessionChange`] per committed change (a session created, labelled,
//! reset or deleted; a message appended), on the bus topics of the user's run
//! events ([`Topic::user`] and [`Topic::tenant_runs`]), so exactly the sockets
//! that see that user's runs receive it and each receives it once.
//!
//! Invariants: a change is published only after its transaction committed, and
//! only when something changed (an idempotent replay of an append, or an
//! ensure of an existing session, publishes nothing); publishing neither fails
//! nor delays the call: changes wait in a bounded queue ([`QUEUE_CAPACITY`],
//! beyond which one is dropped and logged) that one task publishes in order,
//! giving a stalled bus [`PUBLISH_TIMEOUT`] per change (the change is durable;
//! a lost event only delays a client's view until its next read). Without a
//! bus (a bare service in tests) nothing is published.

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{BusMessage, SessionChange, bus_message};
use clawgate_proto::session::{Session, TranscriptMessage};
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use prost::Message as _;
use tokio::sync::mpsc;

/// How long one publish may take before it is given up (and logged).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session changed, as [`SessionChange::reason`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Create,
    Patch,
    Reset,
    /// A reset asked for as a new session (OpenClaw `/new`).
    New,
    Delete,
    Message,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Patch => "patch",
            Self::Reset => "reset",
            Self::New => "new",
            Self::Delete => "delete",
            Self::Message => "message",
        }
    }
}

/// The change of `session` for `reason` (with the appended `message`).
pub fn change(
    reason: Reason,
    session: &Session,
    message: Option<&TranscriptMessage>,
) -> SessionChange {
    SessionChange {
        tenant_id: session.tenant_id.clone(),
        user_id: session.user_id.clone(),
        session_key: session.session_key.clone(),
        agent_id: session.agent_id.clone(),
        reason: reason.as_str().to_owned(),
        ts_ms: now_ms(),
        session: Some(session.clone()),
        message: message.cloned(),
    }
}

/// Changes waiting for the bus; beyond this a change is dropped (and logged).
pub const QUEUE_CAPACITY: usize = 1024;

/// Publishes session changes on the bus, if there is one. Cheap to clone.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    queue: Option<mpsc::Sender<SessionChange>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("bus", &self.queue.is_some())
            .finish()
    }
}

impl ChangeFeed {
    /// A feed onto `bus`: one task (on the current runtime) publishes the
    /// queued changes in order; it ends once every clone of the feed is gone.
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        let (queue, changes) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(drain(bus, changes));
        Self { queue: Some(queue) }
    }

    /// Queues `change` for the bus without waiting for it; a full queue drops
    /// it (logged): the change is durable, only its event is lost.
    pub fn publish(&self, change: SessionChange) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(change)) = queue.try_send(change) {
            tracing::warn!(reason = %change.reason, "session change dropped: the bus is behind");
        }
    }
}

/// Publishes each queued change on its user's run topics, in order.
async fn drain(bus: Arc<dyn EventBus>, mut changes: mpsc::Receiver<SessionChange>) {
    while let Some(change) = changes.recv().await {
        let topics = [
            Topic::user(&change.tenant_id, &change.user_id),
            Topic::tenant_runs(&change.tenant_id),
        ];
        let reason = change.reason.clone();
        let payload: bytes::Bytes = BusMessage {
            body: Some(bus_message::Body::SessionChange(change)),
        }
        .encode_to_vec()
        .into();
        let messages = topics
            .into_iter()
            .map(|topic| (topic, payload.clone()))
            .collect();
        match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish_many(messages)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, %reason, "session change publish failed"),
            Err(_) => tracing::warn!(%reason, "session change publish timed out"),
        }
    }
}
