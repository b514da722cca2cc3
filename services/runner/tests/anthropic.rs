//! The Anthropic Messages provider against the mock Anthropic server: the
//! request it sends, the events it reads from the real stream format, and how
//! it reports failures.

use std::time::Duration;

use clawgate_runner::provider::{
    AnthropicProvider, ChatMessage, ModelEvent, ModelProvider, ModelRequest, ProviderError,
    ProviderErrorKind, TokenUsage,
};
use clawgate_runner::{ProviderConfig, ProviderKind, ProviderTimeouts};
use clawgate_testkit::mock_anthropic::MockAnthropic;
use clawgate_testkit::mock_model::Script;
use futures_util::StreamExt as _;

const KEY: &str = "sk-ant-test";

fn provider(base_url: String) -> AnthropicProvider {
    let config = ProviderConfig::new(base_url, "claude-mock")
        .with_kind(ProviderKind::Anthropic)
        .with_api_key(KEY);
    let timeouts = ProviderTimeouts {
        connect: Duration::from_secs(2),
        idle: Duration::from_millis(500),
    };
    AnthropicProvider::new(config, timeouts).expect("provider")
}

fn request(messages: &[(&str, &str)]) -> ModelRequest {
    ModelRequest {
        messages: messages
            .iter()
            .map(|(role, text)| ChatMessage::new(*role, *text))
            .collect(),
        model: None,
        tools: Vec::new(),
    }
}

async fn events(
    provider: &AnthropicProvider,
    request: ModelRequest,
) -> Result<Vec<ModelEvent>, ProviderError> {
    let stream = provider.stream(request).await?;
    stream.collect::<Vec<_>>().await.into_iter().collect()
}

#[tokio::test]
async fn streams_thinking_text_tool_calls_and_usage() {
    let script = Script::tokens(["Let me ", "check."])
        .with_thinking("The user wants the page.")
        .with_tool_call("toolu_1", "web_fetch", r#"{"url":"https://example.com/a"}"#)
        .with_tool_call("toolu_2", "sessions_list", "{}")
        .with_usage(31, 12);
    let mock = MockAnthropic::start(script).await.expect("mock");
    let provider = provider(mock.base_url());
    assert_eq!(
        (provider.system(), provider.model()),
        ("anthropic", "claude-mock")
    );
    let got = events(
        &provider,
        request(&[("system", "be brief"), ("user", "fetch it")]),
    )
    .await
    .expect("events");
    assert_eq!(
        got,
        vec![
            ModelEvent::Thinking("The ".into()),
            ModelEvent::Thinking("user ".into()),
            ModelEvent::Thinking("wants ".into()),
            ModelEvent::Thinking("the ".into()),
            ModelEvent::Thinking("page.".into()),
            ModelEvent::Text("Let me ".into()),
            ModelEvent::Text("check.".into()),
            ModelEvent::ToolCall {
                id: "toolu_1".into(),
                name: "web_fetch".into(),
                arguments_json: r#"{"url":"https://example.com/a"}"#.into(),
            },
            ModelEvent::ToolCall {
                id: "toolu_2".into(),
                name: "sessions_list".into(),
                arguments_json: "{}".into(),
            },
            ModelEvent::Done {
                finish_reason: Some("tool_calls".into()),
                usage: Some(TokenUsage {
                    prompt_tokens: 31,
                    completion_tokens: 12,
                    total_tokens: 43,
                }),
            },
        ]
    );
    let sent = mock.requests().pop().expect("a request");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.authorization.as_deref(), Some(KEY));
    assert_eq!(sent.body["model"], "claude-mock");
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["stream"], true);
    assert!(sent.body["max_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(
        sent.body["messages"],
        serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "fetch it"}]}])
    );
}

#[tokio::test]
async fn a_requested_model_replaces_the_configured_one() {
    let mock = MockAnthropic::start(Script::text("ok"))
        .await
        .expect("mock");
    let mut ask = request(&[("user", "hi")]);
    ask.model = Some("claude-other".into());
    let got = events(&provider(mock.base_url()), ask)
        .await
        .expect("events");
    assert_eq!(got.first(), Some(&ModelEvent::Text("ok".into())));
    assert_eq!(mock.requests()[0].body["model"], "claude-other");
}

#[tokio::test]
async fn http_failures_are_classified_with_retry_after() {
    let cases: [(Script, ProviderErrorKind, Option<u64>); 5] = [
        (
            Script::http_error(429).with_retry_after("7"),
            ProviderErrorKind::RateLimit,
            Some(7_000),
        ),
        (Script::http_error(529), ProviderErrorKind::Server, None),
        (Script::http_error(500), ProviderErrorKind::Server, None),
        (Script::http_error(401), ProviderErrorKind::Auth, None),
        (
            Script::http_error(413),
            ProviderErrorKind::ContextLength,
            None,
        ),
    ];
    for (script, kind, retry_after_ms) in cases {
        let status = script.status;
        let mock = MockAnthropic::start(script).await.expect("mock");
        let error = events(&provider(mock.base_url()), request(&[("user", "hi")]))
            .await
            .expect_err("failed");
        assert_eq!(error.kind, kind, "{status:?}: {error:?}");
        assert_eq!(error.retry_after_ms, retry_after_ms, "{status:?}");
        assert!(!error.message.contains("scripted"), "{error:?}");
    }
}

#[tokio::test]
async fn an_error_event_mid_stream_fails_after_the_text() {
    let mock = MockAnthropic::start(Script::tokens(["par", "tial"]).then_fail("overloaded_error"))
        .await
        .expect("mock");
    let stream = provider(mock.base_url())
        .stream(request(&[("user", "hi")]))
        .await
        .expect("opened");
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], Ok(ModelEvent::Text("par".into())));
    assert_eq!(items[1], Ok(ModelEvent::Text("tial".into())));
    let error = items[2].clone().expect_err("the error event");
    assert_eq!(error.kind, ProviderErrorKind::Server);
    assert_eq!(error.message, "the model provider is overloaded");
}

#[tokio::test]
async fn a_missing_key_is_refused_by_the_api_and_named() {
    let mock = MockAnthropic::start(Script::text("never"))
        .await
        .expect("mock");
    let config =
        ProviderConfig::new(mock.base_url(), "claude-mock").with_kind(ProviderKind::Anthropic);
    let provider = AnthropicProvider::new(config, ProviderTimeouts::default()).expect("provider");
    let error = events(&provider, request(&[("user", "hi")]))
        .await
        .expect_err("refused");
    assert_eq!(error.kind, ProviderErrorKind::Auth);
    assert!(
        error.message.contains("CLAWGATE_MODEL_API_KEY"),
        "{error:?}"
    );
}
