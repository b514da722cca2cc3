//! Messages one edge sends to the sockets of a tenant on every edge: pairing
//! events on the tenant's topic ([`Topic::tenant`]), and targeted disconnects:
//! a device's disconnect goes to the inbox topic of each pod the device registry
//! lists for it ([`crate::registry`]), or on the tenant's topic when the
//! registry has none (or none is configured, or it cannot be read); a goclaw
//! sender's disconnect and a removed user's disconnect (every socket of the
//! user, [`disconnect_user`]) always go on the tenant's topic.
//!
//! Who sees a pairing event ([`concerns`]): a connection that sees the whole
//! tenant (admin, owner) every one of its tenant; any other connection only
//! those of its own user (each dialect adds its own role or scope rule).
//!
//! Invariants: pairing events are typed ([`PairingEvent`]: what changed, and
//! the request as the auth service reported it); every edge projects them per
//! socket and dialect, and they carry no secret (no token, no key); OpenClaw
//! device requests are shown to OpenClaw connections and goclaw codes and
//! senders to goclaw ones ([`is_goclaw`]);
//! a publish that fails is logged and never fails the call that caused it (the
//! state change already happened; the auth service refuses a revoked credential
//! on the next connect either way).

use std::sync::Arc;

use clawgate_proto::Principal;
use clawgate_proto::auth::PairingRequest;
use clawgate_proto::pb::common::v1::{
    BusMessage, Disconnect, NodePairingEvent, PairingChange, PairingEvent, TranscriptNote,
    bus_message,
};
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use prost::Message as _;

use crate::registry::{DeviceRegistry, inbox_topic};
use crate::state::EdgeState;

/// Close code of a socket whose device was removed or whose token was rotated or
/// revoked (OpenClaw §1.5).
pub const CLOSE_DEVICE_REMOVED: u16 = 4001;
/// Close reason of [`CLOSE_DEVICE_REMOVED`] (OpenClaw §1.5, for remove, rotate and revoke).
pub const DEVICE_REMOVED: &str = "device removed";
/// Close reason of the sockets of a user removed from its tenant (code
/// [`CLOSE_DEVICE_REMOVED`], as for any revoked credential).
pub const USER_REMOVED: &str = "user removed";
/// Close reason of the sockets of a disabled tenant (code 4001).
pub const TENANT_DISABLED: &str = "tenant disabled";

pub const PAIR_REQUESTED: &str = "device.pair.requested";
pub const PAIR_RESOLVED: &str = "device.pair.resolved";

/// The wire name of a pairing event.
pub fn event_name(event: &PairingEvent) -> &'static str {
    if event.change == PairingChange::Requested as i32 {
        PAIR_REQUESTED
    } else {
        PAIR_RESOLVED
    }
}

/// How a pairing request was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Rejected,
}

impl From<Decision> for PairingChange {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Approved => Self::Approved,
            Decision::Rejected => Self::Rejected,
        }
    }
}

/// Whether `request` is a goclaw pairing code or sender (not an OpenClaw
/// device request): goclaw connections see those, OpenClaw ones devices.
pub fn is_goclaw(request: &PairingRequest) -> bool {
    !request.pairing_code.is_empty() || !request.sender_id.is_empty()
}

fn pairing_event(request: PairingRequest, change: PairingChange) -> PairingEvent {
    PairingEvent {
        tenant_id: request.tenant_id.clone(),
        ts_ms: now_ms(),
        user_id: request.user_id.clone(),
        change: change as i32,
        request: Some(request),
    }
}

/// Whether a connection of `principal` may see pairing `event` (besides its
/// dialect's role or scope rule): one of its tenant, and, unless it sees the
/// whole tenant, one of its own user.
pub fn concerns(event: &PairingEvent, principal: &Principal) -> bool {
    event.tenant_id == principal.tenant_id
        && (principal.sees_tenant()
            || (!event.user_id.is_empty() && event.user_id == principal.user_id))
}

/// Whether `disconnect` closes every socket of `principal`'s user (its user
/// was removed, or its whole tenant was disabled).
pub fn targets_user(disconnect: &Disconnect, principal: &Principal) -> bool {
    disconnect.tenant_id == principal.tenant_id
        && (disconnect.whole_tenant
            || (!disconnect.user_id.is_empty() && disconnect.user_id == principal.user_id))
}

/// `device.pair.requested` for a newly created request.
pub fn requested(request: &PairingRequest) -> PairingEvent {
    pairing_event(request.clone(), PairingChange::Requested)
}

/// `device.pair.resolved` for a request approved or rejected.
pub fn resolved(request: &PairingRequest, decision: Decision) -> PairingEvent {
    pairing_event(request.clone(), decision.into())
}

