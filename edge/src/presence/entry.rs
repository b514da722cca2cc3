//! One presence entry: built from an OpenClaw connection (its verified
//! principal, its socket, the client facts of its validated `connect` params),
//! and rendered as an OpenClaw `PresenceEntry` for a viewer.
//!
//! Invariants: an entry carries only what the edge knows (no field is made
//! up: an unknown one is left out); its tenant and user come from the
//! principal; a viewer that sees the whole tenant (`operator.admin`, goclaw
//! admin/owner roles) gets every entry of its tenant, any other viewer only its
//! own user's; lists are rendered newest first (by `ts`). Pure functions: no
//! I/O.

use std::net::SocketAddr;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::PresenceEntry;
use serde_json::{Map, Value, json};

use crate::state::SocketInfo;

/// Client modes that are never listed (short-lived or machine connections, as
/// OpenClaw v4 does; applied to every protocol version).
pub const EPHEMERAL_MODES: [&str; 3] = ["cli", "backend", "probe"];

pub const CONNECT: &str = "connect";
pub const DISCONNECT: &str = "disconnect";

/// Whether a connection of client mode `mode` is listed.
pub fn is_listed_mode(mode: &str) -> bool {
    !EPHEMERAL_MODES.contains(&mode)
}

fn client_str(client: Option<&Value>, key: &str) -> String {
    client
        .and_then(|c| c.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The address part of a remote address (`ip:port` → `ip`).
fn ip_of(remote_addr: &str) -> String {
    remote_addr
        .parse::<SocketAddr>()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|_| remote_addr.to_owned())
}

/// The entry of a connection that just completed its OpenClaw handshake at
/// `now_ms`, from its validated `connect` params.
pub fn from_connect(
    principal: &Principal,
    info: &SocketInfo,
    connect_params: &Value,
    now_ms: i64,
) -> PresenceEntry {
    let client = connect_params.get("client");
    let client_id = client_str(client, "id");
    let display_name = client_str(client, "displayName");
    let mode = client_str(client, "mode");
    let instance_id = client_str(client, "instanceId");
    let host = if display_name.is_empty() {
        client_id.clone()
    } else {
        display_name
    };
    let key = [&principal.device_id, &instance_id, &info.conn_id]
        .into_iter()
        .find(|id| !id.is_empty())
        .cloned()
        .unwrap_or_default();
    let text = format!("Node: {host} · mode {mode}");
    PresenceEntry {
        user_id: principal.user_id.clone(),
        key,
        conn_id: info.conn_id.clone(),
        host,
        ip: ip_of(&info.peer.remote_addr),
        version: client_str(client, "version"),
        platform: client_str(client, "platform"),
        device_family: client_str(client, "deviceFamily"),
        model_identifier: client_str(client, "modelIdentifier"),
        mode,
        reason: CONNECT.to_owned(),
        client_id,
        instance_id,
        device_id: principal.device_id.clone(),
        roles: vec![principal.role.clone()],
        scopes: principal.scopes.clone(),
        online_since_ms: now_ms,
        last_activity_at_ms: 0,
        ts_ms: now_ms,
        text,
    }
}

/// Whether a viewer of `user_id` (seeing the whole tenant when `sees_tenant`)
/// may see `entry` (of the viewer's tenant).
pub fn visible_to(entry: &PresenceEntry, user_id: &str, sees_tenant: bool) -> bool {
    sees_tenant || (!entry.user_id.is_empty() && entry.user_id == user_id)
}

fn put_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), Value::from(value));
    }
}

/// `entry` as an OpenClaw `PresenceEntry`.
pub fn render(entry: &PresenceEntry) -> Value {
    let mut map = Map::new();
    put_str(&mut map, "host", &entry.host);
    put_str(&mut map, "ip", &entry.ip);
    put_str(&mut map, "version", &entry.version);
    put_str(&mut map, "platform", &entry.platform);
    put_str(&mut map, "deviceFamily", &entry.device_family);
    put_str(&mut map, "modelIdentifier", &entry.model_identifier);
    put_str(&mut map, "mode", &entry.mode);
    put_str(&mut map, "reason", &entry.reason);
    put_str(&mut map, "clientId", &entry.client_id);
    put_str(&mut map, "instanceId", &entry.instance_id);
    put_str(&mut map, "deviceId", &entry.device_id);
    let roles: Vec<&String> = entry.roles.iter().filter(|r| !r.is_empty()).collect();
    if !roles.is_empty() {
        map.insert("roles".into(), json!(roles));
    }
    map.insert("scopes".into(), json!(entry.scopes));
    if !entry.user_id.is_empty() {
        map.insert("user".into(), json!({ "id": entry.user_id }));
    }
    if entry.online_since_ms > 0 {
        map.insert("onlineSince".into(), json!(entry.online_since_ms));
    }
    if entry.last_activity_at_ms > 0 {
        map.insert("lastActivityAt".into(), json!(entry.last_activity_at_ms));
    }
    map.insert("ts".into(), json!(entry.ts_ms));
    put_str(&mut map, "text", &entry.text);
    Value::Object(map)
}

