//! The isolation matrix of the multi-tenant data plane, end to end over real
//! WebSockets in both dialects, on SQLite (embedded default) and on PostgreSQL
//! with the services connected as a role that row-level security applies to.
//!
//! Two tenants hold users with the *same* ids (`alice`, `bob` operators, `admin`
//! an admin), so nothing can pass by user id alone; an owner narrowed to tenant
//! `ta` watches too. Every principal connects in both dialects with an API key
//! bound to its tenant and user. The test then runs every implemented method and
//! every event kind and checks that no read, write, list entry, count, error
//! message or event crosses a boundary it should not:
//! - run events (`agent`/`chat`, `run.started`/`chunk`/`run.completed`) reach the
//!   run's user and the admins and owner of its tenant, nobody else;
//! - transcripts, session lists, API keys, users, tenants, secrets and pairing
//!   requests of the other tenant (or, for operators, of another user) are
//!   invisible, and addressing them by id fails exactly like a missing id;
//! - pairing events reach the tenant's admins only; removing a user disconnects
//!   its sockets in its tenant only; disabling a tenant closes its sockets and
//!   refuses its connects.

mod auth_support;

use std::collections::BTreeSet;
use std::time::Duration;

use auth_support::{QUIET, connect};
use clawgate_tests::gateway::{AuthOptions, GatewayDatabase, GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ClientInfo, ConnectSpec, DeviceIdentity, challenge_nonce};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const OWNER: &str = "root";
const TENANTS: [&str; 2] = ["ta", "tb"];
const OPERATORS: [&str; 2] = ["alice", "bob"];
const ADMIN: &str = "admin";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenClaw,
    Goclaw,
}

/// One connected socket of the matrix and who it is.
struct Sock {
    tenant: &'static str,
    user: &'static str,
    /// Admins and the owner see their whole tenant.
    sees_tenant: bool,
    dialect: Dialect,
    ws: WsClient,
}

impl Sock {
    fn label(&self) -> String {
        format!("{}/{} ({:?})", self.tenant, self.user, self.dialect)
    }

    async fn ok(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let res = self.ws.request(method, params).await?;
        anyhow::ensure!(res["ok"] == true, "{} {method}: {res}", self.label());
        Ok(res["payload"].clone())
    }

    async fn err(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let res = self.ws.request(method, params).await?;
        anyhow::ensure!(
            res["ok"] == false,
            "{} {method} should fail: {res}",
            self.label()
        );
        Ok(res["error"].clone())
    }
}

fn marker(tenant: &str, user: &str) -> String {
    format!("marker-{tenant}-{user}-payload")
}

fn secret_value(tenant: &str) -> String {
    format!("sk-{tenant}-do-not-leak-0123456789")
}

/// Code and message of an error: what a client can tell apart.
fn shape(error: &Value) -> (Value, Value) {
    (error["code"].clone(), error["message"].clone())
}

/// Every marker that appears anywhere in `frames`.
fn markers_in(frames: &[Value]) -> BTreeSet<String> {
    let text: String = frames.iter().map(Value::to_string).collect();
    let mut seen = BTreeSet::new();
    for tenant in TENANTS {
        for user in OPERATORS {
            let m = marker(tenant, user);
            if text.contains(&m) {
                seen.insert(m);
            }
        }
    }
    seen
}

async fn goclaw_connect(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    Ok((ws, res))
}

/// An OpenClaw connect with `key` (an API key) as `auth.token`, no device.
async fn openclaw_with_key(
    url: &str,
    key: &str,
    scopes: &[&str],
) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    challenge_nonce(&mut ws).await?;
    let spec = ConnectSpec::operator(scopes)
        .with_client(ClientInfo::cli())
        .with_token(key);
    let res = ws.request("connect", spec.params_without_device()).await?;
    Ok((ws, res))
}

struct World {
    gw: TestGateway,
    _model: MockModel,
    owner: Sock,
    socks: Vec<Sock>,
    /// API key id and secret per (tenant, user).
    keys: Vec<(&'static str, &'static str, String, String)>,
}

impl World {
    fn sock(&mut self, tenant: &str, user: &str, dialect: Dialect) -> &mut Sock {
        self.socks
            .iter_mut()
            .find(|s| s.tenant == tenant && s.user == user && s.dialect == dialect)
            .expect("socket of the matrix")
    }

