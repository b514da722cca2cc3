//! The stock OpenClaw CLI against clawgate: every command of
//! `tests/reference/captures/openclaw-cli-matrix.json` that succeeded against
//! OpenClaw's own gateway (CLI 2026.9.6 on protocol v4, device-less on
//! loopback; CLI 2026.5.7 on v3, device-signed), replayed as that client
//! connects for it (client id, mode, scopes, protocol range, device or not),
//! with the params the client sends, and each answer checked the way the
//! client reads it (reference `openclaw-v4.md` §4).
//!
//! Commands whose methods belong to services clawgate does not have yet (cron)
//! get `unknown method`; [`NOT_YET`] names them, and the test fails
//! when one of them starts working (update the README's list then) or when
//! any other command fails.

mod conformance_support;

use std::collections::HashMap;

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::openclaw_device::{ClientInfo, ConnectSpec, DeviceIdentity, challenge_nonce};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

/// Methods whose owning service does not exist yet: unknown to clawgate (the
/// README lists the commands behind them).
const NOT_YET: [&str; 1] = ["cron.list"];

/// The params the CLI sends for `method` (reference §4.2).
fn params(method: &str) -> Option<Value> {
    Some(match method {
        "health" | "status" | "system-presence" | "config.get" | "users.list"
        | "device.pair.list" | "node.list" | "node.pair.list" => json!({}),
        "sessions.list" => json!({"limit": 3}),
        "chat.send" => json!({
            "sessionKey": "cli-matrix", "message": "hi",
            "idempotencyKey": uuid::Uuid::new_v4().to_string(),
        }),
        "chat.history" => json!({"sessionKey": "cli-matrix", "limit": 2}),
        "models.list" => json!({}),
        "no.such.method" => json!({}),
        "agent" => json!({
            "message": "hello", "agentId": "main", "deliver": false, "timeout": 600,
            "idempotencyKey": uuid::Uuid::new_v4().to_string(),
        }),
        "cron.list" => json!({"includeDisabled": false, "limit": 200, "offset": 0}),
        "logs.tail" => json!({"limit": 3, "maxBytes": 250000}),
        _ => return None,
    })
}

