//! Presence on the embedded gateway: `system-presence`, `presence` events and
//! `hello-ok.snapshot.presence`. UI clients are listed, `cli`/`backend`/`probe`
//! ones are not; events follow connects and disconnects; an admin sees the
//! whole tenant, an operator its own user's entries, and no tenant sees
//! another's.

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const OWNER: &str = "root";

/// OpenClaw connect params of a device-less client.
fn params(token: &str, client_id: &str, mode: &str, instance: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 3,
        "maxProtocol": 3,
        "client": {
            "id": client_id, "version": "9.9.9", "platform": "linux", "mode": mode,
            "deviceFamily": "Linux", "instanceId": instance,
        },
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

async fn connect(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((ws, res["payload"].clone()))
}

/// The local backend client with the shared token keeps its scopes (not listed).
async fn backend(url: &str, token: &str, scopes: &[&str]) -> anyhow::Result<(WsClient, Value)> {
    connect(
        url,
        params(token, "gateway-client", "backend", "be", scopes),
    )
    .await
}

/// A UI client of the API key `key` (its user and tenant), with read.
async fn ui(url: &str, key: &str, instance: &str) -> anyhow::Result<(WsClient, Value)> {
    connect(
        url,
        params(
            key,
            "openclaw-control-ui",
            "ui",
            instance,
            &["operator.read"],
        ),
    )
    .await
}

fn instances(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["instanceId"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn system_presence(ws: &mut WsClient) -> anyhow::Result<Value> {
    let res = ws.request("system-presence", json!({})).await?;
    anyhow::ensure!(res["ok"] == true, "system-presence failed: {res}");
    Ok(res["payload"].clone())
}

/// The next `presence` event whose list has exactly `expected` instances.
async fn presence_with(ws: &mut WsClient, expected: &[&str]) -> anyhow::Result<Value> {
    let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    ws.event_where(|e| e["event"] == "presence" && instances(&e["payload"]["presence"]) == expected)
        .await
}

/// An API key of `user` in the tenant of the (admin or owner) goclaw socket.
async fn key_of(admin: &mut WsClient, user: &str) -> anyhow::Result<String> {
    let (_, key) = admin
        .create_api_key(json!({
            "name": user, "scopes": ["operator.read", "operator.write"], "owner_id": user,
        }))
        .await?;
    Ok(key)
}

#[tokio::test]
async fn ui_clients_are_listed_and_followed_by_presence_events() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions::default()).await?;
    let (url, token) = (gw.ws_url.clone(), gw.gateway_token.clone());
    let mut admin = WsClient::connect(&url).await?;
    admin.goclaw_handshake(&token, "someone").await?;
    let key = key_of(&mut admin, "alice").await?;

    // An admin watcher in backend mode: not listed itself.
    let (mut watcher, hello) = backend(&url, &token, &["operator.admin"]).await?;
    assert_eq!(hello["snapshot"]["presence"], json!([]), "{hello}");
    let first_version = hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .expect("a presence version");
    assert!(
        hello["features"]["events"]
            .as_array()
            .is_some_and(|events| events.contains(&json!("presence")))
    );

    let (mut a, hello_a) = ui(&url, &key, "inst-a").await?;
    // The snapshot holds the connection itself.
    assert_eq!(instances(&hello_a["snapshot"]["presence"]), ["inst-a"]);
    let entry = &hello_a["snapshot"]["presence"][0];
    assert_eq!(entry["clientId"], "openclaw-control-ui");
    assert_eq!(entry["mode"], "ui");
    assert_eq!(entry["reason"], "connect");
    assert_eq!(entry["version"], "9.9.9");
    assert_eq!(entry["platform"], "linux");
    assert_eq!(entry["deviceFamily"], "Linux");
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["roles"], json!(["operator"]));
    assert_eq!(entry["scopes"], json!(["operator.read"]));
    assert_eq!(entry["user"], json!({"id": "alice"}));
    assert!(
        entry["onlineSince"].is_i64() && entry["ts"].is_i64(),
        "{entry}"
    );
    let version_a = hello_a["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .expect("version");
    assert!(version_a > first_version);

    // The watcher hears of it, with the frame's stateVersion.
    let event = presence_with(&mut watcher, &["inst-a"]).await?;
    assert_eq!(event["stateVersion"]["presence"], version_a, "{event}");
    assert!(event["seq"].is_u64(), "a numbered broadcast: {event}");
    // So does the new connection itself.
    presence_with(&mut a, &["inst-a"]).await?;

    // A cli client is not listed; a second UI client is.
    let (mut cli, _) = connect(
        &url,
        params(&key, "cli", "cli", "inst-cli", &["operator.read"]),
    )
    .await?;
    let (b, _) = connect(
        &url,
        params(&key, "webchat-ui", "webchat", "inst-b", &["operator.read"]),
    )
    .await?;
    presence_with(&mut watcher, &["inst-b", "inst-a"]).await?;
    let listed = system_presence(&mut watcher).await?;
    assert_eq!(
        instances(&listed),
        ["inst-b", "inst-a"],
        "newest first: {listed}"
    );
    assert!(listed.as_array().is_some_and(|entries| {
        entries
            .iter()
            .all(|e| e["mode"] != "cli" && e["mode"] != "backend")
    }));
    assert_eq!(
        instances(&system_presence(&mut cli).await?),
        ["inst-b", "inst-a"]
    );

    // Requests are activity: noted once the entry is next refreshed (not here:
    // the refresh period is longer than this test).
    // A disconnect is announced once, with the departed entry.
    b.close().await;
    let event = watcher
        .event_where(|e| {
            e["event"] == "presence"
                && e["payload"]["presence"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x["reason"] == "disconnect"))
        })
        .await?;
    let left: Vec<&Value> = event["payload"]["presence"]
        .as_array()
        .map(|l| l.iter().filter(|x| x["reason"] == "disconnect").collect())
        .unwrap_or_default();
    assert_eq!(left.len(), 1, "{event}");
    assert_eq!(left[0]["instanceId"], "inst-b");
    assert_eq!(instances(&system_presence(&mut watcher).await?), ["inst-a"]);

    // Bad params are refused.
    let res = watcher
        .request("system-presence", json!({"all": true}))
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid system-presence params:"))
    );
    a.close().await;
    Ok(())
}

