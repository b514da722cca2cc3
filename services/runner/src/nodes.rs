//! The nodes a runner's agents may use (phones and hosts connected to some
//! edge): where the runner reads them ([`NodeRegistry`]), how it calls them
//! ([`Invoker`]), and the reply topic on which their answers come back.
//!
//! What it owns: the runner's [`Nodes`] handle (built by
//! [`crate::RunnerBuilder::nodes`]) and the loop that reads the runner's own
//! reply topic (`nodes.<runner id>`; in-process a fresh unique id): every
//! `NodeInvokeResult` there is handed to [`Invoker::complete`]. An invoke
//! publishes its request on the holding edge pod's inbox topic naming this
//! reply topic, and the edge answers there. How a node looks to a run (which
//! of a user's nodes, picked by id or name) is here too; the tools built on it
//! are `crate::tools::node_commands` and `crate::tools::exec_node`.
//!
//! Invariants:
//! - the reply topic is subscribed (confirmed by the bus) before the runner
//!   is built, so no answer to a call of this runner is published before
//!   anyone listens;
//! - the reply loop ends when the runner shuts down or is dropped (its stop
//!   token), and never blocks on a call: completing one is a map removal;
//! - a run only ever sees live nodes of its own user ([`Nodes::live`]), and
//!   every call it makes names that user as the owner, so the invoker refuses
//!   another user's node even if one were named.

use std::sync::Arc;

use clawgate_proto::ServiceError;
use clawgate_proto::pb::common::v1::{BusMessage, bus_message};
use clawgate_runtime::bus::{Delivery, EventBus, SubscriptionControl, Topic};
use clawgate_runtime::clock::now_ms;
use clawgate_runtime::nodes::invoker::{InvokeCall, InvokeError, Invoked, Invoker};
use clawgate_runtime::nodes::{NodeRecord, NodeRegistry};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Queue of the reply-topic subscriber.
const REPLY_QUEUE: usize = 256;

/// The reply topic of the runner `runner_id`.
pub(crate) fn reply_topic(runner_id: &str) -> Topic {
    Topic::from_name(format!("nodes.{runner_id}"))
}

/// A runner's access to nodes. Cheap to share.
pub(crate) struct Nodes {
    registry: Arc<dyn NodeRegistry>,
    invoker: Invoker,
}

/// The reply topic's subscription, waiting for [`Replies::serve`].
pub(crate) struct Replies {
    invoker: Invoker,
    deliveries: mpsc::Receiver<Delivery>,
    /// Keeps the subscription alive.
    _control: Arc<dyn SubscriptionControl>,
}

impl Nodes {
    /// Subscribes `reply_topic` on `bus` (confirmed when this returns) and
    /// builds the invoker whose calls are answered there.
    pub(crate) async fn listen(
        bus: Arc<dyn EventBus>,
        registry: Arc<dyn NodeRegistry>,
        reply_topic: Topic,
    ) -> Result<(Arc<Self>, Replies), ServiceError> {
        let subscriber = bus.subscriber(REPLY_QUEUE).await?;
        subscriber.control.subscribe(&reply_topic).await?;
        let invoker = Invoker::new(bus, registry.clone(), reply_topic);
        let replies = Replies {
            invoker: invoker.clone(),
            deliveries: subscriber.deliveries,
            _control: subscriber.control,
        };
        Ok((Arc::new(Self { registry, invoker }), replies))
    }

