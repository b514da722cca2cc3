//! Presence across every edge: who of a tenant is connected, for OpenClaw's
//! `system-presence`, `presence` events and `hello-ok.snapshot.presence`.
//!
//! The mechanism is the runtime's presence registry
//! ([`clawgate_runtime::presence`], Redis across edges or in-process); this
//! module decides what is listed and who sees it:
//! - **Listed**: every OpenClaw connection after its handshake, except client
//!   modes `cli`, `backend` and `probe` ([`entry::is_listed_mode`]), one entry
//!   per connection keyed by device id, else instance id, else connection id
//!   (a later connection of the same key takes the entry over). goclaw
//!   connections are not listed (goclaw has no presence; its clients declare
//!   none of the facts an entry holds).
//! - **Watchers**: OpenClaw operator connections with `operator.read` get
//!   `presence` events and a filled `snapshot.presence`; one that sees the
//!   whole tenant (`operator.admin`) every entry of its tenant, any other only
//!   its own user's ([`entry::visible_to`]); other connections get neither.
//! - **Lifecycle**: an entry is registered before `hello-ok` (so the snapshot
//!   holds it), refreshed every [`REFRESH_EVERY`](crate::presence_table::REFRESH_EVERY) by one edge-wide task (its
//!   `lastActivityAt` too, so activity costs no registry write of its own; a
//!   connection notes it at most once per [`ACTIVITY_EVERY`]), and removed
//!   when the socket closes; an edge that dies leaves entries that expire
//!   after [`ENTRY_TTL`](crate::presence_table::ENTRY_TTL).
//! - **Events**: after a connect and after a disconnect, the edge publishes a
//!   [`PresenceEvent`] on the tenant's topic with the tenant's live entries and
//!   version (the departed entry, with reason `disconnect`, rides along once);
//!   every edge renders it per watcher. A watcher ignores a list older than
//!   the last it got (versions order them).
//! - **Snapshots**: a listed connection's snapshot is the list its
//!   registration returned (the one round trip its connect costs here); an
//!   unlisted watcher's is the edge's cached list of its tenant (the latest
//!   registry reply or event this edge saw, used for [`CACHE_FRESH`](crate::presence_table::CACHE_FRESH), at most
//!   [`CACHE_TENANTS`](crate::presence_table::CACHE_TENANTS) tenants), read from the registry only when there is
//!   none; any other connection costs nothing.
//!
//! Invariants: presence is best effort and never refuses a connection (a
//! registry failure is logged and the snapshot stays empty); the tenant and
//! user of an entry come from the verified principal; the edge-wide table holds
//! one row per listed live connection; refreshes are one pipelined call per
//! period, whatever the number of connections.

pub mod entry;

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{BusMessage, PresenceEvent, bus_message};
use clawgate_proto::principal::SCOPE_READ;
use clawgate_runtime::bus::{EventBus, Topic};
use clawgate_runtime::clock::now_ms;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::out::{EventOut, Out};
pub use crate::presence_table::{EdgePresence, entries_of};
use crate::state::{EdgeState, SocketInfo};

/// How often one connection's activity is noted (the refresh writes it).
pub const ACTIVITY_EVERY: Duration = Duration::from_secs(1);

/// The event's name.
pub const EVENT: &str = "presence";

/// A connection's part in presence, for its whole life (held by its session).
#[derive(Debug)]
pub struct Seat {
    conn_id: String,
    tenant_id: String,
    user_id: String,
    sees_tenant: bool,
    /// Gets `presence` events.
    watches: bool,
    /// Has an entry.
    listed: bool,
    /// Version of the last list sent to the connection.
    last_version: u64,
    next_touch: Option<Instant>,
}

/// What [`open`] found for a connection that just completed its handshake.
#[derive(Debug, Default)]
pub struct Opened {
    pub seat: Option<Seat>,
    /// `snapshot.presence` of its `hello-ok` (what it may see).
    pub snapshot: Vec<Value>,
    /// `snapshot.stateVersion.presence`; `None`: unknown (nothing read).
    pub version: Option<u64>,
    /// To publish once `hello-ok` is queued.
    pub event: Option<PresenceEvent>,
}

/// Whether a connection of `principal` gets presence events and snapshots.
pub fn watches(principal: &Principal) -> bool {
    principal.role == "operator" && principal.has_scope(SCOPE_READ)
}

