//! The event bus: how run events get from the process that produces them (a runner)
//! to every edge process holding a socket that may see them.
//!
//! Routing: a message is published on a [`Topic`]. Each process opens one
//! [`Subscriber`] and subscribes it to the topics its sockets care about; the bus
//! delivers a message only to subscribers of its topic. Run events go to the topic of
//! the run's tenant and user ([`Topic::user`]) and to the run topic of its tenant
//! ([`Topic::tenant_runs`]): an edge process receives a run's events only while it
//! holds a socket of that user, or a socket that sees the whole tenant (an admin
//! or owner, which subscribes the tenant's run topic instead of its user topic).
//!
//! Guarantees (both implementations, checked by one behaviour suite):
//! - messages of one publisher on one topic arrive in publish order;
//! - a subscriber receives messages published after its `subscribe` returned;
//! - queues are bounded: a subscriber that does not drain its deliveries slows its
//!   publishers (in-process) or is dropped and resubscribed by the broker (Redis),
//!   it never grows memory without bound.
//!
//! Delivery is at most once, as with Redis pub/sub.

pub mod memory;
pub mod redis;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Where a message is published. Topic names are plain ASCII and contain no
/// whitespace; tenant and user ids are percent-free identifiers chosen by clawgate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

impl Topic {
    /// Events visible to one user of one tenant.
    pub fn user(tenant_id: &str, user_id: &str) -> Self {
        Self(format!("user.{tenant_id}.{user_id}"))
    }

    /// Messages for every connection of one tenant that may see them (pairing
    /// events, targeted disconnects); the receiving edge filters per socket.
    pub fn tenant(tenant_id: &str) -> Self {
        Self(format!("tenant.{tenant_id}"))
    }

    /// Run events of every user of one tenant, for the sockets that see the
    /// whole tenant (admins and owners). Runners publish each run event here as
    /// well as on [`Topic::user`]; with no admin socket connected nobody subscribes.
    pub fn tenant_runs(tenant_id: &str) -> Self {
        Self(format!("runs.{tenant_id}"))
    }

    /// Commands addressed to one runner process (e.g. an abort forwarded by
    /// another runner) and the replies to commands it sent. Each runner of a
    /// cluster subscribes to its own topic.
    pub fn runner(runner_id: &str) -> Self {
        Self(format!("runner.{runner_id}"))
    }

    pub fn from_name(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message as a subscriber receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub topic: Topic,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached; the caller should report `UNAVAILABLE`.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("event bus closed")]
    Closed,
}

/// Opening the handle fails like the bus: a bad URL or prefix is `Unavailable`
/// too (the bus has no configuration error).
impl From<crate::redis::ConnectError> for BusError {
    fn from(err: crate::redis::ConnectError) -> Self {
        match err {
            crate::redis::ConnectError::InvalidConfig(reason) => Self::Unavailable(reason.into()),
            crate::redis::ConnectError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

impl From<BusError> for clawgate_proto::ServiceError {
    fn from(err: BusError) -> Self {
        tracing::warn!(error = %err, "event bus error");
        clawgate_proto::ServiceError::unavailable("event bus unavailable")
    }
}

/// Publishes messages and opens subscribers.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes one message.
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError>;

    /// Publishes several messages in order, in one round trip where the broker
    /// allows it.
    async fn publish_many(&self, messages: Vec<(Topic, Bytes)>) -> Result<(), BusError> {
        for (topic, payload) in messages {
            self.publish(&topic, payload).await?;
        }
        Ok(())
    }

    /// Opens a subscriber whose deliveries queue holds at most `capacity` messages.
    async fn subscriber(&self, capacity: usize) -> Result<Subscriber, BusError>;

    /// How many subscribers `topic` has right now. A process that dies drops
    /// its subscriptions with its connection, so a pod's inbox topic without
    /// listeners means the pod is gone (used to fail calls waiting on it).
    async fn listeners(&self, topic: &Topic) -> Result<usize, BusError>;
}

/// Changes what a subscriber receives. Cheap to clone.
#[async_trait]
pub trait SubscriptionControl: Send + Sync + 'static {
    /// Starts delivery of `topic`; returns once the broker has confirmed.
    async fn subscribe(&self, topic: &Topic) -> Result<(), BusError>;
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), BusError>;
}

/// One process's view of the bus: a control handle and the stream of deliveries.
pub struct Subscriber {
    pub control: Arc<dyn SubscriptionControl>,
    pub deliveries: mpsc::Receiver<Delivery>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}