    fn key(&self, tenant: &str, user: &str) -> (String, String) {
        let (_, _, id, key) = self
            .keys
            .iter()
            .find(|(t, u, _, _)| *t == tenant && *u == user)
            .expect("key of the matrix");
        (id.clone(), key.clone())
    }

    async fn drain_all(&mut self) -> Vec<(String, Vec<Value>)> {
        let mut out = Vec::new();
        let owner_frames = self.owner.ws.drain(QUIET).await;
        out.push(("owner".to_owned(), owner_frames));
        for sock in &mut self.socks {
            let frames = sock.ws.drain(Duration::from_millis(50)).await;
            out.push((sock.label(), frames));
        }
        out
    }
}

/// Creates the tenants, users, API keys and every socket of the matrix.
async fn build(options: GatewayOptions) -> anyhow::Result<World> {
    let model = MockModel::start(Script::echo().with_delay(Duration::from_millis(5))).await?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        owner_ids: vec![OWNER.into()],
        auth: AuthOptions {
            auto_approve_local: Some(false),
            ..AuthOptions::default()
        },
        ..options
    })
    .await?;
    let url = gw.ws_url.clone();
    let token = gw.gateway_token.clone();

    let (ws, res) = goclaw_connect(&url, json!({"token": token, "user_id": OWNER})).await?;
    anyhow::ensure!(res["payload"]["role"] == "owner", "owner connect: {res}");
    let mut root = Sock {
        tenant: "default",
        user: OWNER,
        sees_tenant: true,
        dialect: Dialect::Goclaw,
        ws,
    };
    for tenant in TENANTS {
        root.ok(
            "tenants.create",
            json!({"id": tenant, "slug": tenant, "name": format!("Tenant {tenant}")}),
        )
        .await?;
    }

    let mut keys = Vec::new();
    for tenant in TENANTS {
        let (ws, res) = goclaw_connect(
            &url,
            json!({"token": token, "user_id": OWNER, "tenant_id": tenant}),
        )
        .await?;
        anyhow::ensure!(res["payload"]["tenant_id"] == tenant, "narrowed: {res}");
        let mut owner = Sock {
            tenant,
            user: OWNER,
            sees_tenant: true,
            dialect: Dialect::Goclaw,
            ws,
        };
        for (user, role, scopes) in [
            (
                "alice",
                "operator",
                json!(["operator.read", "operator.write"]),
            ),
            (
                "bob",
                "operator",
                json!(["operator.read", "operator.write"]),
            ),
            (ADMIN, "admin", json!(["operator.admin"])),
        ] {
            owner
                .ok(
                    "tenants.users.add",
                    json!({"user_id": user, "role": role, "display_name": user}),
                )
                .await?;
            let created = owner
                .ok(
                    "api_keys.create",
                    json!({"name": format!("{tenant}-{user}"), "scopes": scopes, "owner_id": user}),
                )
                .await?;
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            let key = created["key"].as_str().unwrap_or_default().to_owned();
            anyhow::ensure!(key.starts_with("clawgate_"), "key: {created}");
            keys.push((tenant, user, id, key));
        }
        owner.ws.close().await;
    }

    let mut socks = Vec::new();
    for &(tenant, user, _, ref key) in &keys {
        let admin = user == ADMIN;
        let (ws, res) = goclaw_connect(&url, json!({"token": key})).await?;
        anyhow::ensure!(res["ok"] == true, "goclaw {tenant}/{user}: {res}");
        assert_eq!(res["payload"]["tenant_id"], tenant, "{res}");
        assert_eq!(res["payload"]["user_id"], user, "{res}");
        assert_eq!(
            res["payload"]["role"],
            if admin { "admin" } else { "operator" },
            "{res}"
        );
        socks.push(Sock {
            tenant,
            user,
            sees_tenant: admin,
            dialect: Dialect::Goclaw,
            ws,
        });
        let scopes: &[&str] = if admin {
            &["operator.admin"]
        } else {
            &["operator.read", "operator.write"]
        };
        let (ws, res) = openclaw_with_key(&url, key, scopes).await?;
        anyhow::ensure!(res["ok"] == true, "openclaw {tenant}/{user}: {res}");
        socks.push(Sock {
            tenant,
            user,
            sees_tenant: admin,
            dialect: Dialect::OpenClaw,
            ws,
        });
    }

    // The owner watches tenant `ta` for the rest of the test.
    let (ws, res) = goclaw_connect(
        &url,
        json!({"token": token, "user_id": OWNER, "tenant_id": "ta"}),
    )
    .await?;
    anyhow::ensure!(res["ok"] == true, "owner in ta: {res}");
    root.ws.close().await;
    Ok(World {
        gw,
        _model: model,
        owner: Sock {
            tenant: "ta",
            user: OWNER,
            sees_tenant: true,
            dialect: Dialect::Goclaw,
            ws,
        },
        socks,
        keys,
    })
}