/// Lists an OpenClaw connection that just completed its handshake (unless
/// its mode is not listed) and reads what its `hello-ok` shows: one registry
/// round trip for a listed connection (the registration returns the list);
/// for an unlisted watcher one only when this edge has no list of its tenant
/// younger than [`CACHE_FRESH`](crate::presence_table::CACHE_FRESH); none for any other.
pub async fn open(
    state: &EdgeState,
    principal: &Principal,
    info: &SocketInfo,
    connect_params: &Value,
) -> Opened {
    let entry = entry::from_connect(principal, info, connect_params, now_ms());
    let listed = entry::is_listed_mode(&entry.mode);
    let watches = watches(principal);
    if !listed && !watches {
        return Opened::default();
    }
    let tenant_id = &principal.tenant_id;
    let presence = &state.presence;
    let read = if listed {
        presence
            .add(tenant_id, entry)
            .await
            .map(|list| presence.remember_list(tenant_id, &list))
    } else {
        presence.current(tenant_id).await
    };
    let list = match read {
        Ok(list) => Some(list),
        Err(err) => {
            tracing::warn!(error = %err, "presence unavailable");
            None
        }
    };
    let version = list.as_ref().map(|list| list.version);
    let sees_tenant = principal.sees_tenant();
    let snapshot = match (&list, watches) {
        (Some(list), true) => entry::render_visible(&list.entries, &principal.user_id, sees_tenant),
        _ => Vec::new(),
    };
    let event = match (&list, listed) {
        (Some(list), true) => Some(PresenceEvent::clone(list)),
        _ => None,
    };
    Opened {
        seat: Some(Seat {
            conn_id: info.conn_id.clone(),
            tenant_id: tenant_id.clone(),
            user_id: principal.user_id.clone(),
            sees_tenant,
            watches,
            listed: listed && list.is_some(),
            last_version: version.unwrap_or(0),
            next_touch: None,
        }),
        snapshot,
        version,
        event,
    }
}

/// Fills `snapshot.presence` and `snapshot.stateVersion.presence` of a
/// `hello-ok` payload.
pub fn fill_hello(reply: &mut Value, opened: &Opened) {
    let Some(snapshot) = reply.get_mut("snapshot").and_then(Value::as_object_mut) else {
        return;
    };
    snapshot.insert("presence".into(), Value::Array(opened.snapshot.clone()));
    if let Some(version) = opened.version
        && let Some(state_version) = snapshot
            .get_mut("stateVersion")
            .and_then(Value::as_object_mut)
    {
        state_version.insert("presence".into(), json!(version));
    }
}

/// Publishes `event` on its tenant's topic (failures are logged).
pub async fn publish(bus: &dyn EventBus, event: PresenceEvent) {
    let topic = Topic::tenant(&event.tenant_id);
    let message = BusMessage {
        body: Some(bus_message::Body::PresenceEvent(event)),
    };
    if let Err(err) = bus.publish(&topic, message.encode_to_vec().into()).await {
        tracing::warn!(error = %err, "cannot publish presence");
    }
}

/// [`publish`] on its own task.
pub fn publish_in_background(state: &EdgeState, event: PresenceEvent) {
    let bus = state.services.bus.clone();
    tokio::spawn(async move { publish(bus.as_ref(), event).await });
}

impl Seat {
    /// Notes that the client sent a request (at most once per
    /// [`ACTIVITY_EVERY`]).
    pub fn touch(&mut self, state: &EdgeState) {
        if !self.listed {
            return;
        }
        let now = Instant::now();
        if self.next_touch.is_some_and(|next| now < next) {
            return;
        }
        self.next_touch = Some(now + ACTIVITY_EVERY);
        state.presence.touch(&self.conn_id, now_ms());
    }

    /// Sends `event` to the connection if it watches and may see it; a list
    /// older than the last one sent is ignored. The edge's cache keeps it.
    pub fn deliver(&mut self, event: &Arc<PresenceEvent>, presence: &EdgePresence, out: &mut Out) {
        presence.remember(event);
        if !self.watches || event.tenant_id != self.tenant_id || event.version < self.last_version {
            return;
        }
        self.last_version = event.version;
        let mut presence = entry::render_visible(&event.entries, &self.user_id, self.sees_tenant);
        if let Some(departed) = &event.departed
            && entry::visible_to(departed, &self.user_id, self.sees_tenant)
        {
            presence.insert(0, entry::render(departed));
        }
        let state_version = json!({ "presence": event.version, "health": 1 });
        out.event(
            EventOut::droppable(EVENT, json!({ "presence": presence }))
                .with_state_version(state_version),
        );
    }

    /// The connection closed: its entry is removed and the change published,
    /// on a task of its own.
    pub fn close(self, state: &EdgeState) {
        if !self.listed {
            return;
        }
        let presence = state.presence.clone();
        let bus = state.services.bus.clone();
        tokio::spawn(async move {
            let Some((tenant_id, mut departed, list)) = presence.remove(&self.conn_id).await else {
                return;
            };
            let list = match list {
                Ok(list) => list,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot remove a presence entry");
                    return;
                }
            };
            let entries = presence.remember_list(&tenant_id, &list).entries.clone();
            // Taken over by a later connection of the same key: not gone.
            let departed = entries.iter().all(|e| e.key != departed.key).then(|| {
                departed.reason = entry::DISCONNECT.to_owned();
                departed.ts_ms = now_ms();
                departed
            });
            let event = PresenceEvent {
                tenant_id,
                version: list.version,
                entries,
                departed,
            };
            publish(bus.as_ref(), event).await;
        });
    }
}

#[cfg(test)]
mod tests;
