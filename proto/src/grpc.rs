//! What every gRPC hop carries besides the request: the principal and the W3C
//! trace context. Clients attach both; server adapters read both and refuse a call
//! without a principal.

use opentelemetry::propagation::{Extractor, Injector};
use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Principal, ServiceError};

/// Binary metadata key holding the protobuf-encoded principal.
pub const PRINCIPAL_METADATA: &str = "clawgate-principal-bin";

/// Wraps `message` in a request carrying `principal` and the current trace context.
pub fn outgoing<T>(principal: &Principal, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert_bin(
        PRINCIPAL_METADATA,
        MetadataValue::from_bytes(&principal.encode_to_vec()),
    );
    inject_trace_context(metadata);
    request
}

/// Reads the principal of an incoming request. `None` when the caller sent none.
pub fn principal_of<T>(request: &tonic::Request<T>) -> Result<Option<Principal>, tonic::Status> {
    let Some(value) = request.metadata().get_bin(PRINCIPAL_METADATA) else {
        return Ok(None);
    };
    let bytes = value
        .to_bytes()
        .map_err(|_| tonic::Status::unauthenticated("malformed principal"))?;
    Principal::decode(bytes)
        .map(Some)
        .map_err(|_| tonic::Status::unauthenticated("malformed principal"))
}

/// A span for serving one RPC, child of the caller's span when the caller sent
/// trace context.
pub fn server_span<T>(request: &tonic::Request<T>, service: &str, method: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc.server",
        otel.name = %format!("{service}/{method}"),
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&MetadataExtractor(request.metadata()))
    });
    let _ = span.set_parent(parent);
    span
}

/// A channel that connects on first use and reconnects by itself.
pub fn lazy_channel(url: &str) -> Result<Channel, ServiceError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| ServiceError::invalid(format!("bad service address {url:?}: {err}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

fn inject_trace_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => Some(key.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}
