//! The OpenAI-compatible provider against the mock model server.

mod common;

use std::time::Duration;

use clawgate_runner::provider::{
    ChatMessage, ModelEvent, ModelProvider, ModelRequest, OpenAiProvider, ProviderErrorKind,
    TokenUsage,
};
use clawgate_runner::{ProviderConfig, ProviderTimeouts};
use common::{MockModel, Script};
use futures_util::StreamExt as _;

fn request(text: &str) -> ModelRequest {
    ModelRequest {
        messages: vec![ChatMessage::new("user", text)],
        model: None,
        tools: Vec::new(),
    }
}

fn provider(base_url: String, api_key: Option<&str>) -> OpenAiProvider {
    let mut config = ProviderConfig::new(base_url, "m1");
    if let Some(key) = api_key {
        config = config.with_api_key(key);
    }
    let timeouts = ProviderTimeouts {
        connect: Duration::from_secs(2),
        idle: Duration::from_millis(500),
    };
    OpenAiProvider::new(config, timeouts).expect("provider")
}

#[tokio::test]
async fn streams_text_then_done_with_usage() {
    let model = MockModel::start(Script::tokens(["a", "b", "c"]).with_usage(5, 3))
        .await
        .expect("mock");
    let provider = provider(model.base_url(), None);
    assert_eq!((provider.system(), provider.model()), ("openai", "m1"));
    let events: Vec<_> = provider
        .stream(request("hi"))
        .await
        .expect("stream")
        .collect()
        .await;
    let events: Vec<ModelEvent> = events.into_iter().map(|e| e.expect("event")).collect();
    assert_eq!(
        events,
        vec![
            ModelEvent::Text("a".into()),
            ModelEvent::Text("b".into()),
            ModelEvent::Text("c".into()),
            ModelEvent::Done {
                finish_reason: Some("stop".into()),
                usage: Some(TokenUsage {
                    prompt_tokens: 5,
                    completion_tokens: 3,
                    total_tokens: 8
                }),
            },
        ]
    );
    let requests = model.requests();
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].authorization, None, "no key, no header");
    assert_eq!(requests[0].model(), Some("m1"));
    assert_eq!(model.emissions().len(), 3);
}

#[tokio::test]
async fn a_trailing_slash_in_the_base_url_is_fine() {
    let model = MockModel::start(Script::tokens(["x"])).await.expect("mock");
    let provider = provider(format!("{}/", model.base_url()), Some("k"));
    let stream = provider.stream(request("hi")).await.expect("stream");
    assert_eq!(stream.count().await, 2);
    assert_eq!(
        model.requests()[0].authorization.as_deref(),
        Some("Bearer k")
    );
}

#[tokio::test]
async fn http_errors_are_classified() {
    for (status, kind) in [
        (401u16, ProviderErrorKind::Auth),
        (429, ProviderErrorKind::RateLimit),
        (500, ProviderErrorKind::Server),
        (503, ProviderErrorKind::Server),
        (404, ProviderErrorKind::Unknown),
    ] {
        let model = MockModel::start(Script::http_error(status))
            .await
            .expect("mock");
        let err = match provider(model.base_url(), Some("sk-secret"))
            .stream(request("hi"))
            .await
        {
            Ok(_) => panic!("HTTP {status} should fail"),
            Err(err) => err,
        };
        assert_eq!(err.kind, kind, "HTTP {status}");
        assert!(err.message.contains(&status.to_string()), "{}", err.message);
        assert!(!err.message.contains("sk-secret"));
        if status == 429 {
            assert_eq!(err.retry_after_ms, Some(1_000));
        }
    }
}

#[tokio::test]
async fn a_missing_key_is_named_on_401() {
    let model = MockModel::start(Script::http_error(401))
        .await
        .expect("mock");
    let Err(err) = provider(model.base_url(), None).stream(request("hi")).await else {
        panic!("should fail");
    };
    assert!(
        err.message.contains("CLAWGATE_MODEL_API_KEY"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_a_network_error() {
    let model = MockModel::start(Script::tokens(["x"])).await.expect("mock");
    let base_url = model.base_url();
    drop(model);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Err(err) = provider(base_url, None).stream(request("hi")).await else {
        panic!("should fail");
    };
    assert_eq!(err.kind, ProviderErrorKind::Network);
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    let model = MockModel::start(Script::tokens(["x"]).then_hang())
        .await
        .expect("mock");
    let mut stream = provider(model.base_url(), None)
        .stream(request("hi"))
        .await
        .expect("stream");
    assert_eq!(stream.next().await, Some(Ok(ModelEvent::Text("x".into()))));
    let err = stream.next().await.expect("item").expect_err("timeout");
    assert_eq!(err.kind, ProviderErrorKind::Timeout);
    assert_eq!(stream.next().await, None, "nothing after an error");
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let model = MockModel::start(
        Script::tokens((0..1000).map(|i| format!("{i} "))).with_delay(Duration::from_millis(2)),
    )
    .await
    .expect("mock");
    let mut stream = provider(model.base_url(), None)
        .stream(request("hi"))
        .await
        .expect("stream");
    stream.next().await.expect("first").expect("text");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let emitted = model.emissions().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(model.emissions().len(), emitted, "the mock stopped writing");
    assert!(emitted < 1000);
}