/// The entries of `entries` a viewer may see, newest first, rendered.
pub fn render_visible<'a>(
    entries: impl IntoIterator<Item = &'a PresenceEntry>,
    user_id: &str,
    sees_tenant: bool,
) -> Vec<Value> {
    let mut visible: Vec<&PresenceEntry> = entries
        .into_iter()
        .filter(|entry| visible_to(entry, user_id, sees_tenant))
        .collect();
    visible.sort_by_key(|entry| std::cmp::Reverse(entry.ts_ms));
    visible.into_iter().map(render).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Peer;

    fn info() -> SocketInfo {
        SocketInfo {
            conn_id: "conn-1".into(),
            nonce: "n".into(),
            peer: Peer {
                remote_addr: "10.0.0.7:5123".into(),
                is_local: false,
                has_origin: false,
            },
        }
    }

    fn principal(device: &str) -> Principal {
        Principal {
            tenant_id: "t".into(),
            user_id: "alice".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            device_id: device.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_holds_the_connection_facts_and_its_key() {
        let params = json!({"client": {
            "id": "openclaw-tui", "version": "1.2", "platform": "linux", "mode": "ui",
            "deviceFamily": "Linux", "instanceId": "inst-1"
        }});
        let entry = from_connect(&principal("dev-1"), &info(), &params, 1000);
        assert_eq!(entry.key, "dev-1");
        assert_eq!(
            (entry.ip.as_str(), entry.host.as_str()),
            ("10.0.0.7", "openclaw-tui")
        );
        let rendered = render(&entry);
        assert_eq!(rendered["clientId"], "openclaw-tui");
        assert_eq!(rendered["deviceId"], "dev-1");
        assert_eq!(rendered["instanceId"], "inst-1");
        assert_eq!(rendered["reason"], "connect");
        assert_eq!(rendered["roles"], json!(["operator"]));
        assert_eq!(rendered["user"], json!({"id": "alice"}));
        assert_eq!(
            (rendered["onlineSince"].clone(), rendered["ts"].clone()),
            (json!(1000), json!(1000))
        );
        assert!(
            rendered.get("modelIdentifier").is_none(),
            "unknown fields are left out"
        );
        assert!(rendered.get("lastActivityAt").is_none());
        assert_eq!(
            from_connect(&principal(""), &info(), &params, 1).key,
            "inst-1"
        );
        let bare = json!({"client": {"id": "webchat", "mode": "webchat"}});
        assert_eq!(
            from_connect(&principal(""), &info(), &bare, 1).key,
            "conn-1"
        );
    }

    #[test]
    fn ephemeral_modes_are_not_listed() {
        for mode in ["cli", "backend", "probe"] {
            assert!(!is_listed_mode(mode));
        }
        for mode in ["ui", "webchat", "node", "test"] {
            assert!(is_listed_mode(mode));
        }
    }

    #[test]
    fn admins_see_every_entry_others_their_own_newest_first() {
        let entry = |user: &str, ts: i64| PresenceEntry {
            user_id: user.into(),
            ts_ms: ts,
            host: format!("{user}-{ts}"),
            ..Default::default()
        };
        let entries = [entry("alice", 1), entry("bob", 3), entry("alice", 2)];
        let hosts = |list: Vec<Value>| -> Vec<String> {
            list.iter()
                .map(|v| v["host"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(
            hosts(render_visible(&entries, "alice", false)),
            ["alice-2", "alice-1"]
        );
        assert_eq!(
            hosts(render_visible(&entries, "carol", true)),
            ["bob-3", "alice-2", "alice-1"]
        );
        assert!(render_visible(&entries, "carol", false).is_empty());
    }
}