/// Checks `res` (the final response) as the client reads it; `hello` is the
/// connection's `hello-ok` payload.
fn check(command: &str, method: &str, mode: &str, hello: &Value, res: &Value) {
    let what = format!("{command}: {method}: {res}");
    if NOT_YET.contains(&method) {
        // Undeclared: an admin learns it is unknown; anyone else is refused
        // before the lookup (default deny), as OpenClaw does.
        let admin = hello["auth"]["scopes"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("operator.admin")));
        let expected = if admin {
            format!("unknown method: {method}")
        } else {
            "missing scope: operator.admin".to_owned()
        };
        assert_eq!(res["ok"], false, "{what}");
        assert_eq!(res["error"]["message"], expected, "{what}");
        return;
    }
    if method == "no.such.method" {
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{what}");
        assert_eq!(
            res["error"]["message"], "unknown method: no.such.method",
            "{what}"
        );
        return;
    }
    // A probe without operator scopes (device-less) is refused everything but
    // `health`, and the probe tolerates it (OpenClaw does the same).
    if mode == "probe" && method != "health" && res["ok"] == false {
        let message = res["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("missing scope: "), "{what}");
        return;
    }
    assert_eq!(res["ok"], true, "{what}");
    let p = &res["payload"];
    match method {
        "health" => {
            // `openclaw health` throws on an agent without `sessions`.
            let agents = p["agents"].as_array().expect("agents");
            assert!(!agents.is_empty(), "{what}");
            for agent in agents {
                assert!(agent["agentId"].is_string(), "{what}");
                assert!(agent["sessions"]["count"].is_number(), "{what}");
                assert!(agent["sessions"]["recent"].is_array(), "{what}");
            }
            assert!(p["durationMs"].is_number(), "{what}");
            if let Some(event_loop) = p.get("eventLoop") {
                assert!(event_loop["reasons"].is_array(), "{what}");
            }
        }
        "status" => assert!(p.is_object(), "{what}"),
        "sessions.list" => assert!(p["sessions"].is_array(), "{what}"),
        "chat.send" => {
            assert!(p["runId"].is_string(), "{what}");
            assert_eq!(p["status"], "started", "{what}");
        }
        "chat.history" => assert!(p["messages"].is_array(), "{what}"),
        "models.list" => {
            if hello["protocol"] == 4 {
                let caps = hello["features"]["capabilities"].as_array().expect("caps");
                assert!(caps.contains(&json!("published-model-catalog")), "{what}");
            }
            let models = p["models"].as_array().expect("models");
            assert!(!models.is_empty(), "{what}");
            assert!(
                models
                    .iter()
                    .all(|m| m["id"].is_string() && m["provider"].is_string())
            );
        }
        "system-presence" => assert!(p.is_array(), "{what}"),
        "config.get" => assert!(p.is_object(), "{what}"),
        "agent" => {
            assert!(
                matches!(p["status"].as_str(), Some("ok" | "completed")),
                "{what}"
            );
            let text = p["result"]["payloads"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(!text.is_empty(), "{what}");
        }
        "device.pair.list" | "node.pair.list" => {
            assert!(p["pending"].is_array() && p["paired"].is_array(), "{what}");
        }
        // `nodes status` counts `nodes[].paired` / `.connected`.
        "node.list" => {
            assert!(p["ts"].is_number(), "{what}");
            assert!(p["nodes"].is_array(), "{what}");
        }
        "logs.tail" => {
            assert!(p["file"].is_string(), "{what}");
            assert!(p["lines"].is_array(), "{what}");
            assert!(p["cursor"].is_number(), "{what}");
        }
        "users.list" => assert!(p["profiles"].is_array(), "{what}"),
        other => panic!("no check for {other}"),
    }
}

/// Opens one connection as the CLI does for a matrix entry.
async fn connect(gw: &TestGateway, conn: &Value) -> anyhow::Result<(WsClient, Value)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let spec = ConnectSpec {
        client: ClientInfo {
            id: text(&conn["client"]),
            mode: text(&conn["mode"]),
            version: "2026.9.6".into(),
            platform: "linux".into(),
            device_family: None,
            display_name: None,
        },
        role: "operator".into(),
        scopes: conn["scopes"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default(),
        min_protocol: conn["minP"].as_u64().unwrap_or(3),
        max_protocol: conn["maxP"].as_u64().unwrap_or(3),
        ..ConnectSpec::operator(&[]).with_token(&gw.gateway_token)
    };
    let mut ws = WsClient::connect(&gw.ws_url).await?;
    let nonce = challenge_nonce(&mut ws).await?;
    let params = if conn["device"] == true {
        spec.params(&DeviceIdentity::generate(), &nonce)
    } else {
        spec.params_without_device()
    };
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect {conn}: {res}");
    Ok((ws, res["payload"].clone()))
}

/// Sends `method` and returns its final response (the second one of a
/// two-phase `agent`).
async fn call(ws: &mut WsClient, method: &str) -> anyhow::Result<Value> {
    let id = ws
        .send_request(method, params(method).expect("params"))
        .await?;
    let mut res = ws.response(&id).await?;
    if method == "agent" && res["payload"]["status"] == "accepted" {
        res = ws.response(&id).await?;
    }
    Ok(res)
}

/// Which connection of a multi-connection command calls which method.
fn assignments(entry: &Value) -> Vec<(usize, String)> {
    let conns = entry["connections"].as_array().map_or(0, Vec::len);
    let methods: Vec<String> = entry["methods"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if conns <= 1 {
        return methods.into_iter().map(|m| (0, m)).collect();
    }
    // `status`: the probe asks for presence, the backend for status;
    // `nodes list`: one connection per method, in order.
    methods
        .into_iter()
        .enumerate()
        .map(|(i, m)| (i.min(conns - 1), m))
        .collect()
}

async fn run_matrix(key: &str) -> anyhow::Result<()> {
    let matrix: Value = serde_json::from_str(&std::fs::read_to_string(
        conformance_support::capture("openclaw-cli-matrix.json"),
    )?)?;
    let mock = MockModel::start(Script::text("Hello from the mock model.")).await?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(mock.base_url()),
        ..GatewayOptions::default()
    })
    .await?;
    let mut tried: HashMap<String, usize> = HashMap::new();
    for entry in matrix[key].as_array().expect("runs") {
        let command = entry["name"].as_str().unwrap_or_default();
        if entry["rc"] != 0 && command != "gateway call no.such.method" {
            continue;
        }
        let conns = entry["connections"].as_array().cloned().unwrap_or_default();
        let mut sockets = Vec::new();
        for conn in &conns {
            sockets.push(connect(&gw, conn).await?);
        }
        for (index, method) in assignments(entry) {
            let (ws, hello) = &mut sockets[index];
            let mode = conns[index]["mode"].as_str().unwrap_or_default();
            let res = call(ws, &method).await?;
            check(command, &method, mode, hello, &res);
            *tried.entry(method).or_default() += 1;
        }
        for (ws, _) in sockets {
            ws.close().await;
        }
    }
    assert!(tried.len() >= 10, "the matrix was replayed: {tried:?}");
    gw.stop().await
}

#[tokio::test]
async fn cli_2026_9_6_on_protocol_v4() -> anyhow::Result<()> {
    run_matrix("openclaw_2026.9.6_vs_gateway_2026.9.6").await
}

#[tokio::test]
async fn cli_2026_5_7_on_protocol_v3() -> anyhow::Result<()> {
    run_matrix("openclaw_2026.5.7_vs_gateway_2026.5.7_after_scope_approval").await
}
