//! Pairing events as OpenClaw connections see them (§3.4, §3.6):
//! `device.pair.requested` carries the pending request object,
//! `device.pair.resolved` `{requestId, deviceId, decision, ts}`.
//!
//! Invariant: only OpenClaw device requests are shown; goclaw codes and
//! senders project to nothing here.

use clawgate_proto::pb::common::v1::{PairingChange, PairingEvent};
use serde_json::{Value, json};

use crate::methods::pairing::openclaw_pending;
use crate::notify;

/// The payload of `event` for an OpenClaw connection; `None` when it is not
/// about an OpenClaw device.
pub fn pairing_payload(event: &PairingEvent) -> Option<Value> {
    let request = event.request.as_ref()?;
    if notify::is_goclaw(request) || request.device_id.is_empty() {
        return None;
    }
    let decision = match PairingChange::try_from(event.change).ok()? {
        PairingChange::Requested => return Some(openclaw_pending(request)),
        PairingChange::Approved => "approved",
        PairingChange::Rejected => "rejected",
        PairingChange::Revoked | PairingChange::Unspecified => return None,
    };
    Some(json!({
        "requestId": request.request_id,
        "deviceId": request.device_id,
        "decision": decision,
        "ts": event.ts_ms,
    }))
}

#[cfg(test)]
mod tests {
    use clawgate_proto::auth::PairingRequest;

    use super::*;
    use crate::notify::{Decision, requested, resolved, sender_revoked};

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
        assert_eq!(notify::event_name(&event), notify::PAIR_REQUESTED);
        assert!(crate::goclaw::pairing::pairing_payload(&event).is_none());
        let payload = pairing_payload(&event).expect("payload");
        assert_eq!(payload["requestId"], "r1");
        assert_eq!(payload["deviceId"], "d1");
        assert_eq!(payload["isRepair"], false);
        assert_eq!(payload["ts"], 5);
        assert!(payload.get("displayName").is_none());
        let resolved = resolved(&device_request(), Decision::Rejected);
        assert_eq!(notify::event_name(&resolved), notify::PAIR_RESOLVED);
        let payload = pairing_payload(&resolved).expect("payload");
        assert_eq!(payload["decision"], "rejected");
        assert_eq!(payload["ts"], resolved.ts_ms);
        assert!(pairing_payload(&sender_revoked("t", "s", "browser")).is_none());
    }
}
