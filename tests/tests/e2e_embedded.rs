//! End to end on the embedded default: the whole gateway in one process, a mock
//! OpenAI-compatible model server, real WebSocket clients in both dialects.

use std::time::Duration;

use clawgate_tests::gateway::{GatewayOptions, TestGateway};
use clawgate_tests::mock_model::{MockModel, Script};
use clawgate_tests::ws::WsClient;
use serde_json::{Value, json};

const TOKENS: [&str; 6] = ["The ", "quick ", "brown ", "fox ", "jumps", "."];
const REPLY: &str = "The quick brown fox jumps.";

async fn gateway_with(script: Script) -> anyhow::Result<(TestGateway, MockModel)> {
    let model = MockModel::start(script).await?;
    let gateway = TestGateway::start(GatewayOptions {
        model_base_url: Some(model.base_url()),
        ..Default::default()
    })
    .await?;
    Ok((gateway, model))
}

fn streaming_reply() -> Script {
    Script::tokens(TOKENS).with_delay(Duration::from_millis(30))
}

/// Collects `agent` and `chat` events of `run_id` until its terminal chat event.
async fn openclaw_run_events(
    client: &mut WsClient,
    run_id: &str,
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let mut agent = Vec::new();
    let mut chat = Vec::new();
    loop {
        let event = client
            .event_where(|e| {
                (e["event"] == "agent" || e["event"] == "chat") && e["payload"]["runId"] == run_id
            })
            .await?;
        if event["event"] == "agent" {
            agent.push(event);
        } else {
            let terminal = event["payload"]["state"] != "delta";
            chat.push(event);
            if terminal {
                return Ok((agent, chat));
            }
        }
    }
}

fn chat_text(event: &Value) -> String {
    event["payload"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn openclaw_chat_streams_in_order_and_lands_in_history() -> anyhow::Result<()> {
    let (gateway, model) = gateway_with(streaming_reply()).await?;
    let mut client = WsClient::connect(&gateway.ws_url).await?;
    let hello = client.openclaw_handshake(&gateway.gateway_token).await?;
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 3);

    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "tell me about foxes", "idempotencyKey": "run-1"}),
        )
        .await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"],
        json!({"runId": "run-1", "status": "started"})
    );

    let (agent, chat) = openclaw_run_events(&mut client, "run-1").await?;

    // agent events: per-run seq 1, 2, 3 … with lifecycle start first and end last.
    let seqs: Vec<u64> = agent
        .iter()
        .map(|e| e["payload"]["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "agent seqs {seqs:?}"
    );
    assert_eq!(agent[0]["payload"]["stream"], "lifecycle");
    assert_eq!(agent[0]["payload"]["data"]["phase"], "start");
    let last = agent.last().expect("agent events");
    assert_eq!(last["payload"]["data"]["phase"], "end");
    let assistant: Vec<&Value> = agent
        .iter()
        .filter(|e| e["payload"]["stream"] == "assistant")
        .collect();
    assert!(!assistant.is_empty());
    let joined: String = assistant
        .iter()
        .map(|e| e["payload"]["data"]["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(joined, REPLY);
    assert_eq!(
        assistant.last().expect("assistant")["payload"]["data"]["text"],
        REPLY
    );

    // chat events: deltas carry the growing full text, then exactly one final.
    let (terminal, deltas) = chat.split_last().expect("chat events");
    assert_eq!(terminal["payload"]["state"], "final");
    assert_eq!(chat_text(terminal), REPLY);
    assert_eq!(terminal["payload"]["sessionKey"], "agent:main:main");
    let mut previous = String::new();
    for delta in deltas {
        let text = chat_text(delta);
        assert!(
            text.starts_with(&previous) && REPLY.starts_with(&text),
            "delta {text:?}"
        );
        previous = text;
    }
    // Frame seq is per connection and strictly increasing.
    let frame_seqs: Vec<u64> = agent
        .iter()
        .chain(chat.iter())
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    let mut sorted = frame_seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), frame_seqs.len(), "frame seqs are unique");

    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    assert_eq!(history["ok"], true, "{history}");
    let messages = history["payload"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"][0]["text"], "tell me about foxes");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][0]["text"], REPLY);

    // The model saw the user's message, with the configured model and key.
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["model"], "mock-model");
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer test-api-key")
    );
    let sent = requests[0].body["messages"].as_array().expect("messages");
    assert_eq!(sent.last().expect("last")["content"], "tell me about foxes");
    Ok(())
}

#[tokio::test]
async fn goclaw_chat_streams_chunks_and_answers_at_the_end() -> anyhow::Result<()> {
    let (gateway, _model) = gateway_with(streaming_reply()).await?;
    let mut client = WsClient::connect(&gateway.ws_url).await?;
    let hello = client
        .goclaw_handshake(&gateway.gateway_token, "alice")
        .await?;
    assert_eq!(hello["protocol"], 3);
    assert_eq!(hello["user_id"], "alice");

    let id = client
        .send_request(
            "chat.send",
            json!({"message": "tell me about foxes", "sessionKey": "agent:main:ws:direct:t1"}),
        )
        .await?;
    let started = client.event("run.started").await?;
    let run_id = started["payload"]["runId"]
        .as_str()
        .expect("runId")
        .to_owned();
    let mut text = String::new();
    loop {
        let event = client
            .event_where(|e| e["event"] == "chunk" || e["event"] == "run.completed")
            .await?;
        if event["event"] == "run.completed" {
            assert_eq!(event["payload"]["runId"], run_id.as_str());
            assert_eq!(event["payload"]["content"], REPLY);
            break;
        }
        assert_eq!(event["payload"]["runId"], run_id.as_str());
        text.push_str(event["payload"]["content"].as_str().expect("content"));
    }
    assert_eq!(text, REPLY);
    // chat.send answers only once the run has ended.
    let res = client.response(&id).await?;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["runId"], run_id.as_str());
    assert_eq!(res["payload"]["content"], REPLY);

    let history = client
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:ws:direct:t1"}),
        )
        .await?;
    let messages = history["payload"]["messages"].as_array().expect("messages");
    let turns: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or(""),
                m["content"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        turns,
        vec![("user", "tell me about foxes"), ("assistant", REPLY)]
    );
    Ok(())
}

