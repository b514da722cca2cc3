//! Who receives a run's events, in process, on SQLite and on PostgreSQL (services
//! as the application role, under row-level security): the sockets of the run's
//! user, and every admin of its tenant (goclaw §2.7), which are told whose run
//! it is (goclaw `userId` on every run event; OpenClaw `userId` on `agent` and
//! `chat` events of another user's run). An operator of another user receives
//! nothing. Two users' runs with the same run id (idempotency key) stay apart:
//! each `chat.send` is answered by its own run, and an admin gets both.

use std::time::Duration;

use clawgate_tests::gateway::{GatewayDatabase, GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::{WsClient, openclaw_connect_params};
use serde_json::{Value, json};

const RUN_ID: &str = "same-key";

/// A goclaw socket connected with `token` as `user`.
async fn goclaw(url: &str, token: &str, user: &str) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let res = ws
        .request("connect", json!({"token": token, "user_id": user}))
        .await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((ws, res["payload"].clone()))
}

/// An OpenClaw socket of the default user with `scopes`.
async fn openclaw(url: &str, token: &str, scopes: &[&str]) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    ws.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = json!(scopes);
    let res = ws.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(ws)
}

/// The terminal OpenClaw `chat` event of `user`'s run `RUN_ID`.
async fn openclaw_final(ws: &mut WsClient, user: &str) -> anyhow::Result<Value> {
    let user = user.to_owned();
    ws.event_where(move |e| {
        e["event"] == "chat"
            && e["payload"]["runId"] == RUN_ID
            && e["payload"]["state"] != "delta"
            && e["payload"]["userId"] == user.as_str()
    })
    .await
}

/// The goclaw `run.completed` of `user`'s run `RUN_ID`.
async fn goclaw_completed(ws: &mut WsClient, user: &str) -> anyhow::Result<Value> {
    let user = user.to_owned();
    ws.event_where(move |e| {
        e["event"] == "run.completed"
            && e["payload"]["runId"] == RUN_ID
            && e["payload"]["userId"] == user.as_str()
    })
    .await
}

/// Whether any run event reaches `ws` within a short window.
async fn receives_run_events(ws: &mut WsClient) -> bool {
    let window = ws.drain(Duration::from_millis(300)).await;
    window.iter().any(|frame| {
        frame["type"] == "event"
            && ["agent", "chat", "chunk", "run.started", "run.completed"]
                .contains(&frame["event"].as_str().unwrap_or_default())
    })
}

async fn routing_follows_access(database: GatewayDatabase) -> anyhow::Result<()> {
    let model = MockModel::start(Script::echo().with_delay(Duration::from_millis(10))).await?;
    let gw = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        database,
        ..Default::default()
    })
    .await?;
    let (url, token) = (gw.ws_url.as_str(), gw.gateway_token.as_str());

    // goclaw: with the gateway token a user who is not an owner is an admin.
    let (mut admin, hello) = goclaw(url, token, "ann").await?;
    assert_eq!(hello["role"], "admin", "{hello}");
    let mut carol = admin.operator_socket(url, "carol").await?;
    let mut dave = admin.operator_socket(url, "dave").await?;
    let mut eve = admin.operator_socket(url, "eve").await?;
    // OpenClaw, user "owner": an admin (operator.admin) and a plain operator.
    let mut oc_admin = openclaw(url, token, &["operator.admin"]).await?;
    let mut oc_operator = openclaw(url, token, &["operator.read", "operator.write"]).await?;

    // carol and dave start runs with the same run id.
    let carol_send = carol
        .send_request(
            "chat.send",
            json!({"message": "from carol", "idempotencyKey": RUN_ID}),
        )
        .await?;
    let dave_send = dave
        .send_request(
            "chat.send",
            json!({"message": "from dave", "idempotencyKey": RUN_ID}),
        )
        .await?;
    // Each is answered by its own run.
    let res = carol.response(&carol_send).await?;
    assert_eq!(res["payload"]["content"], "from carol", "{res}");
    let res = dave.response(&dave_send).await?;
    assert_eq!(res["payload"]["content"], "from dave", "{res}");

    // The goclaw admin got both runs, each told apart by its userId.
    for (user, text) in [("carol", "from carol"), ("dave", "from dave")] {
        let done = goclaw_completed(&mut admin, user).await?;
        assert_eq!(done["payload"]["content"], text, "{done}");
        // The operator saw its own run, labelled with itself.
        let own = match user {
            "carol" => goclaw_completed(&mut carol, user).await?,
            _ => goclaw_completed(&mut dave, user).await?,
        };
        assert_eq!(own["payload"]["content"], text, "{own}");
    }
    // The OpenClaw admin got both as well, with full text and the user named.
    for (user, text) in [("carol", "from carol"), ("dave", "from dave")] {
        let done = openclaw_final(&mut oc_admin, user).await?;
        assert_eq!(done["payload"]["state"], "final", "{done}");
        assert_eq!(
            done["payload"]["message"]["content"][0]["text"], text,
            "{done}"
        );
    }

    // Operators of other users saw nothing of either run.
    assert!(
        !receives_run_events(&mut eve).await,
        "a goclaw operator got another user's run"
    );
    assert!(
        !receives_run_events(&mut oc_operator).await,
        "an OpenClaw operator got another user's run"
    );
    // Nor did carol see dave's run (or dave carol's).
    for (ws, other) in [(&mut carol, "dave"), (&mut dave, "carol")] {
        let leaked = ws
            .drain(Duration::from_millis(200))
            .await
            .into_iter()
            .any(|f| f["payload"]["userId"] == other);
        assert!(!leaked, "an operator got {other}'s run");
    }

    // An admin's sessions.list names each session's user.
    let res = admin.request("sessions.list", json!({})).await?;
    assert_eq!(res["ok"], true, "{res}");
    for session in res["payload"]["sessions"].as_array().into_iter().flatten() {
        assert!(session["user_id"].is_string(), "{session}");
    }
    gw.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_access_on_sqlite() -> anyhow::Result<()> {
    routing_follows_access(GatewayDatabase::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_access_on_postgres_under_rls() -> anyhow::Result<()> {
    routing_follows_access(GatewayDatabase::FreshPostgres).await
}
