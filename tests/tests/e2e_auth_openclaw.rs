//! OpenClaw device identity and pairing end to end, with the test kit's
//! independent client (its own keys, payloads and signatures): the full pairing
//! flow through an admin connection, device-token reconnects, loopback
//! auto-approval, who receives pairing events, and the scopes of device-less
//! connections (reference §2.3, §2.4, §3, §4).

mod auth_support;

use auth_support::{
    QUIET, approve, assert_no_pairing_events, assert_pairing_required, assert_rejected,
    backend_admin, connect, connect_ok, create_tenant, device_token, gateway,
    gateway_with_auto_approval, gateway_without_auto_approval, goclaw, operator, pair, paired,
    pairing_events,
};
use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::openclaw_device::{
    ConnectSpec, DeviceAuthStore, DeviceIdentity, PayloadVersion, challenge_nonce,
};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

fn is_pair_event(frame: &Value, name: &str, request_id: &str) -> bool {
    frame["event"] == name && frame["payload"]["requestId"] == request_id
}

/// The whole flow of the first "Done when": a new device is refused with
/// `PAIRING_REQUIRED`, an admin connection sees the request and approves it, the
/// device reconnects and gets a device token, then connects with that token alone.
/// Pairing events reach pairing-scoped connections of the tenant only.
///
/// Needs: loopback auto-approval off (`--pairing-auto-approve-local=false`), and
/// for the other-tenant observer a goclaw owner narrowed with `tenant_id`.
#[tokio::test]
async fn openclaw_device_pairing_flow_end_to_end() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions {
        owner_ids: vec!["root".into()],
        ..gateway_options_without_auto_approval()
    })
    .await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());

    let (mut admin, admin_hello) = backend_admin(url, token).await?;
    assert_eq!(admin_hello["auth"]["role"], "operator", "{admin_hello}");
    let admin_scopes = admin_hello["auth"]["scopes"].as_array().cloned();
    assert!(
        admin_scopes.is_some_and(|s| s.contains(&json!("operator.admin"))),
        "the local backend client keeps its scopes: {admin_hello}"
    );

    // Observers: a pairing-scoped device, a read-only device, and a socket of
    // another tenant that could see pairing events in its own tenant.
    let pairing_id = DeviceIdentity::generate();
    let (mut pairing_observer, _) = pair(
        url,
        &mut admin,
        &pairing_id,
        &operator(&["operator.pairing"], token),
    )
    .await?;
    let reader_id = DeviceIdentity::generate();
    let (mut reader, _) = pair(
        url,
        &mut admin,
        &reader_id,
        &operator(&["operator.read"], token),
    )
    .await?;
    create_tenant(url, token, "root", "tenant-b").await?;
    let (mut other_tenant, res) = goclaw(
        url,
        json!({"token": token, "user_id": "root", "tenant_id": "tenant-b"}),
    )
    .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["role"], "owner", "{res}");
    assert_eq!(res["payload"]["tenant_id"], "tenant-b", "{res}");
    for ws in [
        &mut admin,
        &mut pairing_observer,
        &mut reader,
        &mut other_tenant,
    ] {
        ws.drain(QUIET).await;
    }

    // 1. First connect of a new device: pairing required, socket closed 1008.
    let device = DeviceIdentity::generate();
    let scopes = ["operator.write", "operator.approvals"];
    let spec = operator(&scopes, token);
    let (mut ws, res) = connect(url, &device, &spec).await?;
    let request_id = assert_pairing_required(&mut ws, &res, &device).await?;
    assert_eq!(res["error"]["details"]["reason"], "not-paired", "{res}");

    // 2. The admin (and the pairing observer) see the request; the admin approves.
    for ws in [&mut admin, &mut pairing_observer] {
        let requested = ws
            .event_where(|f| is_pair_event(f, "device.pair.requested", &request_id))
            .await?;
        assert_eq!(
            requested["payload"]["deviceId"],
            device.device_id().as_str()
        );
        assert_eq!(
            requested["payload"]["publicKey"],
            device.public_key().as_str()
        );
    }
    let list = admin.request("device.pair.list", json!({})).await?;
    let pending = list["payload"]["pending"].as_array().cloned();
    assert!(
        pending.is_some_and(|p| p.iter().any(|r| r["requestId"] == request_id.as_str())),
        "the request is pending: {list}"
    );
    let approved = approve(&mut admin, &request_id).await?;
    assert_eq!(approved["requestId"], request_id.as_str(), "{approved}");
    assert_eq!(
        approved["device"]["deviceId"],
        device.device_id().as_str(),
        "{approved}"
    );
    for ws in [&mut admin, &mut pairing_observer] {
        let resolved = ws
            .event_where(|f| is_pair_event(f, "device.pair.resolved", &request_id))
            .await?;
        assert_eq!(resolved["payload"]["deviceId"], device.device_id().as_str());
        assert_eq!(resolved["payload"]["decision"], "approved", "{resolved}");
    }

    // 3. Reconnect: hello-ok with a device token, role and sorted expanded scopes.
    let (shared_ws, hello) = connect_ok(url, &device, &spec).await?;
    assert_eq!(hello["auth"]["role"], "operator", "{hello}");
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.approvals", "operator.read", "operator.write"]),
        "{hello}"
    );
    let mut store = DeviceAuthStore::new(&device.device_id());
    assert!(store.remember_hello(&hello), "no device token: {hello}");
    shared_ws.close().await;

    // 4. Reconnect with the device token alone (no shared token).
    let stored = store
        .load("operator")
        .cloned()
        .expect("the store keeps the operator token");
    let alone = ConnectSpec::operator(&scopes).with_device_token(&stored.token);
    let (mut token_ws, hello) = connect_ok(url, &device, &alone).await?;
    assert_eq!(hello["auth"]["role"], "operator", "{hello}");
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.approvals", "operator.read", "operator.write"]),
        "{hello}"
    );
    let res = token_ws.request("sessions.list", json!({})).await?;
    assert_eq!(res["ok"], true, "write implies read: {res}");

    // 5. As the reference client does: the device token as `auth.token` too.
    let reference_style = alone.clone().with_token(&stored.token);
    connect_ok(url, &device, &reference_style).await?;

    // Pairing events never reached the read-only socket or the other tenant.
    assert_no_pairing_events(&mut reader, "a socket without operator.pairing").await;
    assert_no_pairing_events(&mut other_tenant, "a socket of another tenant").await;
    Ok(())
}

