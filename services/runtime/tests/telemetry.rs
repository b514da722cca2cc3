//! Telemetry: spans reach an OTLP collector, and the W3C trace context carried by bus
//! messages links a consumer span to its producer.
//!
//! The collector is an in-test OTLP/gRPC receiver. Only one test in this binary
//! installs the global subscriber (`init_with`); the other uses a thread-local one.

use std::net::SocketAddr;
use std::time::Duration;

use clawgate_proto::pb::common::v1::TraceContext;
use clawgate_runtime::telemetry::{
    self, LogFormat, TelemetryConfig, current_trace_context, set_parent_from,
};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// An OTLP trace receiver that forwards every export request to a channel.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_receiver() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, rx)
}

fn service_name_of(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .filter_map(|rs| rs.resource.as_ref())
        .flat_map(|resource| &resource.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(name)) => Some(name.clone()),
                _ => None,
            },
        )
        .collect()
}

fn spans_of(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
}

fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts[1..]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[1].bytes().any(|b| b != b'0')
}

/// The whole pipeline of `init_with`: a span emitted through `tracing` arrives at the
/// OTLP receiver with its name and `service.name`, and a consumer span linked with
/// `set_parent_from` is exported in the producer's trace, as its child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_and_linked_across_the_bus() {
    let (addr, mut exports) = start_receiver().await;
    let guard = telemetry::init_with(TelemetryConfig {
        service_name: "telemetry-test".into(),
        log_filter: "info".into(),
        log_format: LogFormat::Text,
        otlp_endpoint: Some(format!("http://{addr}")),
    })
    .expect("init telemetry");
    assert!(guard.exporting());
    // The global propagator gRPC hops rely on is W3C trace context.
    let fields: Vec<String> = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.fields().map(str::to_owned).collect()
    });
    assert!(fields.contains(&"traceparent".to_owned()), "{fields:?}");

    let message_trace = {
        let producer = tracing::info_span!("test.producer", answer = 42);
        let _entered = producer.enter();
        tracing::info!("producing");
        current_trace_context()
    };
    assert!(
        is_traceparent(&message_trace.traceparent),
        "{message_trace:?}"
    );
    let consumer = tracing::info_span!("test.consumer");
    assert!(set_parent_from(&consumer, &message_trace));
    consumer.in_scope(|| tracing::info!("consuming"));
    drop(consumer);
    // Dropping the guard flushes (inside a multi-threaded runtime, without stalling
    // the export it waits for).
    drop(guard);

    let mut spans = Vec::new();
    let mut service_names = Vec::new();
    while spans.len() < 2 {
        let request = tokio::time::timeout(Duration::from_secs(10), exports.recv())
            .await
            .expect("no export within 10 s")
            .expect("receiver closed");
        service_names.extend(service_name_of(&request));
        spans.extend(spans_of(&request).cloned());
    }
    assert!(
        service_names.iter().all(|name| name == "telemetry-test") && !service_names.is_empty(),
        "{service_names:?}"
    );
    let find = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("span {name} not exported; got {spans:?}"))
    };
    let producer = find("test.producer");
    let consumer = find("test.consumer");
    assert!(
        producer.attributes.iter().any(|kv| kv.key == "answer"),
        "{producer:?}"
    );
    assert_eq!(consumer.trace_id, producer.trace_id, "same trace");
    assert_eq!(
        consumer.parent_span_id, producer.span_id,
        "child of producer"
    );
    assert!(
        message_trace.traceparent.contains(&hex(&producer.trace_id)),
        "traceparent carries the exported trace id"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The helpers alone, with a thread-local subscriber (no global state, no export).
#[test]
fn trace_context_round_trip_links_consumer_to_producer() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    // No span: nothing to propagate, and nothing to link to.
    assert_eq!(current_trace_context(), TraceContext::default());
    let orphan = tracing::info_span!("orphan");
    assert!(!set_parent_from(&orphan, &TraceContext::default()));
    let garbage = TraceContext {
        traceparent: "not-a-traceparent".into(),
        tracestate: String::new(),
    };
    assert!(!set_parent_from(&orphan, &garbage));

    let producer = tracing::info_span!("producer");
    let trace = producer.in_scope(current_trace_context);
    assert!(is_traceparent(&trace.traceparent), "{trace:?}");
    let producer_context = producer.context();
    let producer_span = producer_context.span();
    let producer_ids = producer_span.span_context();

    let consumer = tracing::info_span!("consumer");
    assert!(set_parent_from(&consumer, &trace));
    let consumer_context = consumer.context();
    let consumer_span = consumer_context.span();
    let consumer_ids = consumer_span.span_context();
    assert_eq!(consumer_ids.trace_id(), producer_ids.trace_id());
    assert_ne!(consumer_ids.span_id(), producer_ids.span_id());
    assert!(
        trace
            .traceparent
            .contains(&producer_ids.span_id().to_string())
    );
}
