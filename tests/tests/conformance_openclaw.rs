//! OpenClaw conformance: replays the sessions recorded between the real
//! OpenClaw clients and the real OpenClaw gateway (`tests/reference/captures/`:
//! both `hello-ok` variants of v3 and v4, both chat traces, the v4 TUI session)
//! against clawgate, and checks every server frame's shape against the
//! recorded one (`conformance_support`). Where clawgate's frame differs, the
//! exception lists below say where and why; values that must differ (ids,
//! times, tokens) never count, only fields and their types.

mod conformance_support;
#[path = "conformance_support/tui_v4.rs"]
mod tui_v4;

use std::time::Duration;

use clawgate::cli::EdgeArgs;
use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ClientInfo, ConnectSpec, DeviceIdentity};
use clawgate_tests::ws::WsClient;
use conformance_support::{Conformance, Exception, event_kind, except, records};
use serde_json::{Value, json};

/// How long frames are collected after the last expected one.
const SETTLE: Duration = Duration::from_millis(600);

async fn gateway(mock: &MockModel) -> anyhow::Result<TestGateway> {
    TestGateway::start(GatewayOptions {
        model_base_url: Some(mock.base_url()),
        edge: EdgeArgs {
            tick_interval_ms: 1_000,
            ..EdgeArgs::DEFAULT
        },
        ..GatewayOptions::default()
    })
    .await
}