fn gateway_options_without_auto_approval() -> GatewayOptions {
    GatewayOptions {
        auth: clawgate_tests::gateway::AuthOptions {
            auto_approve_local: Some(false),
            ..Default::default()
        },
        ..GatewayOptions::default()
    }
}

/// With auto-approval off, `device.pair.reject` refuses the request and the next
/// connect of that device needs pairing again.
#[tokio::test]
async fn openclaw_rejected_pairing_request_stays_unpaired() -> anyhow::Result<()> {
    let gw = gateway_without_auto_approval().await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut admin, _) = backend_admin(url, token).await?;
    let device = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], token);
    let (mut ws, res) = connect(url, &device, &spec).await?;
    let request_id = assert_pairing_required(&mut ws, &res, &device).await?;
    let res = admin
        .request("device.pair.reject", json!({"requestId": request_id}))
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["requestId"], request_id.as_str(), "{res}");
    let resolved = admin
        .event_where(|f| is_pair_event(f, "device.pair.resolved", &request_id))
        .await?;
    assert_eq!(resolved["payload"]["decision"], "rejected", "{resolved}");
    let (mut ws, res) = connect(url, &device, &spec).await?;
    assert_pairing_required(&mut ws, &res, &device).await?;
    Ok(())
}

/// Loopback auto-approval (the reference's default; needs the setting on): a new
/// device on a direct loopback socket is approved silently, gets its device token
/// on the first connect, and `device.pair.resolved` reaches pairing-scoped
/// connections.
#[tokio::test]
async fn openclaw_loopback_device_is_approved_silently() -> anyhow::Result<()> {
    let gw = gateway_with_auto_approval().await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let observer_id = DeviceIdentity::generate();
    let (mut observer, hello) =
        connect_ok(url, &observer_id, &operator(&["operator.pairing"], token)).await?;
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.pairing"]),
        "{hello}"
    );
    observer.drain(QUIET).await;

    let device = DeviceIdentity::generate();
    let (_ws, hello) = connect_ok(url, &device, &operator(&["operator.write"], token)).await?;
    device_token(&hello);
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.read", "operator.write"]),
        "{hello}"
    );
    let resolved = observer
        .event_where(|f| {
            f["event"] == "device.pair.resolved"
                && f["payload"]["deviceId"] == device.device_id().as_str()
        })
        .await?;
    assert_eq!(resolved["payload"]["decision"], "approved", "{resolved}");
    Ok(())
}

