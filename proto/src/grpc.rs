//! What every gRPC hop carries besides the request: a signed token holding the
//! principal (see [`crate::call_auth`]) and the W3C trace context. Clients attach
//! both; server adapters read both and refuse a call without a valid token.

use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::call_auth::{CallSigner, CallVerifier};
use crate::{Principal, ServiceError};

/// Wraps `message` in a request carrying a token for `principal`, signed by
/// `signer`, and the current trace context.
pub fn outgoing<T>(
    signer: &dyn CallSigner,
    principal: &Principal,
    message: T,
) -> Result<tonic::Request<T>, ServiceError> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    crate::call_auth::attach(signer, principal, metadata)?;
    inject_trace_context(metadata);
    Ok(request)
}

/// The principal of an incoming request, from its token as checked by `verifier`.
/// Fails with `UNAUTHENTICATED` when the token is missing or invalid.
pub fn principal_of<T>(
    verifier: &dyn CallVerifier,
    request: &tonic::Request<T>,
) -> Result<Principal, ServiceError> {
    crate::call_auth::authenticate(verifier, request.metadata())
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