/// Each operator runs one chat (alice over OpenClaw, bob over goclaw) whose
/// reply carries its marker; then every socket's frames are checked.
async fn runs_and_events(world: &mut World) -> anyhow::Result<Vec<(String, String)>> {
    let mut runs = Vec::new();
    for tenant in TENANTS {
        let alice = world.sock(tenant, "alice", Dialect::OpenClaw);
        let idem = format!("run-{tenant}-alice");
        let started = alice
            .ok(
                "chat.send",
                json!({"sessionKey": "main", "message": marker(tenant, "alice"), "idempotencyKey": idem}),
            )
            .await?;
        let run_id = started["runId"].as_str().unwrap_or_default().to_owned();
        alice
            .ws
            .event_where(|e| {
                e["event"] == "chat"
                    && e["payload"]["runId"] == run_id.as_str()
                    && e["payload"]["state"] == "final"
            })
            .await?;
        runs.push((tenant.to_owned(), run_id));

        let bob = world.sock(tenant, "bob", Dialect::Goclaw);
        let done = bob
            .ok(
                "chat.send",
                json!({"sessionKey": "main", "message": marker(tenant, "bob")}),
            )
            .await?;
        assert_eq!(done["content"], marker(tenant, "bob"), "{done}");
    }

    // Who saw which marker, on every socket of both dialects.
    let seen = world.drain_all().await;
    let owner_markers = markers_in(&seen[0].1);
    let expected_owner: BTreeSet<String> = OPERATORS.iter().map(|u| marker("ta", u)).collect();
    assert_eq!(owner_markers, expected_owner, "owner narrowed to ta");
    for (sock, (label, frames)) in world.socks.iter().zip(&seen[1..]) {
        let expected: BTreeSet<String> = OPERATORS
            .iter()
            .filter(|u| sock.sees_tenant || **u == sock.user)
            .map(|u| marker(sock.tenant, u))
            .collect();
        assert_eq!(markers_in(frames), expected, "events seen by {label}");
        let kinds: BTreeSet<&str> = frames.iter().filter_map(|f| f["event"].as_str()).collect();
        let wanted: &[&str] = match sock.dialect {
            Dialect::OpenClaw => &["agent", "chat"],
            Dialect::Goclaw => &["run.started", "chunk", "run.completed"],
        };
        // Every socket saw each event kind of its dialect, except alice's OpenClaw
        // socket: its only visible run is its own, whose final `chat` its wait took.
        if sock.sees_tenant || !(sock.user == "alice" && sock.dialect == Dialect::OpenClaw) {
            for kind in wanted {
                assert!(kinds.contains(kind), "{label} lacks {kind}: {kinds:?}");
            }
        }
    }
    Ok(runs)
}

/// Checks a `sessions.list` answer of `tenant`: one session per user of
/// `users`, the total counting exactly those, and (OpenClaw, whose entries carry
/// previews) no chat of another tenant or user.
fn check_session_list(list: &Value, dialect: Dialect, tenant: &str, users: &[&str], who: &str) {
    let sessions = list["sessions"].as_array().cloned().unwrap_or_default();
    let owners: BTreeSet<String> = sessions
        .iter()
        .filter_map(|s| s["userId"].as_str().or(s["user_id"].as_str()))
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = users.iter().map(|u| (*u).to_owned()).collect();
    assert_eq!(sessions.len(), users.len(), "{who} lists {list}");
    assert_eq!(owners, expected, "{who} lists sessions of {owners:?}");
    let total = match dialect {
        Dialect::OpenClaw => &list["totalCount"],
        Dialect::Goclaw => &list["total"],
    };
    assert_eq!(total, &json!(users.len()), "{who} total: {list}");
    if dialect == Dialect::OpenClaw {
        let allowed: BTreeSet<String> = users.iter().map(|u| marker(tenant, u)).collect();
        assert_eq!(
            markers_in(std::slice::from_ref(list)),
            allowed,
            "{who} previews: {list}"
        );
    }
}