#[tokio::test]
async fn abort_mid_stream_ends_with_aborted_and_keeps_the_partial_text() -> anyhow::Result<()> {
    // Two tokens, then the model keeps the stream open without sending more.
    let (gateway, _model) =
        gateway_with(Script::tokens(["partial ", "answer"]).then_hang()).await?;
    let mut client = WsClient::connect(&gateway.ws_url).await?;
    client.openclaw_handshake(&gateway.gateway_token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "go", "idempotencyKey": "run-abort"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started");
    // Wait until the whole partial text has streamed.
    client
        .event_where(|e| e["event"] == "agent" && e["payload"]["data"]["text"] == "partial answer")
        .await?;

    let abort = client
        .request("chat.abort", json!({"sessionKey": "main"}))
        .await?;
    assert_eq!(abort["ok"], true, "{abort}");
    assert_eq!(abort["payload"]["aborted"], true);
    assert_eq!(abort["payload"]["runIds"], json!(["run-abort"]));

    let (agent, chat) = openclaw_run_events(&mut client, "run-abort").await?;
    let terminal = chat.last().expect("terminal");
    assert_eq!(terminal["payload"]["state"], "aborted");
    assert_eq!(chat_text(terminal), "partial answer");
    let end = agent.last().expect("lifecycle end");
    assert_eq!(end["payload"]["data"]["phase"], "end");
    assert_eq!(end["payload"]["data"]["aborted"], true);
    // Exactly one terminal chat event.
    assert_eq!(
        chat.iter()
            .filter(|e| e["payload"]["state"] != "delta")
            .count(),
        1
    );

    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    let messages = history["payload"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][0]["text"], "partial answer");

    // The session is free again.
    let next = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "again", "idempotencyKey": "run-next"}),
        )
        .await?;
    assert_eq!(next["payload"]["status"], "started", "{next}");
    Ok(())
}

#[tokio::test]
async fn resending_an_idempotency_key_returns_the_same_run() -> anyhow::Result<()> {
    let (gateway, model) =
        gateway_with(Script::tokens(TOKENS).with_delay(Duration::from_millis(60))).await?;
    let mut client = WsClient::connect(&gateway.ws_url).await?;
    client.openclaw_handshake(&gateway.gateway_token).await?;
    let params = json!({"sessionKey": "main", "message": "once", "idempotencyKey": "same-key"});

    let first = client.request("chat.send", params.clone()).await?;
    assert_eq!(
        first["payload"],
        json!({"runId": "same-key", "status": "started"})
    );
    let again = client.request("chat.send", params.clone()).await?;
    assert_eq!(
        again["payload"],
        json!({"runId": "same-key", "status": "in_flight"})
    );

    let (_, chat) = openclaw_run_events(&mut client, "same-key").await?;
    assert_eq!(chat.last().expect("final")["payload"]["state"], "final");
    let after = client.request("chat.send", params).await?;
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["payload"]["runId"], "same-key");
    assert_eq!(after["payload"]["status"], "ok");

    assert_eq!(model.requests().len(), 1, "one run, one model call");
    let history = client
        .request("chat.history", json!({"sessionKey": "main"}))
        .await?;
    assert_eq!(
        history["payload"]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    Ok(())
}

#[tokio::test]
async fn closing_the_socket_does_not_stop_the_run() -> anyhow::Result<()> {
    let (gateway, _model) = gateway_with(streaming_reply()).await?;
    let mut first = WsClient::connect(&gateway.ws_url).await?;
    first.openclaw_handshake(&gateway.gateway_token).await?;
    let res = first
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "orphan"}),
        )
        .await?;
    assert_eq!(res["payload"]["status"], "started");
    first.close().await;

    let mut second = WsClient::connect(&gateway.ws_url).await?;
    second.openclaw_handshake(&gateway.gateway_token).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = second
            .request("chat.history", json!({"sessionKey": "main"}))
            .await?;
        let messages = history["payload"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if messages.len() == 2 {
            assert_eq!(messages[1]["content"][0]["text"], REPLY);
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run did not finish: {history}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_a_model_chat_send_names_the_setting() -> anyhow::Result<()> {
    let gateway = TestGateway::start(GatewayOptions::default()).await?;
    let mut client = WsClient::connect(&gateway.ws_url).await?;
    client.openclaw_handshake(&gateway.gateway_token).await?;
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "hi", "idempotencyKey": "k"}),
        )
        .await?;
    assert_eq!(res["ok"], false, "{res}");
    let message = res["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("CLAWGATE_MODEL_BASE_URL"), "{res}");
    Ok(())
}