/// The recorded connect params, with this gateway's token and, when the
/// recording was signed, a proof of a fresh identity for this challenge.
fn replayed_connect(recorded: &Value, token: &str, nonce: &str) -> Value {
    let mut params = recorded.clone();
    params["auth"]["token"] = json!(token);
    if recorded.get("device").is_some() {
        let client = &recorded["client"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let spec = ConnectSpec {
            client: ClientInfo {
                id: text(&client["id"]),
                mode: text(&client["mode"]),
                version: text(&client["version"]),
                platform: text(&client["platform"]),
                device_family: client["deviceFamily"].as_str().map(str::to_owned),
                display_name: None,
            },
            role: text(&recorded["role"]),
            scopes: recorded["scopes"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default(),
            ..ConnectSpec::operator(&[]).with_token(token)
        };
        let signed = spec.params(&DeviceIdentity::generate(), nonce);
        params["device"] = signed["device"].clone();
    }
    params
}

/// Opens a socket, answers its challenge with `recorded_connect` and returns
/// the socket, the challenge and the connect response.
async fn connect(
    gw: &TestGateway,
    recorded_connect: &Value,
) -> anyhow::Result<(WsClient, Value, Value)> {
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    let challenge = ws.event("connect.challenge").await?;
    let nonce = challenge["payload"]["nonce"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = recorded_connect["id"]
        .as_str()
        .unwrap_or("connect")
        .to_owned();
    let params = replayed_connect(&recorded_connect["params"], &gw.gateway_token, &nonce);
    ws.send_json(&json!({"type": "req", "id": id, "method": "connect", "params": params}))
        .await?;
    let res = ws.response(&id).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((ws, challenge, res))
}

/// Where clawgate's handshake frames differ from OpenClaw's, in either version.
const HELLO_V4: &[Exception] = &[
    except(
        "challenge/payload/capabilities",
        "v4 `connect.challenge` offers the `modelCatalog` connect field; clawgate takes no model catalog from clients, so it offers nothing",
    ),
    except(
        "hello-ok/payload/server/buildId",
        "optional; clawgate names its version only",
    ),
    except("hello-ok/payload/server/bootId", "optional; not sent"),
    except(
        "hello-ok/payload/server/controlUiBuildSource",
        "clawgate serves no Control UI build",
    ),
    except(
        "hello-ok/payload/controlUiWidgetKinds",
        "optional UI descriptors; clawgate serves no Control UI",
    ),
    except(
        "hello-ok/payload/controlUiLinkReaders",
        "optional UI descriptors; clawgate serves no Control UI",
    ),
    except(
        "hello-ok/payload/pluginSurfaceUrls",
        "sent only when there is a surface; clawgate has no plugins",
    ),
    except(
        "hello-ok/payload/snapshot/suspension",
        "clawgate has no suspension phases: it accepts or refuses (`gateway starting`)",
    ),
    except(
        "hello-ok/payload/snapshot/appliedConfigHash",
        "not sent: no hashed config file",
    ),
    except(
        "hello-ok/payload/snapshot/updateSchedule",
        "clawgate does not update itself",
    ),
    except(
        "hello-ok/payload/snapshot/sessionDefaults/modelConfigured",
        "not sent yet",
    ),
    except(
        "hello-ok/payload/snapshot/sessionDefaults/ownership",
        "clawgate has no session ownership modes",
    ),
    except(
        "hello-ok/payload/snapshot/sessionDefaults/selectionRequired",
        "clawgate has no session ownership modes",
    ),
    except(
        "hello-ok/payload/auth/recoveryScope",
        "clawgate has no device-token recovery",
    ),
    except(
        "hello-ok/payload/policy/attachments",
        "not advertised: attachment limits are the payload limit",
    ),
    except(
        "hello-ok/payload/policy/allowedSessionVisibilities",
        "clawgate has no session sharing",
    ),
    except(
        "hello-ok/payload/policy/hasMultipleSessionSharingIdentities",
        "clawgate has no session sharing",
    ),
];

/// Admin-only snapshot keys OpenClaw sends to admin connections.
const HELLO_ADMIN: &[Exception] = &[
    except(
        "hello-ok/payload/snapshot/configPath",
        "admin-only file locations; clawgate's configuration is flags and environment",
    ),
    except(
        "hello-ok/payload/snapshot/stateDir",
        "admin-only file locations; clawgate keeps state in its databases",
    ),
    except("hello-ok/payload/snapshot/authMode", "admin-only; not sent"),
];

/// Both versions, until presence and health snapshots are filled.
const HELLO_SNAPSHOT: &[Exception] = &[
    except(
        "hello-ok/payload/snapshot/presence/0",
        "presence entries: (pending) the presence registry",
    ),
    except(
        "hello-ok/payload/snapshot/health",
        "health snapshot: (pending) the edge's cached health",
    ),
];

const HELLO_V3: &[Exception] = &[except(
    "hello-ok/payload/canvasHostUrl",
    "v3: clawgate hosts no canvas",
)];

async fn check_hello(file: &str, exceptions: &[Exception]) -> anyhow::Result<()> {
    let capture: Value = serde_json::from_str(&std::fs::read_to_string(
        conformance_support::capture(file),
    )?)?;
    let mock = MockModel::start(Script::text("hello")).await?;
    let gw = gateway(&mock).await?;
    let (ws, challenge, res) = connect(&gw, &capture["connect"]).await?;
    let mut check = Conformance::default();
    check.frame("challenge", &capture["challenge"], &challenge, exceptions);
    check.frame("hello-ok", &capture["helloOk"], &res, exceptions);
    // The version negotiated is the recorded one.
    assert_eq!(
        res["payload"]["protocol"],
        capture["helloOk"]["payload"]["protocol"]
    );
    check.finish(exceptions);
    ws.close().await;
    gw.stop().await
}

#[tokio::test]
async fn v4_hello_ok_signed() -> anyhow::Result<()> {
    check_hello(
        "openclaw-v4-hello-ok.json",
        &[
            HELLO_V4,
            HELLO_ADMIN,
            HELLO_SNAPSHOT,
            &[except(
                "hello-ok/payload/auth/recoveryMigrationAllowed",
                "clawgate has no device-token recovery",
            )],
        ]
        .concat(),
    )
    .await
}

#[tokio::test]
async fn v4_hello_ok_deviceless() -> anyhow::Result<()> {
    check_hello(
        "openclaw-v4-hello-ok.deviceless.json",
        &[HELLO_V4, HELLO_ADMIN, HELLO_SNAPSHOT].concat(),
    )
    .await
}

#[tokio::test]
async fn v3_hello_ok_signed() -> anyhow::Result<()> {
    check_hello(
        "openclaw-v3-hello-ok.json",
        &[HELLO_V3, HELLO_ADMIN, HELLO_SNAPSHOT].concat(),
    )
    .await
}

#[tokio::test]
async fn v3_hello_ok_deviceless() -> anyhow::Result<()> {
    check_hello(
        "openclaw-v3-hello-ok.deviceless.json",
        &[HELLO_V3, HELLO_SNAPSHOT].concat(),
    )
    .await
}

/// Replays a `.jsonl` session: its connect, then each client request in
/// order (waiting for its response, and for a `chat.send` for the run's
/// terminal `chat` event); returns the recorded and clawgate's server frames
/// (handshake excluded).
async fn replay(file: &str) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let frames: Vec<Value> = records(file)
        .into_iter()
        .filter(|r| r.get("frame").is_some_and(Value::is_object))
        .collect();
    let client: Vec<&Value> = frames
        .iter()
        .filter(|r| r["dir"] == "c2s")
        .map(|r| &r["frame"])
        .collect();
    let recorded: Vec<Value> = frames
        .iter()
        .filter(|r| r["dir"] == "s2c")
        .map(|r| r["frame"].clone())
        .filter(|f| f["event"] != "connect.challenge" && f["payload"]["type"] != "hello-ok")
        .collect();
    let tokens: Vec<String> = (0..50)
        .map(|i| {
            if i == 0 {
                "tok0".to_owned()
            } else {
                format!(" tok{i}")
            }
        })
        .collect();
    let mock = MockModel::start(Script::tokens(tokens)).await?;
    let gw = gateway(&mock).await?;
    let connect_frame = client.first().copied().cloned().unwrap_or_default();
    let (mut ws, _, _) = connect(&gw, &connect_frame).await?;
    let mut ours = Vec::new();
    for request in client.iter().skip(1) {
        ws.send_json(request).await?;
        let id = request["id"].as_str().unwrap_or_default();
        let res = ws.response(id).await?;
        let started = request["method"] == "chat.send" && res["ok"] == true;
        ours.push(res);
        if started {
            let terminal = ws
                .event_where(|f| {
                    f["event"] == "chat"
                        && matches!(
                            f["payload"]["state"].as_str(),
                            Some("final" | "error" | "aborted")
                        )
                })
                .await?;
            ours.push(terminal);
        }
    }
    ours.extend(ws.drain(SETTLE).await);
    ws.close().await;
    gw.stop().await?;
    Ok((recorded, ours))
}

/// Compares recorded and clawgate's frames: responses by request id, events
/// by kind and occurrence.
fn compare(
    recorded: &[Value],
    ours: &[Value],
    exceptions: &[Exception],
    methods: &std::collections::HashMap<String, String>,
) {
    let mut check = Conformance::default();
    let mut seen_kinds: std::collections::HashMap<String, usize> = Default::default();
    for frame in recorded {
        if frame["type"] == "res" {
            let id = frame["id"].as_str().unwrap_or_default();
            let method = methods.get(id).cloned().unwrap_or_default();
            let label = format!("res:{method}");
            match ours.iter().find(|f| f["type"] == "res" && f["id"] == id) {
                Some(mine) => check.frame(&label, frame, mine, exceptions),
                None => check.absent(&label, exceptions),
            }
            continue;
        }
        let kind = event_kind(frame);
        let nth = seen_kinds.entry(kind.clone()).or_default();
        let mine: Vec<&Value> = ours
            .iter()
            .filter(|f| f["type"] == "event" && event_kind(f) == kind)
            .collect();
        let label = format!("event:{kind}");
        match mine.get(*nth).or(mine.last()) {
            Some(mine) => check.frame(&label, frame, mine, exceptions),
            None => check.absent(&label, exceptions),
        }
        *nth += 1;
    }
    check.finish(exceptions);
}

/// Event `seq`s of `frames` are 1, 2, 3, … (v4: targeted events included).
fn assert_contiguous_seq(frames: &[Value]) {
    let mut seqs: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "event")
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "frame seq is contiguous from 1");
}