/// `sessions.list` params: OpenClaw's with previews (`includeLastMessage`).
fn list_params(dialect: Dialect) -> Value {
    match dialect {
        Dialect::OpenClaw => json!({"includeLastMessage": true}),
        Dialect::Goclaw => json!({}),
    }
}

/// Transcripts, session lists, replay and abort by foreign run ids.
async fn sessions_and_transcripts(
    world: &mut World,
    runs: &[(String, String)],
) -> anyhow::Result<()> {
    for tenant in TENANTS {
        for dialect in [Dialect::OpenClaw, Dialect::Goclaw] {
            for user in OPERATORS {
                let sock = world.sock(tenant, user, dialect);
                let history = sock
                    .ok("chat.history", json!({"sessionKey": "main"}))
                    .await?;
                let expected: BTreeSet<String> = [marker(tenant, user)].into();
                assert_eq!(
                    markers_in(&[history]),
                    expected,
                    "history of {}",
                    sock.label()
                );
                let list = sock.ok("sessions.list", list_params(dialect)).await?;
                check_session_list(&list, dialect, tenant, &[user], &sock.label());
            }
            let admin = world.sock(tenant, ADMIN, dialect);
            // An admin's own key namespace is its own: no one else's transcript.
            let history = admin
                .ok("chat.history", json!({"sessionKey": "main"}))
                .await?;
            assert!(markers_in(&[history]).is_empty(), "admin history");
            // Its session list covers the tenant, and only the tenant.
            let list = admin.ok("sessions.list", list_params(dialect)).await?;
            let label = admin.label();
            check_session_list(&list, dialect, tenant, &OPERATORS, &label);
        }
    }
    let owner_list = world.owner.ok("sessions.list", json!({})).await?;
    check_session_list(
        &owner_list,
        Dialect::Goclaw,
        "ta",
        &OPERATORS,
        "owner in ta",
    );

    // A foreign run id behaves exactly like one that does not exist.
    let (_, run_a) = runs.iter().find(|(t, _)| t == "ta").expect("run in ta");
    for (tenant, user) in [("ta", "bob"), ("tb", "alice"), ("tb", ADMIN)] {
        let sock = world.sock(tenant, user, Dialect::OpenClaw);
        let foreign = sock
            .ws
            .request("chat.replay", json!({"runId": run_a, "afterSeq": 0}))
            .await?;
        let missing = sock
            .ws
            .request(
                "chat.replay",
                json!({"runId": "no-such-run", "afterSeq": 0}),
            )
            .await?;
        assert_eq!(foreign["ok"], missing["ok"], "{foreign} vs {missing}");
        assert_eq!(
            shape(&foreign["error"]),
            shape(&missing["error"]),
            "replay by {}",
            sock.label()
        );
        assert!(markers_in(&[foreign]).is_empty());
        let foreign = sock
            .ws
            .request("chat.abort", json!({"sessionKey": "main", "runId": run_a}))
            .await?;
        let missing = sock
            .ws
            .request(
                "chat.abort",
                json!({"sessionKey": "main", "runId": "no-such-run"}),
            )
            .await?;
        assert_eq!(foreign["ok"], missing["ok"], "{foreign} vs {missing}");
        assert_eq!(foreign["payload"], missing["payload"], "abort payload");
        assert_eq!(shape(&foreign["error"]), shape(&missing["error"]));
    }
    Ok(())
}

