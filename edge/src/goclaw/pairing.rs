//! Pairing events as goclaw connections see them (goclaw notes §2.6):
//! `device.pair.requested` carries the pending code, `device.pair.resolved`
//! `{action, code, sender_id, channel}` (`action`: approved, denied or
//! revoked; a revocation names only the sender).
//!
//! Invariant: only goclaw codes and senders are shown; OpenClaw device
//! requests project to nothing here.

use clawgate_proto::pb::common::v1::{PairingChange, PairingEvent};
use serde_json::{Value, json};

use crate::methods::pairing::goclaw_pending;
use crate::notify;

/// The payload of `event` for a goclaw connection; `None` when it is not
/// about a goclaw code or sender.
pub fn pairing_payload(event: &PairingEvent) -> Option<Value> {
    let request = event.request.as_ref()?;
    if !notify::is_goclaw(request) {
        return None;
    }
    let action = match PairingChange::try_from(event.change).ok()? {
        PairingChange::Requested => return Some(goclaw_pending(request)),
        PairingChange::Approved => "approved",
        PairingChange::Rejected => "denied",
        PairingChange::Revoked => {
            return Some(json!({
                "action": "revoked",
                "sender_id": request.sender_id,
                "channel": request.channel,
            }));
        }
        PairingChange::Unspecified => return None,
    };
    Some(json!({
        "action": action,
        "code": request.pairing_code,
        "sender_id": request.sender_id,
        "channel": request.channel,
    }))
}

#[cfg(test)]
mod tests {
    use clawgate_proto::auth::PairingRequest;

    use super::*;
    use crate::notify::{Decision, requested, resolved, sender_revoked};

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
        assert!(crate::openclaw::pairing::pairing_payload(&event).is_none());
        let payload = pairing_payload(&event).expect("payload");
        assert_eq!(
            (payload["code"].as_str(), payload["sender_id"].as_str()),
            (Some("ABCD2345"), Some("s"))
        );
        let resolved = resolved(&code, Decision::Rejected);
        let payload = pairing_payload(&resolved).expect("payload");
        assert_eq!(payload["action"], "denied");
        let revoked = pairing_payload(&sender_revoked("t", "s", "browser")).expect("payload");
        assert_eq!(
            revoked,
            json!({"action": "revoked", "sender_id": "s", "channel": "browser"})
        );
    }
}
