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
//! Invariants: payloads are rendered here, once, per dialect (OpenClaw §3.4/§3.6,
//! goclaw notes §2.6), and carry no secret (no token, no key); OpenClaw device
//! requests are shown to OpenClaw connections and goclaw codes to goclaw ones;
//! a publish that fails is logged and never fails the call that caused it (the
//! state change already happened; the auth service refuses a revoked credential
//! on the next connect either way).

use std::sync::Arc;

use clawgate_proto::Principal;
use clawgate_proto::auth::PairingRequest;
use clawgate_proto::pb::common::v1::{BusMessage, Disconnect, PairingEvent, bus_message};
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::registry::{DeviceRegistry, inbox_topic};
use crate::server::EdgeState;

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

/// The static name of a pairing event, `None` for anything else.
pub fn event_name(name: &str) -> Option<&'static str> {
    match name {
        PAIR_REQUESTED => Some(PAIR_REQUESTED),
        PAIR_RESOLVED => Some(PAIR_RESOLVED),
        _ => None,
    }
}

/// How a pairing request was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    fn openclaw(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    fn goclaw(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "denied",
        }
    }
}

/// Whether `request` is a goclaw pairing code (not an OpenClaw device request).
fn is_code(request: &PairingRequest) -> bool {
    !request.pairing_code.is_empty()
}

fn put_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), json!(value));
    }
}

/// The OpenClaw pending request object (§3.4): the `device.pair.requested`
/// payload and an entry of `device.pair.list`'s `pending`.
pub fn openclaw_pending(request: &PairingRequest) -> Value {
    let mut map = Map::new();
    map.insert("requestId".into(), json!(request.request_id));
    map.insert("deviceId".into(), json!(request.device_id));
    map.insert("publicKey".into(), json!(request.public_key));
    put_str(&mut map, "displayName", &request.display_name);
    put_str(&mut map, "platform", &request.platform);
    put_str(&mut map, "deviceFamily", &request.device_family);
    put_str(&mut map, "clientId", &request.client_id);
    put_str(&mut map, "clientMode", &request.client_mode);
    put_str(&mut map, "role", &request.role);
    if !request.roles.is_empty() {
        map.insert("roles".into(), json!(request.roles));
    }
    map.insert("scopes".into(), json!(request.scopes));
    put_str(&mut map, "remoteIp", &request.remote_ip);
    map.insert("silent".into(), json!(false));
    let repair = !request.reason.is_empty() && request.reason != "not-paired";
    map.insert("isRepair".into(), json!(repair));
    map.insert("ts".into(), json!(request.created_at_ms));
    Value::Object(map)
}

/// A goclaw pending code as `device.pair.requested` and `device.pair.list` show it.
pub fn goclaw_pending(request: &PairingRequest) -> Value {
    json!({
        "code": request.pairing_code,
        "sender_id": request.sender_id,
        "channel": request.channel,
        "chat_id": request.chat_id,
        "account_id": request.account_id,
        "created_at": request.created_at_ms,
        "expires_at": request.expires_at_ms,
    })
}

fn pairing_event(
    tenant_id: &str,
    event: &str,
    openclaw: Option<Value>,
    goclaw: Option<Value>,
) -> PairingEvent {
    PairingEvent {
        tenant_id: tenant_id.to_owned(),
        event: event.to_owned(),
        openclaw_payload_json: openclaw.map(|v| v.to_string()).unwrap_or_default(),
        goclaw_payload_json: goclaw.map(|v| v.to_string()).unwrap_or_default(),
        ts_ms: now_ms(),
        user_id: String::new(),
    }
}

/// `event` marked as concerning `request`'s user.
fn of_user(mut event: PairingEvent, request: &PairingRequest) -> PairingEvent {
    request.user_id.clone_into(&mut event.user_id);
    event
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
    let event = if is_code(request) {
        pairing_event(
            &request.tenant_id,
            PAIR_REQUESTED,
            None,
            Some(goclaw_pending(request)),
        )
    } else {
        pairing_event(
            &request.tenant_id,
            PAIR_REQUESTED,
            Some(openclaw_pending(request)),
            None,
        )
    };
    of_user(event, request)
}