/// A socket with proxy headers from an untrusted address is not "local": even
/// with auto-approval on, its new device needs pairing (reference §3.3, §3.4).
#[tokio::test]
async fn openclaw_device_behind_proxy_headers_is_not_approved_silently() -> anyhow::Result<()> {
    let gw = gateway_with_auto_approval().await?;
    let device = DeviceIdentity::generate();
    let mut ws =
        WsClient::connect_with_headers(&gw.ws_url, &[("x-forwarded-for", "203.0.113.9")]).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let spec = operator(&["operator.read"], &gw.gateway_token);
    let res = ws.request("connect", spec.params(&device, &nonce)).await?;
    assert_pairing_required(&mut ws, &res, &device).await?;
    Ok(())
}

/// The server tries v3 then v2: a v2 signature is accepted.
#[tokio::test]
async fn openclaw_v2_signature_is_accepted() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let identity = DeviceIdentity::generate();
    let spec = operator(&["operator.read"], token);
    paired(url, token, &identity, &spec).await?.0.close().await;
    let v2 = spec.with_payload_version(PayloadVersion::V2);
    let (_ws, hello) = connect_ok(url, &identity, &v2).await?;
    assert_eq!(hello["auth"]["role"], "operator", "{hello}");
    Ok(())
}

/// Late v3: a device-less operator authenticated by the shared token gets no
/// scopes, so even a read method is refused.
#[tokio::test]
async fn openclaw_device_less_shared_token_operator_gets_no_scopes() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    challenge_nonce(&mut ws).await?;
    let spec = operator(&["operator.read", "operator.write"], &gw.gateway_token);
    let res = ws.request("connect", spec.params_without_device()).await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["role"], "operator", "{res}");
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]), "{res}");
    let res = ws.request("sessions.list", json!({})).await?;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(
        res["error"]["message"], "missing scope: operator.read",
        "{res}"
    );
    let res = ws.request("health", json!({})).await?;
    assert_eq!(res["ok"], true, "health is open to all: {res}");
    Ok(())
}

/// A device-less node is refused: `NOT_PAIRED` / `DEVICE_IDENTITY_REQUIRED`.
#[tokio::test]
async fn openclaw_device_less_node_is_refused() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    challenge_nonce(&mut ws).await?;
    let spec = ConnectSpec::node().with_token(&gw.gateway_token);
    let res = ws.request("connect", spec.params_without_device()).await?;
    assert_rejected(
        &mut ws,
        &res,
        "NOT_PAIRED",
        Some("DEVICE_IDENTITY_REQUIRED"),
        1008,
    )
    .await
}

/// Pairing events of one tenant reach only its pairing-scoped connections: a
/// read-only device sees none while a pairing-scoped one sees them.
#[tokio::test]
async fn openclaw_pairing_events_need_the_pairing_scope() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let (mut pairing, _) = paired(
        url,
        token,
        &DeviceIdentity::generate(),
        &operator(&["operator.pairing"], token),
    )
    .await?;
    let (mut reader, _) = paired(
        url,
        token,
        &DeviceIdentity::generate(),
        &operator(&["operator.read", "operator.write"], token),
    )
    .await?;
    pairing.drain(QUIET).await;
    reader.drain(QUIET).await;

    // A remote-looking device creates a request without being auto-approved.
    let device = DeviceIdentity::generate();
    let mut ws =
        WsClient::connect_with_headers(url, &[("x-forwarded-for", "198.51.100.4")]).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let res = ws
        .request(
            "connect",
            operator(&["operator.read"], token).params(&device, &nonce),
        )
        .await?;
    let request_id = assert_pairing_required(&mut ws, &res, &device).await?;
    pairing
        .event_where(|f| is_pair_event(f, "device.pair.requested", &request_id))
        .await?;
    let frames = reader.drain(QUIET).await;
    assert!(pairing_events(&frames).is_empty(), "{frames:?}");
    Ok(())
}

/// `device.pair.remove` closes the device's live sockets with 4001 `device removed`
/// and its device token stops working.
#[tokio::test]
async fn openclaw_removed_device_is_disconnected() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());
    let device = DeviceIdentity::generate();
    let (_ws, hello) = paired(url, token, &device, &operator(&["operator.read"], token)).await?;
    let by_token =
        ConnectSpec::operator(&["operator.read"]).with_device_token(&device_token(&hello));
    let (mut live, _) = connect_ok(url, &device, &by_token).await?;

    let (mut admin, _) = backend_admin(url, token).await?;
    let res = admin
        .request(
            "device.pair.remove",
            json!({"deviceId": device.device_id()}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["deviceId"],
        device.device_id().as_str(),
        "{res}"
    );
    let closed = live.expect_close().await?;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(4001), "device removed")
    );
    let (mut ws, res) = connect(url, &device, &by_token).await?;
    assert_rejected(
        &mut ws,
        &res,
        "INVALID_REQUEST",
        Some("AUTH_DEVICE_TOKEN_MISMATCH"),
        1008,
    )
    .await
}
