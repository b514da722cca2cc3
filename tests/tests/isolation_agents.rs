//! The isolation matrix, continued (see `isolation_matrix.rs`), for agents, the
//! tool catalog, tool events and exec approvals: end to end over real
//! WebSockets in both dialects, on SQLite and on PostgreSQL under row-level
//! security, with the `exec` tool gated by approvals.
//!
//! Two tenants hold users with the *same* ids (`alice`, `bob` operators,
//! `approver` an operator with `operator.approvals`, `admin` an admin), each
//! connected with an API key bound to its tenant and user, so nothing can pass
//! by user id alone. Checked, in both directions where it makes sense:
//! - agents: a tenant's agents are absent from the other's lists, and reading,
//!   changing, deleting, running or cataloguing them from the other tenant
//!   fails exactly like an agent that does not exist; an agent id both tenants
//!   use names two independent agents;
//! - tool events: a run's `agent` tool stream (OpenClaw `caps:["tool-events"]`)
//!   and goclaw `tool.call`/`tool.result` reach its tenant only; the
//!   `sessions_list` tool lists only the run's user's sessions; a run id (an
//!   idempotency key) reused by the other tenant starts a run of its own;
//! - providers: a tenant's own provider, its models and its key serve only its
//!   runs; the other tenant lists, deletes and reaches none of it, and its
//!   provider of the same id is its own, called with its own key;
//! - exec approvals: the request reaches the tenant's approvers only; the
//!   other tenant cannot list, read, wait on or decide it (by full id or by
//!   prefix), even while it reuses the run id; operators without
//!   `operator.approvals` cannot either; the tenant's approver decides it and
//!   the run completes; another tenant's approvers do not count as someone who
//!   could answer (the approval then expires at once).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clawgate_tests::gateway::{AuthOptions, GatewayDatabase, GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ClientInfo, ConnectSpec, challenge_nonce};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const OWNER: &str = "root";
const TENANTS: [&str; 2] = ["ta", "tb"];
const ADMIN: &str = "admin";
const APPROVER: &str = "approver";
/// How long a socket that must not see an event is watched.
const QUIET: Duration = Duration::from_millis(500);
/// Approvals expire after this; an approval nobody could answer, at once.
const APPROVAL_TIMEOUT_MS: u64 = 15_000;

const RW: &[&str] = &["operator.read", "operator.write"];
const APPROVALS: &[&str] = &["operator.read", "operator.write", "operator.approvals"];
const ADMIN_SCOPES: &[&str] = &["operator.admin"];

/// A's agent that tenant B must not find.
const A_AGENT: &str = "ta-secret-helper";
/// The agent id both tenants create.
const SHARED: &str = "shared";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenClaw,
    Goclaw,
}

/// One connected socket and who it is.
struct Sock {
    tenant: &'static str,
    user: &'static str,
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

/// Code and message of an error: what a client can tell apart.
fn shape(error: &Value) -> (Value, Value) {
    (error["code"].clone(), error["message"].clone())
}

fn marker(tenant: &str, what: &str) -> String {
    format!("marker-{tenant}-{what}-payload")
}

/// The needles that appear anywhere in `frames`.
fn mentions<'n>(frames: &[Value], needles: &[&'n str]) -> Vec<&'n str> {
    let text: String = frames.iter().map(Value::to_string).collect();
    needles
        .iter()
        .copied()
        .filter(|needle| text.contains(needle))
        .collect()
}

/// Reads frames until the terminal `chat` event of `run_id`; ticks left out.
async fn until_terminal(ws: &mut WsClient, run_id: &str) -> anyhow::Result<Vec<Value>> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv().await?;
        if frame["event"] == "tick" {
            continue;
        }
        let done = frame["event"] == "chat"
            && frame["payload"]["runId"] == run_id
            && frame["payload"]["state"] != "delta";
        frames.push(frame);
        if done {
            return Ok(frames);
        }
    }
}

/// The `data` of every OpenClaw `agent` tool-stream frame of `run_id`.
fn tool_stream(frames: &[Value], run_id: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| {
            f["event"] == "agent"
                && f["payload"]["stream"] == "tool"
                && f["payload"]["runId"] == run_id
        })
        .map(|f| f["payload"]["data"].clone())
        .collect()
}

/// The tool result the model was sent for `call_id`.
fn tool_result(model: &MockModel, call_id: &str) -> Option<String> {
    model.requests().iter().find_map(|request| {
        request.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
            .and_then(|m| m["content"].as_str().map(str::to_owned))
    })
}

async fn goclaw_connect(url: &str, params: Value) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws.request("connect", params).await?;
    Ok((ws, res))
}