/// `device.pair.resolved` for a request approved or rejected.
pub fn resolved(request: &PairingRequest, decision: Decision) -> PairingEvent {
    let event = if is_code(request) {
        let goclaw = json!({
            "action": decision.goclaw(),
            "code": request.pairing_code,
            "sender_id": request.sender_id,
            "channel": request.channel,
        });
        pairing_event(&request.tenant_id, PAIR_RESOLVED, None, Some(goclaw))
    } else {
        let openclaw = json!({
            "requestId": request.request_id,
            "deviceId": request.device_id,
            "decision": decision.openclaw(),
            "ts": now_ms(),
        });
        pairing_event(&request.tenant_id, PAIR_RESOLVED, Some(openclaw), None)
    };
    of_user(event, request)
}

/// goclaw `device.pair.resolved {action:"revoked"}` for a sender unpaired.
pub fn sender_revoked(tenant_id: &str, sender_id: &str, channel: &str) -> PairingEvent {
    let goclaw = json!({ "action": "revoked", "sender_id": sender_id, "channel": channel });
    pairing_event(tenant_id, PAIR_RESOLVED, None, Some(goclaw))
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
    Pairing(PairingEvent),
    Disconnect(Disconnect),
}

impl Notice {
    fn tenant_id(&self) -> &str {
        match self {
            Self::Pairing(event) => &event.tenant_id,
            Self::Disconnect(disconnect) => &disconnect.tenant_id,
        }
    }

    fn into_body(self) -> bus_message::Body {
        match self {
            Self::Pairing(event) => bus_message::Body::PairingEvent(event),
            Self::Disconnect(disconnect) => bus_message::Body::Disconnect(disconnect),
        }
    }
}

impl From<PairingEvent> for Notice {
    fn from(event: PairingEvent) -> Self {
        Self::Pairing(event)
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

/// Parses a payload rendered by this module; `None` when empty or not an object.
pub fn payload(json: &str) -> Option<Value> {
    if json.is_empty() {
        return None;
    }
    serde_json::from_str::<Value>(json)
        .ok()
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_request() -> PairingRequest {
        PairingRequest {
            request_id: "r1".into(),
            tenant_id: "t".into(),
            device_id: "d1".into(),
            public_key: "pk".into(),
            platform: "linux".into(),
            client_id: "cli".into(),
            role: "operator".into(),
            roles: vec!["operator".into()],
            scopes: vec!["operator.read".into()],
            reason: "not-paired".into(),
            created_at_ms: 5,
            ..Default::default()
        }
    }

    #[test]
    fn device_requests_are_for_openclaw() {
        let event = requested(&device_request());
        assert_eq!(event.event, PAIR_REQUESTED);
        assert!(event.goclaw_payload_json.is_empty());
        let payload = payload(&event.openclaw_payload_json).expect("payload");
        assert_eq!(payload["requestId"], "r1");
        assert_eq!(payload["deviceId"], "d1");
        assert_eq!(payload["isRepair"], false);
        assert_eq!(payload["ts"], 5);
        assert!(payload.get("displayName").is_none());
        let resolved = resolved(&device_request(), Decision::Rejected);
        let payload = super::payload(&resolved.openclaw_payload_json).expect("payload");
        assert_eq!(payload["decision"], "rejected");
    }

    #[test]
    fn codes_are_for_goclaw() {
        let code = PairingRequest {
            pairing_code: "ABCD2345".into(),
            sender_id: "s".into(),
            channel: "browser".into(),
            tenant_id: "t".into(),
            ..Default::default()
        };
        let event = requested(&code);
        assert!(event.openclaw_payload_json.is_empty());
        let payload = payload(&event.goclaw_payload_json).expect("payload");
        assert_eq!(
            (payload["code"].as_str(), payload["sender_id"].as_str()),
            (Some("ABCD2345"), Some("s"))
        );
        let resolved = resolved(&code, Decision::Rejected);
        let payload = super::payload(&resolved.goclaw_payload_json).expect("payload");
        assert_eq!(payload["action"], "denied");
    }

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
        let mut request = device_request();
        request.user_id = "alice".into();
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