/// `device.pair.resolved` for a goclaw sender unpaired (of no known user).
pub fn sender_revoked(tenant_id: &str, sender_id: &str, channel: &str) -> PairingEvent {
    let request = PairingRequest {
        tenant_id: tenant_id.to_owned(),
        sender_id: sender_id.to_owned(),
        channel: channel.to_owned(),
        ..Default::default()
    };
    pairing_event(request, PairingChange::Revoked)
}

/// Closes every socket of `device_id` (of `role` only, unless empty) with 4001.
pub fn disconnect_device(tenant_id: &str, device_id: &str, role: &str) -> Disconnect {
    Disconnect {
        tenant_id: tenant_id.to_owned(),
        device_id: device_id.to_owned(),
        role: role.to_owned(),
        close_code: u32::from(CLOSE_DEVICE_REMOVED),
        close_reason: DEVICE_REMOVED.to_owned(),
        ..Default::default()
    }
}

/// Closes every goclaw socket paired as (`sender_id`, `channel`).
pub fn disconnect_sender(tenant_id: &str, sender_id: &str, channel: &str) -> Disconnect {
    Disconnect {
        tenant_id: tenant_id.to_owned(),
        sender_id: sender_id.to_owned(),
        channel: channel.to_owned(),
        close_code: u32::from(CLOSE_DEVICE_REMOVED),
        close_reason: DEVICE_REMOVED.to_owned(),
        ..Default::default()
    }
}

/// Closes every socket of `user_id` in `tenant_id` with 4001 (the user was
/// removed from the tenant).
pub fn disconnect_user(tenant_id: &str, user_id: &str) -> Disconnect {
    Disconnect {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        close_code: u32::from(CLOSE_DEVICE_REMOVED),
        close_reason: USER_REMOVED.to_owned(),
        ..Default::default()
    }
}

/// Closes every socket of `tenant_id` with 4001 (the tenant was disabled).
pub fn disconnect_tenant(tenant_id: &str) -> Disconnect {
    Disconnect {
        tenant_id: tenant_id.to_owned(),
        whole_tenant: true,
        close_code: u32::from(CLOSE_DEVICE_REMOVED),
        close_reason: TENANT_DISABLED.to_owned(),
        ..Default::default()
    }
}

/// One message for the tenant topic.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Pairing(Box<PairingEvent>),
    Disconnect(Disconnect),
    /// A transcript note, for the sockets that see its user's runs.
    Note(TranscriptNote),
    /// A node pairing request created or resolved.
    NodePairing(Box<NodePairingEvent>),
}

impl Notice {
    fn tenant_id(&self) -> &str {
        match self {
            Self::Pairing(event) => &event.tenant_id,
            Self::Disconnect(disconnect) => &disconnect.tenant_id,
            Self::Note(note) => &note.tenant_id,
            Self::NodePairing(event) => &event.tenant_id,
        }
    }

    fn into_body(self) -> bus_message::Body {
        match self {
            Self::Pairing(event) => bus_message::Body::PairingEvent(*event),
            Self::Disconnect(disconnect) => bus_message::Body::Disconnect(disconnect),
            Self::Note(note) => bus_message::Body::TranscriptNote(note),
            Self::NodePairing(event) => bus_message::Body::NodePairingEvent(*event),
        }
    }
}

impl From<PairingEvent> for Notice {
    fn from(event: PairingEvent) -> Self {
        Self::Pairing(Box::new(event))
    }
}

impl From<NodePairingEvent> for Notice {
    fn from(event: NodePairingEvent) -> Self {
        Self::NodePairing(Box::new(event))
    }
}

impl From<Disconnect> for Notice {
    fn from(disconnect: Disconnect) -> Self {
        Self::Disconnect(disconnect)
    }
}

/// The topics a notice goes to: the inboxes of the pods holding the targeted
/// device, else the tenant's topic.
async fn topics_of(notice: &Notice, devices: Option<&Arc<dyn DeviceRegistry>>) -> Vec<Topic> {
    if let Notice::Note(note) = notice {
        return vec![
            Topic::user(&note.tenant_id, &note.user_id),
            Topic::tenant_runs(&note.tenant_id),
        ];
    }
    let tenant = vec![Topic::tenant(notice.tenant_id())];
    let (Notice::Disconnect(disconnect), Some(devices)) = (notice, devices) else {
        return tenant;
    };
    if disconnect.device_id.is_empty() || !disconnect.user_id.is_empty() {
        return tenant;
    }
    match devices
        .pods(&disconnect.tenant_id, &disconnect.device_id)
        .await
    {
        Ok(pods) if !pods.is_empty() => pods.iter().map(|pod| inbox_topic(pod)).collect(),
        Ok(_) => tenant,
        Err(err) => {
            tracing::debug!(error = %err, "device registry unreadable: tenant topic");
            tenant
        }
    }
}