/// An OpenClaw connect with `key` (an API key) as `auth.token`, no device,
/// asking for the tool stream.
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
    let mut params = spec.params_without_device();
    params["caps"] = json!(["tool-events"]);
    let res = ws.request("connect", params).await?;
    Ok((ws, res))
}

struct World {
    _gw: TestGateway,
    model: MockModel,
    socks: Vec<Sock>,
    /// The exec workspace (outlives the gateway: dropped after it).
    workspace: tempfile::TempDir,
}

impl World {
    fn sock(&mut self, tenant: &str, user: &str, dialect: Dialect) -> &mut Sock {
        self.socks
            .iter_mut()
            .find(|s| s.tenant == tenant && s.user == user && s.dialect == dialect)
            .expect("socket of the world")
    }

    /// Every frame each socket of `tenant` got within [`QUIET`] (after its
    /// backlog), all sockets at once.
    async fn drain(&mut self, tenant: &str) -> Vec<(String, Vec<Value>)> {
        let drains = self
            .socks
            .iter_mut()
            .filter(|s| s.tenant == tenant)
            .map(|s| async move {
                let frames = s.ws.drain(QUIET).await;
                (s.label(), frames)
            });
        futures_util::future::join_all(drains).await
    }

    /// Fails if a socket of `tenant` got a frame mentioning any of `needles`.
    async fn assert_unseen(&mut self, tenant: &str, needles: &[&str], what: &str) {
        for (label, frames) in self.drain(tenant).await {
            let seen = mentions(&frames, needles);
            assert!(
                seen.is_empty(),
                "{label} saw {what} ({seen:?}): {frames:#?}"
            );
        }
    }
}

/// Tenants, users, API keys and the sockets: per tenant, `alice` and `admin`
/// in both dialects, `bob` and `approver` over OpenClaw (every OpenClaw one
/// with `caps:["tool-events"]`).
async fn build(database: GatewayDatabase) -> anyhow::Result<World> {
    let model = MockModel::start(Script::echo().with_delay(Duration::from_millis(5))).await?;
    let workspace = tempfile::tempdir()?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        owner_ids: vec![OWNER.into()],
        auth: AuthOptions {
            auto_approve_local: Some(false),
            ..AuthOptions::default()
        },
        database,
        exec_workspace: Some(workspace.path().to_path_buf()),
        approval_timeout_ms: Some(APPROVAL_TIMEOUT_MS),
        ..GatewayOptions::default()
    })
    .await?;
    let url = gw.ws_url.clone();
    let token = gw.gateway_token.clone();

    let (mut root, res) = goclaw_connect(&url, json!({"token": token, "user_id": OWNER})).await?;
    anyhow::ensure!(res["payload"]["role"] == "owner", "owner connect: {res}");
    for tenant in TENANTS {
        let res = root
            .request(
                "tenants.create",
                json!({"id": tenant, "slug": tenant, "name": format!("Tenant {tenant}")}),
            )
            .await?;
        anyhow::ensure!(res["ok"] == true, "tenants.create {tenant}: {res}");
    }
    root.close().await;

    let mut socks = Vec::new();
    for tenant in TENANTS {
        let (mut owner, res) = goclaw_connect(
            &url,
            json!({"token": token, "user_id": OWNER, "tenant_id": tenant}),
        )
        .await?;
        anyhow::ensure!(res["payload"]["tenant_id"] == tenant, "narrowed: {res}");
        for (user, role, scopes) in [
            ("alice", "operator", RW),
            ("bob", "operator", RW),
            (APPROVER, "operator", APPROVALS),
            (ADMIN, "admin", ADMIN_SCOPES),
        ] {
            let res = owner
                .request(
                    "tenants.users.add",
                    json!({"user_id": user, "role": role, "display_name": user}),
                )
                .await?;
            anyhow::ensure!(res["ok"] == true, "users.add {tenant}/{user}: {res}");
            let (_, key) = owner
                .create_api_key(
                    json!({"name": format!("{tenant}-{user}"), "scopes": scopes, "owner_id": user}),
                )
                .await?;
            let (ws, res) = openclaw_with_key(&url, &key, scopes).await?;
            anyhow::ensure!(res["ok"] == true, "openclaw {tenant}/{user}: {res}");
            let granted = res["payload"]["auth"]["scopes"].to_string();
            for scope in scopes {
                anyhow::ensure!(granted.contains(scope), "{tenant}/{user} scopes: {res}");
            }
            socks.push(Sock {
                tenant,
                user,
                dialect: Dialect::OpenClaw,
                ws,
            });
            if user == "alice" || user == ADMIN {
                let (ws, res) = goclaw_connect(&url, json!({"token": key})).await?;
                anyhow::ensure!(res["ok"] == true, "goclaw {tenant}/{user}: {res}");
                anyhow::ensure!(res["payload"]["tenant_id"] == tenant, "{res}");
                anyhow::ensure!(res["payload"]["user_id"] == user, "{res}");
                socks.push(Sock {
                    tenant,
                    user,
                    dialect: Dialect::Goclaw,
                    ws,
                });
            }
        }
        owner.close().await;
    }
    Ok(World {
        _gw: gw,
        model,
        socks,
        workspace,
    })
}

