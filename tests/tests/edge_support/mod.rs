//! Shared helpers of the `edge_*` tests: a gateway with a mock model, and small
//! frame helpers on top of the test kit's WebSocket client.

#![allow(dead_code)]

use clawgate::cli::EdgeArgs;
use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

/// The embedded gateway with a mock model answering `script`.
pub async fn gateway(script: Script) -> anyhow::Result<(TestGateway, MockModel)> {
    gateway_with(script, EdgeArgs::default()).await
}

/// The embedded gateway with a mock model and the given edge settings.
pub async fn gateway_with(
    script: Script,
    edge: EdgeArgs,
) -> anyhow::Result<(TestGateway, MockModel)> {
    let model = MockModel::start(script).await?;
    let gateway = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        edge,
        ..Default::default()
    })
    .await?;
    Ok((gateway, model))
}

/// OpenClaw connect params with the given token and scopes.
pub fn openclaw_params(token: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 3,
        "maxProtocol": 3,
        "client": {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

/// Opens a socket and reads the challenge.
pub async fn open(url: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    let challenge = client.recv().await?;
    anyhow::ensure!(
        challenge["event"] == "connect.challenge",
        "no challenge: {challenge}"
    );
    Ok(client)
}

/// An OpenClaw operator connection with `scopes`; returns it and `hello-ok`.
pub async fn openclaw(
    url: &str,
    token: &str,
    scopes: &[&str],
) -> anyhow::Result<(WsClient, Value)> {
    let mut client = open(url).await?;
    let res = client
        .request("connect", openclaw_params(token, scopes))
        .await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((client, res["payload"].clone()))
}

/// An OpenClaw protocol v4 operator connection of the local backend client
/// with `scopes`; returns it and `hello-ok`.
pub async fn openclaw_v4(
    url: &str,
    token: &str,
    scopes: &[&str],
) -> anyhow::Result<(WsClient, Value)> {
    let mut client = open(url).await?;
    let mut params = openclaw_params(token, scopes);
    params["minProtocol"] = json!(4);
    params["maxProtocol"] = json!(4);
    let res = client.request("connect", params).await?;
    anyhow::ensure!(res["ok"] == true, "connect failed: {res}");
    Ok((client, res["payload"].clone()))
}

/// Reads frames (responses included) until the terminal `chat` event of
/// `run_id`; ticks are left out.
pub async fn until_chat_terminal(
    client: &mut WsClient,
    run_id: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv().await?;
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

pub fn chat_text(frame: &Value) -> String {
    frame["payload"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The payload of a response, failing on an error response.
pub fn ok(res: &Value) -> anyhow::Result<&Value> {
    anyhow::ensure!(res["ok"] == true, "not ok: {res}");
    Ok(&res["payload"])
}

/// The error message of a refused request.
pub fn refused(res: &Value) -> String {
    assert_eq!(res["ok"], false, "{res}");
    res["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