/// Publishes `notices` in order (see the module doc for the topics). Failures
/// are logged.
pub async fn publish(
    bus: &dyn EventBus,
    devices: Option<&Arc<dyn DeviceRegistry>>,
    notices: Vec<Notice>,
) {
    let mut messages: Vec<(Topic, bytes::Bytes)> = Vec::with_capacity(notices.len());
    for notice in notices {
        if notice.tenant_id().is_empty() {
            continue;
        }
        let topics = topics_of(&notice, devices).await;
        let message = BusMessage {
            body: Some(notice.into_body()),
        };
        let payload: bytes::Bytes = message.encode_to_vec().into();
        messages.extend(topics.into_iter().map(|topic| (topic, payload.clone())));
    }
    if messages.is_empty() {
        return;
    }
    if let Err(err) = bus.publish_many(messages).await {
        tracing::warn!(error = %err, "cannot publish pairing notices");
    }
}

/// [`publish`] on its own task (after a response was queued).
pub fn publish_in_background(state: &EdgeState, notices: Vec<Notice>) {
    if notices.is_empty() {
        return;
    }
    let bus = state.services.bus.clone();
    let devices = state.services.devices.clone();
    tokio::spawn(async move { publish(bus.as_ref(), devices.as_ref(), notices).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(user: &str, role: &str) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: user.into(),
            role: role.into(),
            ..Default::default()
        }
    }

    #[test]
    fn pairing_events_concern_admins_and_their_own_user() {
        let request = PairingRequest {
            request_id: "r1".into(),
            tenant_id: "t".into(),
            device_id: "d1".into(),
            user_id: "alice".into(),
            ..Default::default()
        };
        let event = requested(&request);
        assert_eq!(event.user_id, "alice");
        assert!(concerns(&event, &principal("alice", "operator")));
        assert!(!concerns(&event, &principal("bob", "operator")));
        assert!(concerns(&event, &principal("bob", "admin")));
        assert!(concerns(&event, &principal("bob", "owner")));
        let mut scoped_admin = principal("bob", "operator");
        scoped_admin.scopes = vec!["operator.admin".into()];
        assert!(concerns(&event, &scoped_admin));
        let mut elsewhere = principal("alice", "admin");
        elsewhere.tenant_id = "other".into();
        assert!(!concerns(&event, &elsewhere));
        // An event of no known user is for admins only.
        let anonymous = sender_revoked("t", "s", "browser");
        assert!(!concerns(&anonymous, &principal("alice", "operator")));
        assert!(concerns(&anonymous, &principal("bob", "admin")));
        assert_eq!(resolved(&request, Decision::Approved).user_id, "alice");
    }

    #[test]
    fn a_user_disconnect_targets_every_socket_of_that_user() {
        let disconnect = disconnect_user("t", "alice");
        assert_eq!(
            (disconnect.close_code, disconnect.close_reason.as_str()),
            (4001, USER_REMOVED)
        );
        assert!(targets_user(&disconnect, &principal("alice", "admin")));
        assert!(!targets_user(&disconnect, &principal("bob", "admin")));
        assert!(!targets_user(
            &disconnect_device("t", "d1", ""),
            &principal("alice", "operator")
        ));
        let tenant = disconnect_tenant("t");
        assert!(targets_user(&tenant, &principal("alice", "operator")));
        assert!(targets_user(&tenant, &principal("bob", "admin")));
        let mut elsewhere = principal("alice", "admin");
        elsewhere.tenant_id = "other".into();
        assert!(!targets_user(&tenant, &elsewhere));
    }

    #[tokio::test]
    async fn notices_reach_the_tenant_topic() {
        use clawgate_runtime::bus::memory::MemoryBus;
        let bus = MemoryBus::new();
        let mut subscriber = bus.subscriber(8).await.expect("subscriber");
        subscriber
            .control
            .subscribe(&Topic::tenant("t"))
            .await
            .expect("subscribe");
        let notices = vec![
            Notice::from(disconnect_device("t", "d1", "operator")),
            Notice::from(disconnect_device("", "d2", "")),
        ];
        publish(&bus, None, notices).await;
        let delivery = subscriber.deliveries.recv().await.expect("delivery");
        assert_eq!(delivery.topic, Topic::tenant("t"));
        let message = BusMessage::decode(delivery.payload).expect("decode");
        let Some(bus_message::Body::Disconnect(d)) = message.body else {
            panic!("not a disconnect");
        };
        assert_eq!((d.device_id.as_str(), d.close_code), ("d1", 4001));
    }
}