/// The ids of an `agents.list` answer (either dialect).
fn agent_ids(list: &Value) -> BTreeSet<String> {
    list["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect()
}

/// The system message of the model's latest request.
fn last_system_prompt(model: &MockModel) -> Option<String> {
    let requests = model.requests();
    let messages = requests.last()?.messages();
    messages
        .into_iter()
        .find(|(role, _)| role == "system")
        .map(|(_, text)| text)
}

/// Runs `message` in `session_key` from `tenant`'s alice over OpenClaw and
/// waits for its final `chat`; returns the frames up to it.
async fn alice_chat(
    world: &mut World,
    tenant: &str,
    session_key: &str,
    message: &str,
    idempotency_key: &str,
) -> anyhow::Result<Vec<Value>> {
    let alice = world.sock(tenant, "alice", Dialect::OpenClaw);
    let started = alice
        .ok(
            "chat.send",
            json!({"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}),
        )
        .await?;
    let run_id = started["runId"].as_str().unwrap_or_default().to_owned();
    let frames = until_terminal(&mut alice.ws, &run_id).await?;
    let last = frames.last().cloned().unwrap_or_default();
    anyhow::ensure!(last["payload"]["state"] == "final", "{frames:#?}");
    Ok(frames)
}

/// Agents and the tool catalog: A's agent is invisible to B; an id both use
/// names two agents.
async fn agents(world: &mut World) -> anyhow::Result<()> {
    let created = world
        .sock("ta", ADMIN, Dialect::OpenClaw)
        .ok(
            "agents.create",
            json!({
                "name": "Ta Secret Helper", "workspace": "ta/secret", "model": "ta-secret-model",
                "emoji": "🅰", "systemPrompt": "prompt-ta-secret-helper", "tools": ["sessions_list"],
            }),
        )
        .await?;
    assert_eq!(created["agentId"], A_AGENT, "{created}");
    // The same name in both tenants: no "exists" from B, two independent agents.
    for (tenant, emoji) in [("ta", "🅰"), ("tb", "🅱")] {
        let created = world
            .sock(tenant, ADMIN, Dialect::OpenClaw)
            .ok(
                "agents.create",
                json!({
                    "name": "Shared", "workspace": "", "emoji": emoji,
                    "systemPrompt": format!("prompt-{tenant}-shared"),
                }),
            )
            .await?;
        assert_eq!(created["agentId"], SHARED, "{tenant}: {created}");
    }

    // Lists, in both dialects, for operators and admins.
    for tenant in TENANTS {
        let (expected, foreign): (&[&str], &[&str]) = if tenant == "ta" {
            (&["main", SHARED, A_AGENT], &["🅱", "prompt-tb"])
        } else {
            (&["main", SHARED], &[A_AGENT, "Ta Secret", "🅰", "prompt-ta"])
        };
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        for user in ["alice", ADMIN] {
            for dialect in [Dialect::OpenClaw, Dialect::Goclaw] {
                let sock = world.sock(tenant, user, dialect);
                let list = sock.ok("agents.list", json!({})).await?;
                assert_eq!(agent_ids(&list), expected, "{}: {list}", sock.label());
                let seen = mentions(std::slice::from_ref(&list), foreign);
                assert!(seen.is_empty(), "{} lists {seen:?}: {list}", sock.label());
            }
        }
    }
    let own = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("agent.identity.get", json!({"agentId": A_AGENT}))
        .await?;
    assert_eq!(own["name"], "Ta Secret Helper", "{own}");
    let own = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("tools.catalog", json!({"agentId": A_AGENT}))
        .await?;
    assert_eq!(own["agentId"], A_AGENT, "{own}");

    // Every OpenClaw read naming A's agent fails from B like a missing agent.
    let calls = world.model.requests().len();
    for user in ["alice", "bob", ADMIN] {
        let sock = world.sock("tb", user, Dialect::OpenClaw);
        for agent in [A_AGENT, "no-such-agent"] {
            let key = format!("agent:{agent}:main");
            for (method, params) in [
                ("agent.identity.get", json!({"agentId": agent})),
                ("agent.identity.get", json!({"sessionKey": key})),
                ("tools.catalog", json!({"agentId": agent})),
                ("tools.effective", json!({"sessionKey": key})),
                (
                    "tools.effective",
                    json!({"sessionKey": "main", "agentId": agent}),
                ),
                ("models.list", json!({"agentId": agent})),
                (
                    "chat.send",
                    json!({"sessionKey": key, "message": "hi", "idempotencyKey": format!("tb-{user}-{agent}")}),
                ),
            ] {
                let error = sock.err(method, params.clone()).await?;
                assert_eq!(
                    shape(&error),
                    (
                        json!("INVALID_REQUEST"),
                        json!(format!("unknown agent: {agent}"))
                    ),
                    "{} {method} {params}",
                    sock.label()
                );
            }
        }
    }
    // goclaw: A's agent's identity and a run of it are refused as for a
    // missing agent.
    for user in ["alice", ADMIN] {
        let sock = world.sock("tb", user, Dialect::Goclaw);
        for agent in [A_AGENT, "no-such-agent"] {
            let error = sock
                .err("agent.identity.get", json!({"agentId": agent}))
                .await?;
            assert_eq!(
                shape(&error),
                (json!("NOT_FOUND"), json!(format!("unknown agent: {agent}"))),
                "{} agent.identity.get of {agent}",
                sock.label()
            );
            let error = sock
                .err(
                    "chat.send",
                    json!({"sessionKey": format!("agent:{agent}:main"), "message": "hi"}),
                )
                .await?;
            assert_eq!(
                shape(&error),
                (json!("NOT_FOUND"), json!(format!("unknown agent: {agent}"))),
                "{} chat.send to {agent}",
                sock.label()
            );
        }
    }
    assert_eq!(world.model.requests().len(), calls, "B ran A's agent");
    // ... and left no session behind.
    for user in ["alice", ADMIN] {
        let list = world
            .sock("tb", user, Dialect::OpenClaw)
            .ok("sessions.list", json!({}))
            .await?;
        assert!(!list.to_string().contains(A_AGENT), "tb/{user}: {list}");
    }

    // B's admin cannot change or delete A's agent: unknown, like a missing one.
    let admin_b = world.sock("tb", ADMIN, Dialect::OpenClaw);
    for agent in [A_AGENT, "no-such-agent"] {
        for (method, params) in [
            (
                "agents.update",
                json!({"agentId": agent, "systemPrompt": "hijacked", "name": "Hijacked"}),
            ),
            (
                "agents.delete",
                json!({"agentId": agent, "deleteFiles": true}),
            ),
        ] {
            let error = admin_b.err(method, params).await?;
            assert_eq!(
                shape(&error),
                (
                    json!("INVALID_REQUEST"),
                    json!(format!("unknown agent: {agent}"))
                ),
                "tb {method} {agent}"
            );
        }
    }

    // B changes and then deletes its `shared`; A's stays as it was.
    admin_b
        .ok(
            "agents.update",
            json!({"agentId": SHARED, "name": "Shared of B", "systemPrompt": "prompt-tb-shared-2"}),
        )
        .await?;
    let identity = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("agent.identity.get", json!({"agentId": SHARED}))
        .await?;
    assert_eq!(
        (&identity["name"], &identity["emoji"]),
        (&json!("Shared"), &json!("🅰")),
        "{identity}"
    );
    alice_chat(
        world,
        "ta",
        "agent:shared:ta-check",
        "hello",
        "ta-shared-run",
    )
    .await?;
    assert_eq!(
        last_system_prompt(&world.model).as_deref(),
        Some("prompt-ta-shared")
    );
    alice_chat(
        world,
        "tb",
        "agent:shared:tb-check",
        "hello",
        "tb-shared-run",
    )
    .await?;
    assert_eq!(
        last_system_prompt(&world.model).as_deref(),
        Some("prompt-tb-shared-2")
    );
    let deleted = world
        .sock("tb", ADMIN, Dialect::OpenClaw)
        .ok("agents.delete", json!({"agentId": SHARED}))
        .await?;
    assert_eq!(deleted["agentId"], SHARED, "{deleted}");
    let list = world
        .sock("tb", ADMIN, Dialect::Goclaw)
        .ok("agents.list", json!({}))
        .await?;
    assert_eq!(agent_ids(&list), BTreeSet::from(["main".to_owned()]));
    let list = world
        .sock("ta", ADMIN, Dialect::Goclaw)
        .ok("agents.list", json!({}))
        .await?;
    assert!(agent_ids(&list).contains(SHARED), "A's shared: {list}");
    let identity = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("agent.identity.get", json!({"agentId": A_AGENT}))
        .await?;
    assert_eq!(
        (&identity["name"], &identity["emoji"]),
        (&json!("Ta Secret Helper"), &json!("🅰")),
        "A's agent after B's attempts: {identity}"
    );
    Ok(())
}

/// A's tool run: its tool stream reaches A only; `sessions_list` lists only
/// the run's user's sessions; B reusing the run id runs its own.
async fn tool_events(world: &mut World) -> anyhow::Result<()> {
    // Sessions of other users and of the other tenant's same-named user.
    alice_chat(
        world,
        "ta",
        "ta-alice-notes",
        &marker("ta", "alice"),
        "ta-a-1",
    )
    .await?;
    alice_chat(
        world,
        "tb",
        "tb-alice-notes",
        &marker("tb", "alice"),
        "tb-a-1",
    )
    .await?;
    let bob = world.sock("ta", "bob", Dialect::OpenClaw);
    let started = bob
        .ok(
            "chat.send",
            json!({"sessionKey": "ta-bob-notes", "message": marker("ta", "bob"), "idempotencyKey": "ta-b-1"}),
        )
        .await?;
    let run_id = started["runId"].as_str().unwrap_or_default().to_owned();
    until_terminal(&mut bob.ws, &run_id).await?;
    for tenant in TENANTS {
        world.drain(tenant).await;
    }

    let run_key = "ta-tool-run";
    let call_id = "call-ta-tool-1";
    world
        .model
        .queue_script(Script::tokens(["Let me look."]).with_tool_call(
            call_id,
            "sessions_list",
            "{}",
        ));
    let frames = alice_chat(
        world,
        "ta",
        &format!("agent:{A_AGENT}:main"),
        "what sessions?",
        run_key,
    )
    .await?;
    let run_id = frames
        .last()
        .and_then(|f| f["payload"]["runId"].as_str())
        .unwrap_or_default()
        .to_owned();
    // B's update did not apply: A's agent runs with its own settings.
    let requests = world.model.requests();
    for request in &requests[requests.len() - 2..] {
        assert_eq!(request.model(), Some("ta-secret-model"));
    }
    assert_eq!(
        last_system_prompt(&world.model).as_deref(),
        Some("prompt-ta-secret-helper")
    );

    let tools = tool_stream(&frames, &run_id);
    assert_eq!(tools.len(), 2, "{frames:#?}");
    assert_eq!(
        (&tools[0]["phase"], &tools[0]["toolCallId"]),
        (&json!("start"), &json!(call_id))
    );
    assert_eq!(tools[1]["phase"], "result");
    assert_eq!(tools[1]["isError"], false, "{}", tools[1]);
    let listed: BTreeSet<String> = tools[1]["result"]["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sessionKey"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        "agent:main:ta-alice-notes".to_owned(),
        "agent:shared:ta-check".to_owned(),
        format!("agent:{A_AGENT}:main"),
    ]
    .into();
    assert_eq!(listed, expected, "sessions_list: {}", tools[1]);
    let model_saw = tool_result(&world.model, call_id).unwrap_or_default();
    let foreign: [&str; 4] = [
        "tb-",
        "ta-bob",
        &marker("tb", "alice"),
        &marker("ta", "bob"),
    ];
    for foreign in foreign {
        assert!(!tools[1].to_string().contains(foreign), "{}", tools[1]);
        assert!(!model_saw.contains(foreign), "{model_saw}");
    }

    // A's admins see the tool calls in both dialects; B's sockets nothing.
    world
        .sock("ta", ADMIN, Dialect::OpenClaw)
        .ws
        .event_where(|e| {
            e["event"] == "agent"
                && e["payload"]["stream"] == "tool"
                && e["payload"]["data"]["toolCallId"] == call_id
        })
        .await?;
    world
        .sock("ta", ADMIN, Dialect::Goclaw)
        .ws
        .event_where(|e| e["event"] == "tool.result" && e["payload"]["id"] == call_id)
        .await?;
    let needles: [&str; 4] = [&run_id, call_id, A_AGENT, "Let me look."];
    world.assert_unseen("tb", &needles, "A's tool run").await;
    let bob = world.sock("ta", "bob", Dialect::OpenClaw);
    let seen = mentions(&bob.ws.drain(QUIET).await, &[call_id]);
    assert!(seen.is_empty(), "ta/bob saw alice's tool call");

    // B's alice reuses A's run id: a run of its own, no replay of A's.
    let calls = world.model.requests().len();
    let frames = alice_chat(world, "tb", "main", &marker("tb", "reuse"), run_key).await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(
        last["payload"]["message"]["content"][0]["text"],
        marker("tb", "reuse"),
        "{last}"
    );
    assert!(mentions(&frames, &[call_id, "Let me look."]).is_empty());
    assert_eq!(world.model.requests().len(), calls + 1, "B's run ran");
    world
        .assert_unseen("ta", &[marker("tb", "reuse").as_str()], "B's run")
        .await;
    Ok(())
}

/// A's exec approval: requested to A's approvers only, invisible and
/// undecidable from B (also while B runs a run of the same id), decided by A.
async fn approvals(world: &mut World) -> anyhow::Result<()> {
    for tenant in TENANTS {
        world.drain(tenant).await;
    }
    let run_key = "ta-exec-run";
    let call_id = "call-ta-exec-1";
    let command = "echo hi-from-ta";
    world
        .model
        .queue_script(Script::tokens(["Running it."]).with_tool_call(
            call_id,
            "exec",
            json!({ "command": command }).to_string(),
        ));
    let started = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok(
            "chat.send",
            json!({"sessionKey": "main", "message": "please run it", "idempotencyKey": run_key}),
        )
        .await?;
    let run_id = started["runId"].as_str().unwrap_or_default().to_owned();

    let asked = world
        .sock("ta", APPROVER, Dialect::OpenClaw)
        .ws
        .event_where(|e| {
            e["event"] == "exec.approval.requested" && e["payload"]["request"]["command"] == command
        })
        .await?;
    let id = asked["payload"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(id.len() > 8, "{asked}");
    let cwd = asked["payload"]["request"]["cwd"]
        .as_str()
        .unwrap_or_default();
    assert!(cwd.ends_with("/ta/alice"), "the user's own root: {asked}");
    // A's other approvers see it too: admins (both dialects), and the run's
    // own user over goclaw.
    for (user, dialect) in [
        (ADMIN, Dialect::OpenClaw),
        (ADMIN, Dialect::Goclaw),
        ("alice", Dialect::Goclaw),
    ] {
        world
            .sock("ta", user, dialect)
            .ws
            .event_where(|e| e["event"] == "exec.approval.requested" && e["payload"]["id"] == id)
            .await?;
    }
    let prefix = id[..8].to_owned();
    let needles: [&str; 4] = [&id, command, call_id, &run_id];
    world
        .assert_unseen("tb", &needles, "A's approval request")
        .await;

    // Within A: operators without `operator.approvals` may not list or decide.
    for user in ["alice", "bob"] {
        let sock = world.sock("ta", user, Dialect::OpenClaw);
        for (method, params) in [
            ("exec.approval.list", json!({})),
            ("exec.approval.get", json!({"id": id})),
            (
                "exec.approval.resolve",
                json!({"id": id, "decision": "allow-once"}),
            ),
        ] {
            let error = sock.err(method, params).await?;
            assert_eq!(
                error["message"], "missing scope: operator.approvals",
                "ta/{user} {method}: {error}"
            );
        }
    }

    // B's approver and admin (OpenClaw) list nothing and find nothing, by id
    // or prefix, exactly as for an id that does not exist.
    let missing_id = "00000000-0000-4000-8000-000000000000";
    for user in [APPROVER, ADMIN] {
        let sock = world.sock("tb", user, Dialect::OpenClaw);
        let list = sock.ok("exec.approval.list", json!({})).await?;
        assert_eq!(list, json!([]), "{} lists {list}", sock.label());
        for probe in [id.as_str(), &prefix] {
            for (method, params, missing) in [
                (
                    "exec.approval.get",
                    json!({"id": probe}),
                    json!({"id": missing_id}),
                ),
                (
                    "exec.approval.waitDecision",
                    json!({"id": probe}),
                    json!({"id": missing_id}),
                ),
                (
                    "exec.approval.resolve",
                    json!({"id": probe, "decision": "allow-once"}),
                    json!({"id": missing_id, "decision": "allow-once"}),
                ),
                (
                    "exec.approval.resolve",
                    json!({"id": probe, "decision": "deny"}),
                    json!({"id": missing_id, "decision": "deny"}),
                ),
            ] {
                let foreign = sock.err(method, params.clone()).await?;
                let missing = sock.err(method, missing).await?;
                assert_eq!(
                    foreign["message"],
                    "unknown or expired approval id",
                    "{} {method} {params}: {foreign}",
                    sock.label()
                );
                assert_eq!(shape(&foreign), shape(&missing), "{method} {params}");
                assert_eq!(foreign["details"], missing["details"], "{method}");
            }
        }
    }
    // B's goclaw admin, and B's goclaw alice (the requester's user id).
    for user in [ADMIN, "alice"] {
        let sock = world.sock("tb", user, Dialect::Goclaw);
        let list = sock.ok("exec.approval.list", json!({})).await?;
        assert_eq!(list, json!({"approvals": []}), "{} lists", sock.label());
        for probe in [id.as_str(), &prefix] {
            for method in ["exec.approval.approve", "exec.approval.deny"] {
                let foreign = sock.err(method, json!({"id": probe})).await?;
                let missing = sock.err(method, json!({"id": missing_id})).await?;
                assert!(
                    foreign
                        .to_string()
                        .contains("unknown or expired approval id"),
                    "{} {method} {probe}: {foreign}",
                    sock.label()
                );
                assert_eq!(shape(&foreign), shape(&missing), "{method}");
            }
        }
    }

    // While A's run waits, B's alice runs one with the same run id (and
    // aborts by it): its own run, A's keeps waiting.
    let calls = world.model.requests().len();
    let frames = alice_chat(world, "tb", "main", &marker("tb", "exec-reuse"), run_key).await?;
    assert!(mentions(&frames, &[id.as_str(), command]).is_empty());
    assert_eq!(world.model.requests().len(), calls + 1);
    for (dialect, params) in [
        (
            Dialect::OpenClaw,
            json!({"sessionKey": "main", "runId": run_key}),
        ),
        (Dialect::OpenClaw, json!({"sessionKey": "main"})),
        (Dialect::Goclaw, json!({"runId": run_key})),
    ] {
        let sock = world.sock("tb", "alice", dialect);
        let res = sock.ws.request("chat.abort", params).await?;
        assert!(
            mentions(std::slice::from_ref(&res), &[&id, command]).is_empty(),
            "{res}"
        );
    }

    // Still pending in A: listed, and nobody was told of a decision.
    let approver = world.sock("ta", APPROVER, Dialect::OpenClaw);
    let list = approver.ok("exec.approval.list", json!({})).await?;
    let ids: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "{list}");
    let got = approver
        .ok("exec.approval.get", json!({"id": prefix}))
        .await?;
    assert_eq!(got["commandText"], command, "{got}");
    let early: Vec<Value> = approver
        .ws
        .drain(Duration::from_millis(100))
        .await
        .into_iter()
        .filter(|f| f["event"] == "exec.approval.resolved")
        .collect();
    assert!(early.is_empty(), "decided before A answered: {early:?}");
    world
        .assert_unseen("ta", &[marker("tb", "exec-reuse").as_str()], "B's run")
        .await;
    // B's sockets saw B's run of that id (drained here), nothing of A's.
    world
        .assert_unseen("tb", &[&id, command, call_id, "Running it."], "A's run")
        .await;

    // A's approver decides; the run completes with the command's output.
    let approver = world.sock("ta", APPROVER, Dialect::OpenClaw);
    let resolved = approver
        .ok(
            "exec.approval.resolve",
            json!({"id": id, "decision": "allow-once"}),
        )
        .await?;
    assert_eq!(resolved, json!({"ok": true}));
    let event = approver
        .ws
        .event_where(|e| e["event"] == "exec.approval.resolved" && e["payload"]["id"] == id)
        .await?;
    assert_eq!(event["payload"]["decision"], "allow-once", "{event}");
    let alice = world.sock("ta", "alice", Dialect::OpenClaw);
    let frames = until_terminal(&mut alice.ws, &run_id).await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["payload"]["state"], "final", "{frames:#?}");
    assert!(mentions(&frames, &[marker("tb", "exec-reuse").as_str()]).is_empty());
    let output = tool_result(&world.model, call_id).unwrap_or_default();
    assert!(output.contains("hi-from-ta"), "{output}");
    assert!(output.contains("/ta/alice"), "cwd: {output}");
    world
        .assert_unseen("tb", &needles, "A's approval resolution")
        .await;
    Ok(())
}

/// With no approver of A connected, A's exec approval expires at once: B's
/// approvers (B's goclaw alice has A's requester's user id) do not count.
async fn approvers_of_the_other_tenant_do_not_count(world: &mut World) -> anyhow::Result<()> {
    let approvers = [
        (APPROVER, Dialect::OpenClaw),
        (ADMIN, Dialect::OpenClaw),
        (ADMIN, Dialect::Goclaw),
        ("alice", Dialect::Goclaw),
    ];
    for (user, dialect) in approvers {
        let at = world
            .socks
            .iter()
            .position(|s| s.tenant == "ta" && s.user == user && s.dialect == dialect)
            .expect("socket of the world");
        world.socks.remove(at).ws.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.drain("tb").await;

    let call_id = "call-ta-exec-2";
    let command = "touch nobody-in-ta";
    world
        .model
        .queue_script(Script::tokens(["Running it."]).with_tool_call(
            call_id,
            "exec",
            json!({ "command": command }).to_string(),
        ));
    let started = Instant::now();
    alice_chat(world, "ta", "main", "run it again", "ta-exec-run-2").await?;
    assert!(
        started.elapsed() < Duration::from_millis(APPROVAL_TIMEOUT_MS / 3),
        "waited {:?} for approvers of another tenant",
        started.elapsed()
    );
    let output = tool_result(&world.model, call_id).unwrap_or_default();
    assert!(output.contains("expired"), "{output}");
    let ran = world.workspace.path().join("ta/alice/nobody-in-ta");
    assert!(!ran.exists(), "the command ran: {output}");
    world
        .assert_unseen("tb", &[command, call_id], "A's unanswerable approval")
        .await;
    for (user, dialect) in [(APPROVER, Dialect::OpenClaw), (ADMIN, Dialect::Goclaw)] {
        let list = world
            .sock("tb", user, dialect)
            .ok("exec.approval.list", json!({}))
            .await?;
        assert!(!list.to_string().contains(command), "{list}");
    }
    Ok(())
}

/// The models of a `models.list` answer as `provider/id`.
fn model_keys(list: &Value) -> Vec<String> {
    list["models"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}/{}",
                m["provider"].as_str().unwrap_or(""),
                m["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Providers: A's provider and its key serve only A's runs; B sees, deletes
/// and uses none of it, and B's provider of the same id is B's own.
async fn providers(world: &mut World) -> anyhow::Result<()> {
    let own = MockModel::start(Script::text("own provider")).await?;
    for (tenant, key) in [("ta", "sk-ta-only"), ("tb", "sk-tb-only")] {
        world
            .sock(tenant, ADMIN, Dialect::OpenClaw)
            .ok("secrets.set", json!({"name": "OWN_KEY", "value": key}))
            .await?;
    }
    world
        .sock("ta", ADMIN, Dialect::OpenClaw)
        .ok(
            "providers.set",
            json!({"id": "own", "kind": "openai", "baseUrl": own.base_url(),
                   "models": ["ta-model"], "apiKeySecret": "OWN_KEY"}),
        )
        .await?;
    let a_models = world
        .sock("ta", "alice", Dialect::OpenClaw)
        .ok("models.list", json!({}))
        .await?;
    assert_eq!(model_keys(&a_models), ["own/ta-model"], "{a_models}");
    for (user, dialect) in [
        ("alice", Dialect::OpenClaw),
        (ADMIN, Dialect::OpenClaw),
        (ADMIN, Dialect::Goclaw),
    ] {
        let sock = world.sock("tb", user, dialect);
        let listed = sock.ok("models.list", json!({})).await?;
        assert!(
            !listed.to_string().contains("ta-model"),
            "{}: {listed}",
            sock.label()
        );
    }
    let b_admin = world.sock("tb", ADMIN, Dialect::OpenClaw);
    let listed = b_admin.ok("providers.list", json!({})).await?;
    assert_eq!(listed["providers"], json!([]), "{listed}");
    let refused = b_admin
        .err("providers.delete", json!({"id": "own"}))
        .await?;
    assert!(
        refused.to_string().contains("unknown provider"),
        "{refused}"
    );

    // A's run calls A's provider with A's key; B's run does not.
    alice_chat(world, "ta", "prov", "via own", "ta-prov-1").await?;
    let sent = own.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].authorization.as_deref(), Some("Bearer sk-ta-only"));
    alice_chat(world, "tb", "prov", "via global", "tb-prov-1").await?;
    assert_eq!(own.requests().len(), 1, "B's run reached A's provider");

    // B's provider of the same id is B's: B's key, A's untouched.
    world
        .sock("tb", ADMIN, Dialect::OpenClaw)
        .ok(
            "providers.set",
            json!({"id": "own", "kind": "openai", "baseUrl": own.base_url(),
                   "models": ["tb-model"], "apiKeySecret": "OWN_KEY"}),
        )
        .await?;
    alice_chat(world, "tb", "prov", "via own too", "tb-prov-2").await?;
    alice_chat(world, "ta", "prov", "via own again", "ta-prov-2").await?;
    let keys: Vec<(Option<String>, Option<String>)> = own
        .requests()
        .iter()
        .map(|r| (r.model().map(str::to_owned), r.authorization.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (Some("ta-model".into()), Some("Bearer sk-ta-only".into())),
            (Some("tb-model".into()), Some("Bearer sk-tb-only".into())),
            (Some("ta-model".into()), Some("Bearer sk-ta-only".into())),
        ]
    );
    for tenant in TENANTS {
        world
            .sock(tenant, ADMIN, Dialect::OpenClaw)
            .ok("providers.delete", json!({"id": "own"}))
            .await?;
    }
    Ok(())
}

async fn matrix(database: GatewayDatabase) -> anyhow::Result<()> {
    let mut world = build(database).await?;
    agents(&mut world).await?;
    tool_events(&mut world).await?;
    approvals(&mut world).await?;
    providers(&mut world).await?;
    // Last: it closes tenant A's approver sockets.
    approvers_of_the_other_tenant_do_not_count(&mut world).await?;
    Ok(())
}

#[tokio::test]
async fn agents_tools_and_approvals_isolation_on_sqlite() -> anyhow::Result<()> {
    matrix(GatewayDatabase::Sqlite).await
}

#[tokio::test]
async fn agents_tools_and_approvals_isolation_on_postgres_under_rls() -> anyhow::Result<()> {
    matrix(GatewayDatabase::FreshPostgres).await
}
