//! Process telemetry: the global `tracing` subscriber (logs and, optionally, OTLP span
//! export) and the W3C trace context carried by bus messages.
//!
//! Owns, per process: the global tracing subscriber (log output, the in-memory
//! ring of recent lines [`crate::log_ring`] and OTLP export), the global OpenTelemetry
//! text-map propagator and, when export is on, the tracer provider (flushed and shut
//! down by [`TelemetryGuard`]).
//!
//! Invariants:
//! - the global propagator is always W3C `TraceContextPropagator` (the gRPC hops in
//!   `clawgate_proto::grpc` inject and extract through it);
//! - spans are exported over OTLP/gRPC only when an endpoint is configured
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise nothing leaves the process but logs;
//! - the exporter's own transport (tonic, h2, hyper, tower, opentelemetry) is never
//!   exported, so exporting cannot feed itself;
//! - bus messages always carry W3C trace context, independent of the global
//!   propagator ([`current_trace_context`], [`set_parent_from`]).

use std::collections::HashMap;
use std::time::Duration;

use clawgate_proto::pb::common::v1::TraceContext;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Bound on the final flush when telemetry shuts down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Targets whose spans and events stay out of the OTLP export.
const EXPORTER_INTERNALS: [&str; 5] = ["opentelemetry", "tonic", "h2", "hyper", "tower"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init_with`] installs. [`TelemetryConfig::from_env`] reads the usual variables.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// The OpenTelemetry resource attribute `service.name`.
    pub service_name: String,
    /// An `EnvFilter` directive such as `info,clawgate_edge=debug`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// OTLP/gRPC collector address, e.g. `http://otel-collector:4317`; `None` = no export.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// `RUST_LOG` (default `info`), `CLAWGATE_LOG_FORMAT` (`json` or text) and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (export only when set and non-empty).
    pub fn from_env(service_name: &str) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let log_format = match var("CLAWGATE_LOG_FORMAT") {
            Some(format) if format.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        Self {
            service_name: service_name.to_owned(),
            log_filter: var("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            log_format,
            otlp_endpoint: var(opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    InvalidFilter(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("OTLP export must be set up inside a Tokio runtime")]
    NoRuntime,
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs telemetry configured from the environment (see [`TelemetryConfig::from_env`]).
/// Call once per process, inside the Tokio runtime, and keep the guard until exit.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    init_with(TelemetryConfig::from_env(service_name))
}

/// Installs the global subscriber, the W3C propagator and, if configured, OTLP export.
pub fn init_with(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|err| TelemetryError::InvalidFilter(err.to_string()))?;
    let provider = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| otlp_tracer_provider(endpoint, &config.service_name))
        .transpose()?;
    let export_layer = provider.as_ref().map(|provider| {
        let exporter_internals = EXPORTER_INTERNALS.iter().fold(
            Targets::new().with_default(LevelFilter::TRACE),
            |targets, target| targets.with_target(*target, LevelFilter::OFF),
        );
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(config.service_name.clone()))
            .with_filter(exporter_internals)
    });
    let log_layer = match config.log_format {
        LogFormat::Text => fmt::layer().boxed(),
        LogFormat::Json => fmt::layer().json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(log_layer)
        .with(crate::log_ring::layer())
        .with(export_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` through a batch span
/// processor, with the resource `service.name`. Must be called inside a Tokio runtime.
pub fn otlp_tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::NoRuntime);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Keeps span export alive; flushes and shuts it down when dropped or on [`shutdown`].
///
/// Prefer `guard.shutdown().await` at the end of an async `main`: flushing blocks,
/// and the export it waits for runs on the Tokio runtime. On drop inside a
/// multi-threaded runtime the flush runs via `block_in_place`; inside a
/// current-thread runtime it can only be started on a helper thread (best effort).
///
/// [`shutdown`]: TelemetryGuard::shutdown
#[must_use = "dropping the guard stops span export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now, without blocking the async runtime.
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::warn!("span export flush failed");
            }
        }
    }

    /// Flushes and shuts export down, without blocking the async runtime.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || shut_down(&provider)).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| shut_down(&provider));
            }
            // Blocking this thread would stall the export the flush waits for.
            Ok(_) => {
                std::thread::spawn(move || shut_down(&provider));
            }
            Err(_) => shut_down(&provider),
        }
    }
}

fn shut_down(provider: &SdkTracerProvider) {
    if let Err(err) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
        tracing::warn!(error = %err, "span export shutdown failed");
    }
}

/// The W3C trace context of the current span, to put into a bus message. Empty
/// fields when there is no sampled-or-not valid span context (e.g. no OTel layer).
pub fn current_trace_context() -> TraceContext {
    trace_context_of(&tracing::Span::current())
}

/// The W3C trace context of `span`.
pub fn trace_context_of(span: &tracing::Span) -> TraceContext {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    TraceContext {
        traceparent: carrier.remove("traceparent").unwrap_or_default(),
        tracestate: carrier.remove("tracestate").unwrap_or_default(),
    }
}

/// Makes `span` a child of the span that produced `trace` (a consumer span of a bus
/// message becomes part of the producer's trace). Returns whether a parent was set:
/// `false` for an empty or malformed context, or a span that already started
/// recording or is disabled. Call before entering `span`.
pub fn set_parent_from(span: &tracing::Span, trace: &TraceContext) -> bool {
    if trace.traceparent.is_empty() {
        return false;
    }
    let parent = TraceContextPropagator::new().extract(&MessageContext(trace));
    if !parent.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(parent).is_ok()
}

struct MessageContext<'a>(&'a TraceContext);

impl Extractor for MessageContext<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.0.traceparent.as_str()),
            "tracestate" if !self.0.tracestate.is_empty() => Some(self.0.tracestate.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}