#[tokio::test]
async fn presence_is_scoped_to_the_tenant_and_for_operators_to_their_user() -> anyhow::Result<()> {
    let gw = TestGateway::start(GatewayOptions {
        owner_ids: vec![OWNER.into()],
        ..Default::default()
    })
    .await?;
    let (url, token) = (gw.ws_url.clone(), gw.gateway_token.clone());
    let mut root = WsClient::connect(&url).await?;
    root.goclaw_handshake(&token, OWNER).await?;
    let res = root
        .request(
            "tenants.create",
            json!({"id": "tb", "slug": "tb", "name": "Tenant B"}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "tenants.create: {res}");
    let mut owner_b = WsClient::connect(&url).await?;
    let res = owner_b
        .request(
            "connect",
            json!({"token": token, "user_id": OWNER, "tenant_id": "tb"}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "owner in tb: {res}");
    let res = owner_b
        .request(
            "tenants.users.add",
            json!({"user_id": "carol", "role": "operator", "display_name": "carol"}),
        )
        .await?;
    anyhow::ensure!(res["ok"] == true, "users.add: {res}");
    let carol_key = key_of(&mut owner_b, "carol").await?;
    let alice_key = key_of(&mut root, "alice").await?;
    let bob_key = key_of(&mut root, "bob").await?;

    let (mut admin, _) = backend(&url, &token, &["operator.admin"]).await?;
    let (mut alice, _) = ui(&url, &alice_key, "alice-1").await?;
    let (mut bob, hello_bob) = ui(&url, &bob_key, "bob-1").await?;
    // bob's snapshot shows bob only.
    assert_eq!(instances(&hello_bob["snapshot"]["presence"]), ["bob-1"]);
    let (mut carol, hello_carol) = ui(&url, &carol_key, "carol-1").await?;
    assert_eq!(instances(&hello_carol["snapshot"]["presence"]), ["carol-1"]);

    presence_with(&mut admin, &["bob-1", "alice-1"]).await?;
    assert_eq!(
        instances(&system_presence(&mut admin).await?),
        ["bob-1", "alice-1"]
    );
    assert_eq!(instances(&system_presence(&mut alice).await?), ["alice-1"]);
    assert_eq!(instances(&system_presence(&mut bob).await?), ["bob-1"]);
    assert_eq!(instances(&system_presence(&mut carol).await?), ["carol-1"]);

    // alice heard of her own connect, never of bob's; carol only of her own.
    let alice_frames = alice.drain(std::time::Duration::from_millis(200)).await;
    let carol_frames = carol.drain(std::time::Duration::from_millis(50)).await;
    let lists = |frames: &[Value]| -> Vec<Vec<String>> {
        frames
            .iter()
            .filter(|f| f["event"] == "presence")
            .map(|f| instances(&f["payload"]["presence"]))
            .collect()
    };
    let alice_lists = lists(&alice_frames);
    assert!(!alice_lists.is_empty());
    assert!(
        alice_lists.iter().all(|l| l == &["alice-1"]),
        "{alice_lists:?}"
    );
    let carol_lists = lists(&carol_frames);
    assert!(!carol_lists.is_empty());
    assert!(
        carol_lists.iter().all(|l| l == &["carol-1"]),
        "{carol_lists:?}"
    );
    Ok(())
}