/// API keys, users, tenants and secrets.
async fn management(world: &mut World) -> anyhow::Result<()> {
    let (tb_key_id, _) = world.key("tb", "alice");
    for dialect in [Dialect::OpenClaw, Dialect::Goclaw] {
        // Operators manage nothing; the refusal is the same in both tenants.
        let a = world
            .sock("ta", "alice", dialect)
            .err("api_keys.list", json!({}))
            .await?;
        let b = world
            .sock("tb", "alice", dialect)
            .err("api_keys.list", json!({}))
            .await?;
        assert_eq!(shape(&a), shape(&b));
        for tenant in TENANTS {
            let admin = world.sock(tenant, ADMIN, dialect);
            let keys = admin.ok("api_keys.list", json!({})).await?;
            let keys = keys["keys"].as_array().cloned().unwrap_or_default();
            assert_eq!(keys.len(), 3, "{tenant} admin lists its tenant's keys");
            for key in &keys {
                let name = key["name"].as_str().unwrap_or_default();
                assert!(name.starts_with(tenant), "{tenant} lists {key}");
            }
        }
    }
    // Revoking another tenant's key fails like a missing id and changes nothing.
    let admin_a = world.sock("ta", ADMIN, Dialect::Goclaw);
    let foreign = admin_a
        .err("api_keys.revoke", json!({"id": tb_key_id}))
        .await?;
    let missing = admin_a
        .err("api_keys.revoke", json!({"id": "00000000-no-such-key"}))
        .await?;
    assert_eq!(shape(&foreign), shape(&missing));
    let (_, tb_key) = world.key("tb", "alice");
    let (ws, res) = goclaw_connect(&world.gw.ws_url, json!({"token": tb_key})).await?;
    assert_eq!(res["ok"], true, "tb key still works: {res}");
    ws.close().await;

    // Tenants: each sees its own; the owner sees all; foreign ids look missing.
    for tenant in TENANTS {
        for user in [OPERATORS[0], ADMIN] {
            let sock = world.sock(tenant, user, Dialect::OpenClaw);
            let list = sock.ok("tenants.list", json!({})).await?;
            let ids: Vec<&str> = list["tenants"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t["id"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(ids, [tenant], "tenants seen by {}", sock.label());
            let other = if tenant == "ta" { "tb" } else { "ta" };
            let foreign = sock.err("tenants.get", json!({"tenantId": other})).await?;
            let missing = sock.err("tenants.get", json!({"tenantId": "nope"})).await?;
            assert_eq!(shape(&foreign), shape(&missing));
            let refused = sock
                .err("tenants.create", json!({"slug": "evil", "name": "Evil"}))
                .await?;
            assert!(refused["code"] != "NOT_FOUND", "create refused: {refused}");
        }
    }
    let all = world.owner.ok("tenants.list", json!({})).await?;
    let ids: BTreeSet<&str> = all["tenants"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        ids.contains("ta") && ids.contains("tb"),
        "owner lists every tenant: {all}"
    );

    // Users: operators see themselves; admins their tenant; other tenants look missing.
    for tenant in TENANTS {
        let alice = world.sock(tenant, "alice", Dialect::Goclaw);
        let users = alice.ok("tenants.users.list", json!({})).await?;
        let users = users["users"].as_array().cloned().unwrap_or_default();
        assert_eq!(users.len(), 1, "{users:?}");
        assert_eq!(users[0]["user_id"], "alice");
        assert_eq!(users[0]["tenant_id"], tenant);
        let admin = world.sock(tenant, ADMIN, Dialect::OpenClaw);
        let users = admin.ok("tenants.users.list", json!({})).await?;
        let users = users["users"].as_array().cloned().unwrap_or_default();
        assert_eq!(users.len(), 3, "{users:?}");
        assert!(users.iter().all(|u| u["tenantId"] == tenant), "{users:?}");
        let other = if tenant == "ta" { "tb" } else { "ta" };
        let foreign = admin
            .err(
                "tenants.users.add",
                json!({"tenantId": other, "userId": "eve", "role": "operator"}),
            )
            .await?;
        let missing = admin
            .err(
                "tenants.users.add",
                json!({"tenantId": "nope", "userId": "eve", "role": "operator"}),
            )
            .await?;
        assert_eq!(shape(&foreign), shape(&missing));
        let foreign = admin
            .err("tenants.users.list", json!({"tenantId": other}))
            .await?;
        let missing = admin
            .err("tenants.users.list", json!({"tenantId": "nope"}))
            .await?;
        assert_eq!(shape(&foreign), shape(&missing));
    }

    // Secrets: write-only, per tenant, admins only.
    for tenant in TENANTS {
        let admin = world.sock(tenant, ADMIN, Dialect::Goclaw);
        let set = admin
            .ok(
                "secrets.set",
                json!({"name": "openai", "value": secret_value(tenant)}),
            )
            .await?;
        assert!(!set.to_string().contains(&secret_value(tenant)), "{set}");
    }
    for tenant in TENANTS {
        let admin = world.sock(tenant, ADMIN, Dialect::OpenClaw);
        let list = admin.ok("secrets.list", json!({})).await?;
        let secrets = list["secrets"].as_array().cloned().unwrap_or_default();
        assert_eq!(secrets.len(), 1, "{list}");
        assert_eq!(secrets[0]["name"], "openai");
        let text = list.to_string();
        assert!(!text.contains("sk-"), "no value in the list: {text}");
        let alice = world.sock(tenant, "alice", Dialect::OpenClaw);
        alice.err("secrets.list", json!({})).await?;
    }
    // Deleting in ta leaves tb's secret alone.
    world
        .sock("ta", ADMIN, Dialect::Goclaw)
        .ok("secrets.delete", json!({"name": "openai"}))
        .await?;
    let tb = world
        .sock("tb", ADMIN, Dialect::Goclaw)
        .ok("secrets.list", json!({}))
        .await?;
    assert_eq!(tb["secrets"].as_array().map(Vec::len), Some(1), "{tb}");

    // No frame anywhere carried a secret value.
    for (label, frames) in world.drain_all().await {
        let text: String = frames.iter().map(Value::to_string).collect();
        for tenant in TENANTS {
            assert!(
                !text.contains(&secret_value(tenant)),
                "{label} saw a secret"
            );
        }
    }
    Ok(())
}

/// OpenClaw device pairing inside tenant `ta`: events and requests stay there.
async fn pairing(world: &mut World) -> anyhow::Result<()> {
    let url = world.gw.ws_url.clone();
    let (_, alice_key) = world.key("ta", "alice");
    let device = DeviceIdentity::generate();
    let spec = ConnectSpec::operator(&["operator.read"]).with_token(&alice_key);
    let (mut ws, res) = connect(&url, &device, &spec).await?;
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(!request_id.is_empty(), "pairing required: {res}");
    let _ = ws.expect_close().await;

    let admin_a = world.sock("ta", ADMIN, Dialect::OpenClaw);
    admin_a
        .ws
        .event_where(|e| {
            e["event"] == "device.pair.requested" && e["payload"]["requestId"] == request_id
        })
        .await?;
    let frames = world.drain_all().await;
    for (sock, (label, frames)) in world.socks.iter().zip(&frames[1..]) {
        let text: String = frames.iter().map(Value::to_string).collect();
        if sock.tenant == "tb" || !sock.sees_tenant {
            assert!(!text.contains(&request_id), "{label} saw ta's pairing");
        }
    }

    let admin_b = world.sock("tb", ADMIN, Dialect::OpenClaw);
    let list = admin_b.ok("device.pair.list", json!({})).await?;
    assert!(!list.to_string().contains(&request_id), "{list}");
    let foreign = admin_b
        .err("device.pair.approve", json!({"requestId": request_id}))
        .await?;
    let missing = admin_b
        .err(
            "device.pair.approve",
            json!({"requestId": "no-such-request"}),
        )
        .await?;
    assert_eq!(shape(&foreign), shape(&missing));

    let admin_a = world.sock("ta", ADMIN, Dialect::OpenClaw);
    let list = admin_a.ok("device.pair.list", json!({})).await?;
    assert!(list.to_string().contains(&request_id), "{list}");
    admin_a
        .ok("device.pair.approve", json!({"requestId": request_id}))
        .await?;
    let frames = world.drain_all().await;
    for (sock, (label, frames)) in world.socks.iter().zip(&frames[1..]) {
        let text: String = frames.iter().map(Value::to_string).collect();
        if sock.tenant == "tb" {
            assert!(!text.contains(&request_id), "{label} saw ta's resolution");
        }
    }

    // The device, now paired in ta, cannot be touched from tb: every device
    // method answers exactly as for a device that does not exist.
    let device_id = device.device_id();
    let admin_b = world.sock("tb", ADMIN, Dialect::OpenClaw);
    for (method, foreign, missing) in [
        (
            "device.pair.remove",
            json!({"deviceId": device_id}),
            json!({"deviceId": "0".repeat(64)}),
        ),
        (
            "device.token.rotate",
            json!({"deviceId": device_id, "role": "operator"}),
            json!({"deviceId": "0".repeat(64), "role": "operator"}),
        ),
        (
            "device.token.revoke",
            json!({"deviceId": device_id, "role": "operator"}),
            json!({"deviceId": "0".repeat(64), "role": "operator"}),
        ),
        (
            "device.pair.reject",
            json!({"requestId": request_id}),
            json!({"requestId": "no-such-request"}),
        ),
    ] {
        let foreign = admin_b.ws.request(method, foreign).await?;
        let missing = admin_b.ws.request(method, missing).await?;
        assert_eq!(
            foreign["ok"], missing["ok"],
            "{method}: {foreign} vs {missing}"
        );
        assert_eq!(
            shape(&foreign["error"]),
            shape(&missing["error"]),
            "{method} from tb"
        );
    }
    // The device still connects in ta with its own token after all that.
    let (_, hello) = auth_support::connect_ok(&url, &device, &spec).await?;
    assert_eq!(hello["type"], "hello-ok");
    Ok(())
}

/// Removing `bob` from `ta` closes only ta's bob; disabling `tb` refuses connects.
async fn removal_and_disable(world: &mut World) -> anyhow::Result<()> {
    world
        .sock("ta", ADMIN, Dialect::Goclaw)
        .ok("tenants.users.remove", json!({"user_id": "bob"}))
        .await?;
    for dialect in [Dialect::OpenClaw, Dialect::Goclaw] {
        let bob_a = world.sock("ta", "bob", dialect);
        let closed = bob_a.ws.expect_close().await?;
        assert!(closed.code.is_some(), "ta/bob closed: {closed:?}");
        let bob_b = world.sock("tb", "bob", dialect);
        bob_b.ok("status", json!({})).await?;
    }
    let url = world.gw.ws_url.clone();
    let (_, bob_a_key) = world.key("ta", "bob");
    let (_, res) = goclaw_connect(&url, json!({"token": bob_a_key})).await?;
    assert_eq!(res["ok"], false, "removed user's key: {res}");
    assert_eq!(res["error"]["code"], "UNAUTHORIZED", "{res}");

    world
        .owner
        .ok(
            "tenants.update",
            json!({"tenant_id": "tb", "status": "disabled"}),
        )
        .await?;
    // Every live socket of tb closes, on every dialect; ta's stay open.
    for sock in world.socks.iter_mut().filter(|s| s.tenant == "tb") {
        let closed = sock.ws.expect_close().await?;
        assert_eq!(
            closed.code,
            Some(4001),
            "{} closed: {closed:?}",
            sock.label()
        );
    }
    world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("status", json!({}))
        .await?;
    let (_, alice_b_key) = world.key("tb", "alice");
    let (_, res) = goclaw_connect(&url, json!({"token": alice_b_key})).await?;
    assert_eq!(res["ok"], false, "disabled tenant: {res}");
    assert_eq!(res["error"]["code"], "TENANT_ACCESS_REVOKED", "{res}");
    let (_, alice_a_key) = world.key("ta", "alice");
    let (ws, res) = goclaw_connect(&url, json!({"token": alice_a_key})).await?;
    assert_eq!(res["ok"], true, "ta unaffected: {res}");
    ws.close().await;
    Ok(())
}

async fn matrix(options: GatewayOptions) -> anyhow::Result<()> {
    let mut world = build(options).await?;
    let runs = runs_and_events(&mut world).await?;
    sessions_and_transcripts(&mut world, &runs).await?;
    management(&mut world).await?;
    pairing(&mut world).await?;
    removal_and_disable(&mut world).await?;
    Ok(())
}

#[tokio::test]
async fn isolation_matrix_on_sqlite() -> anyhow::Result<()> {
    matrix(GatewayOptions::default()).await
}

#[tokio::test]
async fn isolation_matrix_on_postgres_under_rls() -> anyhow::Result<()> {
    matrix(GatewayOptions {
        database: GatewayDatabase::FreshPostgres,
        ..GatewayOptions::default()
    })
    .await
}
