//! The gateway's own methods against the embedded gateway (real services, a
//! mock model): `health` (cached snapshot, per-caller sessions, `probe`,
//! `health` events with `stateVersion`), `status`, `models.list`,
//! `agents.list`, `agent.identity.get`, `users.list`, `config.get` (no secret
//! in it) and `logs.tail` (lines of this process's ring, followed by cursor),
//! in both dialects where offered, with bad params.

mod edge_support;

use std::sync::OnceLock;
use std::time::Duration;

use clawgate_runtime::telemetry::{LogFormat, TelemetryConfig, TelemetryGuard, init_with};
use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::{gateway, ok, openclaw, openclaw_v4, refused, until_chat_terminal};
use serde_json::{Value, json};

const READ: &[&str] = &["operator.read"];
const RW: &[&str] = &["operator.read", "operator.write"];
const ADMIN: &[&str] = &["operator.admin"];

/// The next `health` event, skipping other frames.
async fn health_event(client: &mut WsClient) -> anyhow::Result<Value> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let frame = client.recv().await?;
            if frame["event"] == "health" {
                return Ok(frame);
            }
        }
    })
    .await?
}

#[tokio::test]
async fn health_answers_the_snapshot_with_the_callers_sessions_and_probes_broadcast()
-> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut writer, hello) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    assert!(
        hello["features"]["events"]
            .as_array()
            .is_some_and(|events| events.contains(&json!("health"))),
        "{hello}"
    );
    let version = hello["snapshot"]["stateVersion"]["health"]
        .as_u64()
        .expect("a version");
    assert!(version >= 1);

    let res = writer.request("health", json!({})).await?;
    let health = ok(&res)?;
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(health["defaultAgentId"], "main");
    assert_eq!(health["channels"], json!({}));
    assert!(health["durationMs"].is_u64() && health["uptimeMs"].is_u64());
    for service in ["auth", "runner", "session"] {
        assert_eq!(
            health["services"][service]["status"], "in_process",
            "{health}"
        );
        assert_eq!(health["services"][service]["ok"], true);
    }
    assert_eq!(health["services"]["bus"]["ok"], true);
    let agent = &health["agents"][0];
    assert_eq!(agent["agentId"], "main");
    assert_eq!(agent["isDefault"], true);
    assert!(agent["heartbeat"]["everyMs"].is_null());
    assert_eq!(agent["sessions"]["count"], 0, "no session yet: {health}");
    assert_eq!(agent["sessions"]["recent"], json!([]));
    assert_eq!(health["sessions"], agent["sessions"]);

    // A session of this user shows up, with its age.
    writer
        .send_request(
            "chat.send",
            json!({"sessionKey": "sys-a", "message": "hello", "idempotencyKey": "sys-run-1"}),
        )
        .await?;
    until_chat_terminal(&mut writer, "sys-run-1").await?;
    let res = writer.request("health", json!({})).await?;
    let sessions = &ok(&res)?["agents"][0]["sessions"];
    assert_eq!(sessions["count"], 1, "{sessions}");
    assert_eq!(sessions["recent"][0]["key"], "agent:main:sys-a");
    assert!(sessions["recent"][0]["age"].is_i64());

    // Another connection of the same user (gateway token) sees the same.
    let (mut reader, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;
    let res = reader.request("health", json!({})).await?;
    assert_eq!(ok(&res)?["agents"][0]["sessions"]["count"], 1);

    // A probe refreshes the snapshot: a `health` event with the next
    // version reaches every connection (a snapshot younger than a second
    // already is a fresh one).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let res = writer.request("health", json!({"probe": true})).await?;
    assert_eq!(ok(&res)?["ok"], true);
    let event = health_event(&mut reader).await?;
    assert!(
        event["seq"].is_u64(),
        "broadcast events are numbered: {event}"
    );
    let probed = event["stateVersion"]["health"].as_u64().expect("version");
    assert!(probed > version, "{event}");
    assert_eq!(event["stateVersion"]["presence"], 1);
    assert_eq!(event["payload"]["defaultAgentId"], "main");
    assert!(
        event["payload"].get("sessions").is_none(),
        "the shared snapshot holds no caller's sessions: {event}"
    );
    let again = health_event(&mut writer).await?;
    assert_eq!(again["stateVersion"]["health"], probed);

    // Bad params.
    let res = writer.request("health", json!({"probe": "yes"})).await?;
    assert_eq!(
        refused(&res),
        "invalid health params: at /probe: must be boolean"
    );
    let res = writer.request("health", json!({"deep": true})).await?;
    assert!(
        refused(&res).contains("unexpected property 'deep'"),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn status_models_and_agents_come_from_the_configuration() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;

    let res = c.request("status", json!({})).await?;
    let status = ok(&res)?;
    assert!(status["runtimeVersion"].is_string());
    assert_eq!(status["sessions"]["count"], 0);
    assert_eq!(status["sessions"]["defaults"]["model"], "mock-model");
    assert_eq!(status["runs"]["active"], 0, "{status}");
    assert_eq!(status["heartbeat"]["defaultAgentId"], "main");
    assert_eq!(status["services"]["runner"]["ok"], true, "{status}");

    let res = c
        .request(
            "models.list",
            json!({"view": "default", "includeDetails": true}),
        )
        .await?;
    let models = ok(&res)?["models"].as_array().cloned().unwrap_or_default();
    assert_eq!(models.len(), 1, "{res}");
    let model = &models[0];
    assert_eq!(model["id"], "mock-model");
    assert_eq!(model["provider"], "127.0.0.1");
    assert_eq!(model["input"], json!(["text"]));
    assert_eq!(model["local"], true);
    assert_eq!(model["available"], true);
    assert_eq!(model["tags"], json!(["default"]));
    let res = c
        .request(
            "models.list",
            json!({"view": "all", "provider": "127.0.0.1"}),
        )
        .await?;
    assert_eq!(ok(&res)?["models"].as_array().map(Vec::len), Some(1));
    let res = c
        .request("models.list", json!({"provider": "api.example.com"}))
        .await?;
    assert_eq!(ok(&res)?["models"], json!([]), "filtered out");
    let res = c.request("models.list", json!({"view": "every"})).await?;
    assert!(
        refused(&res).starts_with("invalid models.list params"),
        "{res}"
    );
    let res = c
        .request("models.list", json!({"authProfileId": "p"}))
        .await?;
    assert!(refused(&res).contains("authProfileId"));
    let res = c
        .request("models.list", json!({"agentId": "ghost"}))
        .await?;
    assert_eq!(refused(&res), "unknown agent: ghost");

    let res = c.request("agents.list", json!({})).await?;
    let agents = ok(&res)?;
    assert_eq!(agents["defaultId"], "main");
    assert_eq!(agents["mainKey"], "main");
    assert_eq!(agents["scope"], "per-sender");
    assert_eq!(agents["agents"], json!([{"id": "main", "kind": "agent"}]));
    let res = c.request("agents.list", json!({"all": true})).await?;
    assert!(refused(&res).starts_with("invalid agents.list params"));

    let res = c
        .request("agent.identity.get", json!({"sessionKey": "agent:main:x"}))
        .await?;
    assert_eq!(
        ok(&res)?,
        &json!({"agentId": "main", "avatarStatus": "none"})
    );
    let res = c
        .request("agent.identity.get", json!({"agentId": "nobody"}))
        .await?;
    assert_eq!(refused(&res), "unknown agent: nobody");

    // A connection without operator.read may not.
    let (mut blind, _) = openclaw(&gw.ws_url, &gw.gateway_token, &[]).await?;
    for method in [
        "status",
        "models.list",
        "agents.list",
        "config.get",
        "logs.tail",
    ] {
        let res = blind.request(method, json!({})).await?;
        assert_eq!(refused(&res), "missing scope: operator.read", "{method}");
    }
    // `users.list` is a v4 method: v3 does not offer it (default deny).
    let res = blind.request("users.list", json!({})).await?;
    assert_eq!(refused(&res), "missing scope: operator.admin");
    let (mut blind_v4, _) = openclaw_v4(&gw.ws_url, &gw.gateway_token, &[]).await?;
    let res = blind_v4.request("users.list", json!({})).await?;
    assert_eq!(refused(&res), "missing scope: operator.read");
    Ok(())
}

#[tokio::test]
async fn users_list_shows_the_tenants_profiles_to_admins_and_oneself_to_others()
-> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut admin, _) = openclaw_v4(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    let res = admin
        .request(
            "tenants.users.add",
            json!({"userId": "bob", "role": "operator", "displayName": "Bob"}),
        )
        .await?;
    ok(&res)?;
    let res = admin.request("users.list", json!({})).await?;
    let profiles = ok(&res)?["profiles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bob = profiles
        .iter()
        .find(|p| p["id"] == "bob")
        .unwrap_or_else(|| panic!("bob listed: {res}"));
    assert_eq!(bob["displayName"], "Bob");
    assert_eq!(bob["role"], "operator");
    assert_eq!(bob["emails"], json!([]));
    assert_eq!(bob["hasAvatar"], false);
    assert!(bob["avatarMime"].is_null() && bob["mergedInto"].is_null());
    assert!(bob["createdAt"].is_i64() && bob["updatedAt"].is_i64());

    // A reader (not admin) of the same user sees no one else.
    let (mut reader, _) = openclaw_v4(&gw.ws_url, &gw.gateway_token, READ).await?;
    let res = reader.request("users.list", json!({})).await?;
    let seen = ok(&res)?["profiles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(seen.iter().all(|p| p["id"] != "bob"), "{res}");
    let res = reader
        .request("users.list", json!({"tenantId": "other"}))
        .await?;
    assert!(
        refused(&res).starts_with("invalid users.list params"),
        "{res}"
    );
    Ok(())
}

#[tokio::test]
async fn config_get_answers_the_effective_configuration_without_secrets() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;
    let res = c.request("config.get", json!({})).await?;
    let snapshot = ok(&res)?;
    assert_eq!(snapshot["valid"], true);
    assert_eq!(snapshot["exists"], false);
    assert!(snapshot["path"].is_null());
    assert_eq!(snapshot["issues"], json!([]));
    let config = &snapshot["config"];
    assert_eq!(config["model"]["model"], "mock-model");
    assert_eq!(config["model"]["provider"], "openai");
    assert_eq!(config["model"]["apiKey"], "__OPENCLAW_REDACTED__");
    assert_eq!(config["gateway"]["token"], "__OPENCLAW_REDACTED__");
    assert_eq!(config["gateway"]["defaultTenant"], "default");
    assert_eq!(config["edge"]["tickIntervalMs"], 30_000);
    assert_eq!(snapshot["resolved"], *config);
    let text = res.to_string();
    assert!(
        !text.contains(&gw.gateway_token),
        "the gateway token leaked"
    );
    assert!(!text.contains("test-api-key"), "the model key leaked");
    let res = c.request("config.get", json!({"path": "x"})).await?;
    assert!(refused(&res).starts_with("invalid config.get params"));
    // The rest of config.* stays admin (and undeclared).
    let res = c.request("config.set", json!({"raw": "{}"})).await?;
    assert_eq!(refused(&res), "missing scope: operator.admin");
    Ok(())
}

/// Installs the process's telemetry (and so the log ring) once, recording
/// only this test file's own events.
fn telemetry() {
    static GUARD: OnceLock<Option<TelemetryGuard>> = OnceLock::new();
    GUARD.get_or_init(|| {
        init_with(TelemetryConfig {
            service_name: "edge-system-methods".into(),
            log_filter: "off,edge_system_methods=info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
        })
        .ok()
    });
}

#[tokio::test]
async fn logs_tail_reads_this_processs_lines_and_follows_a_cursor() -> anyhow::Result<()> {
    telemetry();
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let (mut c, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;
    tracing::info!(marker = "first", "a line for the ring");
    let res = c
        .request("logs.tail", json!({"limit": 3, "maxBytes": 250_000}))
        .await?;
    let tail = ok(&res)?.clone();
    assert!(
        tail["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("memory:")),
        "{tail}"
    );
    let lines = tail["lines"].as_array().cloned().unwrap_or_default();
    assert!(!lines.is_empty() && lines.len() <= 3, "{tail}");
    let last: Value = serde_json::from_str(lines.last().and_then(Value::as_str).unwrap_or("null"))?;
    assert_eq!(last["marker"], "first", "{last}");
    assert_eq!(last["level"], "INFO");
    assert_eq!(last["message"], "a line for the ring");
    assert_eq!(tail["reset"], false);
    let cursor = tail["cursor"].as_u64().expect("cursor");
    assert_eq!(tail["size"], cursor);

    // Following: only what came after the cursor.
    tracing::info!(marker = "second", "another line");
    let res = c.request("logs.tail", json!({"cursor": cursor})).await?;
    let next = ok(&res)?;
    let lines: Vec<Value> = next["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().and_then(|l| serde_json::from_str(l).ok()))
        .collect();
    assert!(lines.iter().all(|l| l["marker"] != "first"), "{next}");
    assert!(lines.iter().any(|l| l["marker"] == "second"), "{next}");
    assert!(next["cursor"].as_u64().is_some_and(|c| c > cursor));
    // A cursor from beyond this process's log starts over.
    let res = c.request("logs.tail", json!({"cursor": u32::MAX})).await?;
    assert_eq!(ok(&res)?["reset"], true);

    for (params, at) in [
        (json!({"limit": 0}), "/limit"),
        (json!({"maxBytes": 2_000_000}), "/maxBytes"),
        (json!({"cursor": -5}), "/cursor"),
        (json!({"follow": true}), "'follow'"),
    ] {
        let res = c.request("logs.tail", params.clone()).await?;
        let message = refused(&res);
        assert!(
            message.starts_with("invalid logs.tail params") && message.contains(at),
            "{params}: {message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn goclaw_health_status_and_agents_are_real() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("hi")).await?;
    let mut c = WsClient::connect(&gw.ws_url).await?;
    c.goclaw_handshake(&gw.gateway_token, "alice").await?;
    let res = c.request("health", json!({})).await?;
    assert_eq!(res["payload"]["database"], "ok", "{res}");
    assert_eq!(res["payload"]["tools"], 0);
    let res = c.request("status", json!({})).await?;
    assert_eq!(res["payload"]["agents"][0]["model"], "mock-model", "{res}");
    assert_eq!(res["payload"]["agents"][0]["isRunning"], false);
    let res = c.request("agents.list", json!({})).await?;
    let agent = &res["payload"]["agents"][0];
    assert_eq!(agent["id"], "main", "{res}");
    assert_eq!(agent["model"], "mock-model");
    assert_eq!(agent["provider"], "127.0.0.1");
    // goclaw's seed names models.list (its code never registered it):
    // clawgate answers the configured models.
    let res = c.request("models.list", json!({})).await?;
    assert_eq!(res["payload"]["models"][0]["id"], "mock-model", "{res}");
    // goclaw has no users.list, config.get or logs.tail.
    for method in ["users.list", "config.get", "logs.tail"] {
        let res = c.request(method, json!({})).await?;
        assert_eq!(res["ok"], false, "{method}: {res}");
    }
    Ok(())
}