fn request_methods(file: &str) -> std::collections::HashMap<String, String> {
    records(file)
        .into_iter()
        .filter(|r| r["dir"] == "c2s")
        .map(|r| {
            (
                r["frame"]["id"].as_str().unwrap_or_default().to_owned(),
                r["frame"]["method"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Where a chat turn differs, either version.
const CHAT_V4: &[Exception] = &[
    except(
        "event:chat.status",
        "v4 run phases (preparing workspace/context, starting model): clawgate's runner has no such phases to report",
    ),
    except("event:agent.run_status", "v4 run phases: as `chat.status`"),
    except(
        "event:agent.lifecycle.model",
        "v4 model selection events: clawgate's runner uses one configured model (the agents issue adds selection)",
    ),
    except(
        "event:agent.lifecycle.finishing",
        "v4 finishing phase: not reported",
    ),
    except(
        "event:agent.usage",
        "v4 streaming usage: clawgate reports usage on `final`",
    ),
    except(
        "event:agent.lifecycle.start/payload/sessionId",
        "clawgate's run events name the session by key only",
    ),
    except(
        "event:agent.lifecycle.end/payload/sessionId",
        "clawgate's run events name the session by key only",
    ),
    except(
        "event:agent.lifecycle.end/payload/data",
        "v4 terminal receipts (liveness, receipts, replay flags) are not reported; phase, stop reason and times are",
    ),
    except(
        "event:agent.assistant/payload/data/itemId",
        "v4 item ids: not assigned",
    ),
];

#[tokio::test]
async fn v4_chat_trace() -> anyhow::Result<()> {
    let file = "openclaw-v4-chat-trace.jsonl";
    let (recorded, ours) = replay(file).await?;
    assert_contiguous_seq(&ours);
    compare(&recorded, &ours, CHAT_V4, &request_methods(file));
    Ok(())
}

#[tokio::test]
async fn v3_chat_trace() -> anyhow::Result<()> {
    let file = "openclaw-v3-chat-trace.jsonl";
    let (recorded, ours) = replay(file).await?;
    compare(&recorded, &ours, CHAT_V3, &request_methods(file));
    Ok(())
}

const CHAT_V3: &[Exception] = &[
    except(
        "event:health",
        "the 60 s `health` event fell inside the recorded turn; clawgate's comes on its own schedule",
    ),
    except(
        "event:agent.lifecycle.end/payload/data/livenessState",
        "liveness states are not reported",
    ),
    except(
        "event:agent.lifecycle.end/payload/data/startedAt",
        "clawgate adds the run's start time",
    ),
    except(
        "event:agent.lifecycle.end/payload/data/stopReason",
        "clawgate adds the stop reason (as v4 does)",
    ),
    except(
        "event:chat.final/payload/stopReason",
        "clawgate adds the stop reason on `final` (as v4 does)",
    ),
];

/// The v4 TUI session: startup calls (`sessions.subscribe`, `agents.list`,
/// …, `chat.history`), one chat turn with session events and the TUI's
/// `sessions.describe`/`sessions.list` after each; differences in
/// [`tui_v4::exceptions`].
#[tokio::test]
async fn v4_tui_session() -> anyhow::Result<()> {
    let file = "openclaw-v4-tui-session.jsonl";
    let (recorded, ours) = replay(file).await?;
    assert_contiguous_seq(&ours);
    compare(
        &recorded,
        &ours,
        &tui_v4::exceptions(),
        &request_methods(file),
    );
    Ok(())
}