    /// The live nodes of `user_id` (one registry read), by node id.
    pub(crate) async fn live(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<NodeRecord>, ServiceError> {
        let now = now_ms();
        let mut nodes: Vec<NodeRecord> = self
            .registry
            .list(tenant_id)
            .await?
            .into_iter()
            .filter(|node| node.is_live(now) && node.user_id == user_id)
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// Calls a node (see [`Invoker::invoke`]).
    pub(crate) async fn invoke(&self, call: InvokeCall) -> Result<Invoked, InvokeError> {
        self.invoker.invoke(call).await
    }
}

impl Replies {
    /// Reads the reply topic on a task of its own until `stop`.
    pub(crate) fn spawn(self, stop: CancellationToken) {
        tokio::spawn(self.serve(stop));
    }

    async fn serve(mut self, stop: CancellationToken) {
        loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => return,
                delivery = self.deliveries.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            match BusMessage::decode(delivery.payload).map(|message| message.body) {
                Ok(Some(bus_message::Body::NodeInvokeResult(result))) => {
                    self.invoker.complete(result);
                }
                Ok(_) => tracing::debug!("unexpected message on the node reply topic"),
                Err(_) => tracing::warn!("undecodable message on the node reply topic"),
            }
        }
    }
}

/// `Name (id)`, or the id alone for a node without a name.
pub(crate) fn label(node: &NodeRecord) -> String {
    let name: String = node.display_name.trim().chars().take(64).collect();
    if name.is_empty() || name == node.node_id {
        node.node_id.clone()
    } else {
        format!("{name:?} (id {})", node.node_id)
    }
}

/// The labels of `nodes`, comma-separated.
pub(crate) fn labels(nodes: &[&NodeRecord]) -> String {
    nodes
        .iter()
        .map(|n| label(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The node of `candidates` that `wanted` names (an id, else a display name,
/// exact, then ignoring case), or the only candidate when `wanted` is `None`;
/// otherwise why not, naming the candidates. `what` says what the candidates
/// offer (e.g. "camera.snap").
pub(crate) fn pick<'a>(
    candidates: &[&'a NodeRecord],
    wanted: Option<&str>,
    what: &str,
) -> Result<&'a NodeRecord, String> {
    let wanted = wanted.map(str::trim).filter(|w| !w.is_empty());
    let Some(wanted) = wanted else {
        return match candidates {
            [] => Err(format!("no connected node of yours offers {what}")),
            [only] => Ok(only),
            several => Err(format!(
                "several of your nodes offer {what}; name one with `node` (its id or name): {}",
                labels(several)
            )),
        };
    };
    if let Some(node) = candidates.iter().find(|n| n.node_id == wanted) {
        return Ok(node);
    }
    let named = |exact: bool| -> Vec<&'a NodeRecord> {
        candidates
            .iter()
            .copied()
            .filter(|n| {
                let name = n.display_name.trim();
                if exact {
                    name == wanted
                } else {
                    name.eq_ignore_ascii_case(wanted)
                }
            })
            .collect()
    };
    let mut matches = named(true);
    if matches.is_empty() {
        matches = named(false);
    }
    match matches.as_slice() {
        [only] => Ok(only),
        [] if candidates.is_empty() => Err(format!(
            "no connected node of yours named {wanted:?} offers {what} (none does)"
        )),
        [] => Err(format!(
            "no connected node of yours named {wanted:?} offers {what}; nodes offering it: {}",
            labels(candidates)
        )),
        several => Err(format!(
            "several nodes are named {wanted:?}; name one by id: {}",
            labels(several)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, name: &str) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            display_name: name.into(),
            ..NodeRecord::default()
        }
    }

    #[test]
    fn a_node_is_picked_by_id_then_name() {
        let (a, b, c) = (
            node("n1", "Phone"),
            node("n2", "Laptop"),
            node("n3", "phone"),
        );
        let all = [&a, &b, &c];
        assert_eq!(
            pick(&all, Some("n2"), "x").map(|n| &n.node_id),
            Ok(&b.node_id)
        );
        assert_eq!(
            pick(&all, Some("Laptop"), "x").map(|n| &n.node_id),
            Ok(&b.node_id)
        );
        assert_eq!(
            pick(&all, Some("laptop"), "x").map(|n| &n.node_id),
            Ok(&b.node_id)
        );
        // An exact name wins over names that only differ in case.
        assert_eq!(
            pick(&all, Some("phone"), "x").map(|n| &n.node_id),
            Ok(&c.node_id)
        );
        let err = pick(&all, Some("PHONE"), "x").expect_err("ambiguous");
        assert!(err.contains("several nodes are named"), "{err}");
        let err = pick(&all, None, "camera.snap").expect_err("several");
        assert!(err.contains("n1") && err.contains("n3"), "{err}");
        let err = pick(&all, Some("tablet"), "camera.snap").expect_err("unknown");
        assert!(err.contains("\"tablet\"") && err.contains("n2"), "{err}");
        assert_eq!(pick(&[&a], None, "x").map(|n| &n.node_id), Ok(&a.node_id));
        assert!(pick(&[], None, "x").is_err());
        assert_eq!(label(&node("n9", "")), "n9");
        assert_eq!(label(&a), "\"Phone\" (id n1)");
    }
}
