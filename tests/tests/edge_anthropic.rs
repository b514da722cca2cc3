//! The embedded gateway with the Anthropic Messages API as its provider
//! (`--model-provider anthropic`, against the mock Anthropic server): a chat
//! streams the reply, the conversation goes back to the API in its own shape,
//! and an agent whose model is overloaded fails over to its fallback.

mod edge_support;

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_anthropic::MockAnthropic;
use clawgate_tests::mock_model::Script;
use edge_support::{chat_text, ok, openclaw, until_chat_terminal};
use serde_json::{Value, json};

const RW: &[&str] = &["operator.read", "operator.write"];
const ADMIN: &[&str] = &["operator.admin"];

async fn gateway(script: Script) -> anyhow::Result<(TestGateway, MockAnthropic)> {
    let model = MockAnthropic::start(script).await?;
    let gateway = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        model_provider: Some("anthropic".into()),
        ..Default::default()
    })
    .await?;
    Ok((gateway, model))
}

async fn send(
    client: &mut clawgate_tests::ws::WsClient,
    session: &str,
    message: &str,
    key: &str,
) -> anyhow::Result<Value> {
    let sent = client
        .request(
            "chat.send",
            json!({"sessionKey": session, "message": message, "idempotencyKey": key}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    let frames = until_chat_terminal(client, &run_id).await?;
    Ok(frames.last().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_chat_streams_from_the_messages_api() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("Hello from Claude.").with_usage(12, 5)).await?;
    let (mut user, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;

    let last = send(&mut user, "main", "hi", "r1").await?;
    assert_eq!(last["payload"]["state"], "final", "{last}");
    assert_eq!(chat_text(&last), "Hello from Claude.");
    let last = send(&mut user, "main", "and again", "r2").await?;
    assert_eq!(last["payload"]["state"], "final", "{last}");

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let second = &requests[1];
    assert_eq!(second.path, "/v1/messages");
    assert_eq!(second.authorization.as_deref(), Some("test-api-key"));
    assert_eq!(second.body["model"], "mock-model");
    assert_eq!(
        second.body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello from Claude."}]},
            {"role": "user", "content": [{"type": "text", "text": "and again"}]},
        ])
    );
    Ok(())
}

#[tokio::test]
async fn an_overloaded_model_fails_over_to_the_agents_fallback() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("Backup here.")).await?;
    model.set_model_script("claude-big", Script::http_error(529));
    let (mut admin, _) = openclaw(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    let created = admin
        .request(
            "agents.create",
            json!({"name": "helper", "workspace": "", "model": "claude-big",
                "fallbacks": ["claude-small"]}),
        )
        .await?;
    ok(&created)?;
    let (mut user, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let last = send(&mut user, "agent:helper:main", "hi", "r1").await?;
    assert_eq!(last["payload"]["state"], "final", "{last}");
    assert_eq!(chat_text(&last), "Backup here.");
    let models: Vec<Value> = model
        .requests()
        .iter()
        .map(|request| request.body["model"].clone())
        .collect();
    assert_eq!(models, [json!("claude-big"), json!("claude-small")]);
    Ok(())
}

#[tokio::test]
async fn thinking_streams_on_the_reasoning_stream_before_the_reply() -> anyhow::Result<()> {
    let (gw, _model) = gateway(
        Script::text("The answer is four.").with_thinking("Two plus two makes four, surely."),
    )
    .await?;
    let (mut user, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let sent = user
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "2+2?", "idempotencyKey": "th1"}),
        )
        .await?;
    ok(&sent)?;
    let frames = until_chat_terminal(&mut user, "th1").await?;
    let streams: Vec<&str> = frames
        .iter()
        .filter(|f| f["event"] == "agent")
        .filter_map(|f| f["payload"]["stream"].as_str())
        .collect();
    let first_thinking = streams.iter().position(|s| *s == "thinking");
    let first_text = streams.iter().position(|s| *s == "assistant");
    assert!(first_thinking.is_some(), "{streams:?}");
    assert!(first_thinking < first_text, "{streams:?}");
    let thinking: Vec<&Value> = frames
        .iter()
        .filter(|f| f["event"] == "agent" && f["payload"]["stream"] == "thinking")
        .collect();
    let last = thinking
        .last()
        .map(|f| &f["payload"]["data"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["text"], "Two plus two makes four, surely.", "{last}");
    let deltas: String = thinking
        .iter()
        .filter_map(|f| f["payload"]["data"]["delta"].as_str())
        .collect();
    assert_eq!(deltas, "Two plus two makes four, surely.");
    // The reply holds the answer, not the reasoning.
    let terminal = frames.last().cloned().unwrap_or_default();
    assert_eq!(chat_text(&terminal), "The answer is four.");

    // goclaw: `thinking` events carry the reasoning deltas.
    let mut go = clawgate_tests::ws::WsClient::connect(&gw.ws_url).await?;
    go.goclaw_handshake(&gw.gateway_token, "owner").await?;
    let id = go
        .send_request(
            "chat.send",
            json!({"sessionKey": "main", "message": "again?", "idempotencyKey": "th2"}),
        )
        .await?;
    let mut reasoning = String::new();
    loop {
        let frame = go.recv().await?;
        if frame["type"] == "res" && frame["id"] == id.as_str() {
            assert_eq!(frame["ok"], true, "{frame}");
            break;
        }
        if frame["event"] == "thinking" {
            reasoning.push_str(frame["payload"]["content"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(reasoning, "Two plus two makes four, surely.");
    Ok(())
}
