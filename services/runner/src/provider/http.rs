//! What every HTTP model provider shares: sending a request within the idle
//! timeout, sorting transport failures and error statuses into
//! [`ProviderErrorKind`]s, reading `Retry-After`, and turning a
//! `text/event-stream` response into a [`ModelStream`] with a wire parser.
//!
//! Invariants: a response body read for an error is bounded and only logged;
//! the stream owns the response (dropping it closes the connection); a stream
//! that yields an `Err` yields nothing after it; a provider silent for longer
//! than the idle timeout fails the stream instead of hanging the run.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

use super::{ModelEvent, ModelStream, ProviderError, ProviderErrorKind};
use crate::config::ProviderTimeouts;

/// Longest error body read from a failed response (for the log only).
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// Longest `Retry-After` honoured (a provider asking for more is failed over).
const MAX_RETRY_AFTER_MS: u64 = 10 * 60 * 1000;

/// What a stream should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    Continue,
    /// The provider said the stream is complete.
    Done,
}

/// A provider's stream format: fed each SSE event, emits [`ModelEvent`]s.
pub(crate) trait StreamParser: Send + 'static {
    /// Parses one SSE event (`event` is its `event:` name, often empty).
    fn feed(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ModelEvent>,
    ) -> Result<Feed, ProviderError>;
    /// Whether a stream that ends now (without the provider's end marker) is
    /// complete anyway.
    fn saw_finish(&self) -> bool;
    /// Ends a complete stream: whatever is pending, then [`ModelEvent::Done`].
    fn finish(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ProviderError>;
}

/// The HTTP client of a provider.
pub(crate) fn client(timeouts: ProviderTimeouts) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .build()
        .map_err(|err| {
            tracing::error!(error = %err, "cannot build the model provider HTTP client");
            ProviderError::new(
                ProviderErrorKind::Unknown,
                "the model provider client could not be initialised",
            )
        })
}

/// Counts the malformed events of one stream: a few are skipped (with a
/// warning), more fail it.
#[derive(Debug, Default)]
pub(crate) struct Malformed {
    seen: u32,
}

impl Malformed {
    /// Events tolerated before the stream fails.
    const LIMIT: u32 = 8;

    /// Records one malformed event; an error once there were too many.
    pub fn skip(&mut self, err: &serde_json::Error) -> Result<Feed, ProviderError> {
        self.seen += 1;
        tracing::warn!(error = %err, count = self.seen, "skipping malformed model stream event");
        if self.seen > Self::LIMIT {
            return Err(ProviderError::new(
                ProviderErrorKind::Protocol,
                "the model provider sent a malformed stream",
            ));
        }
        Ok(Feed::Continue)
    }
}

/// Sends `request`, waiting at most `idle` for the response headers.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    idle: Duration,
    endpoint: &str,
) -> Result<reqwest::Response, ProviderError> {
    match tokio::time::timeout(idle, request.send()).await {
        Err(_) => Err(ProviderError::new(
            ProviderErrorKind::Timeout,
            "the model provider did not answer in time",
        )),
        Ok(Err(err)) => Err(transport_error(&err, endpoint)),
        Ok(Ok(response)) => Ok(response),
    }
}

fn transport_error(err: &reqwest::Error, endpoint: &str) -> ProviderError {
    tracing::warn!(error = %err, endpoint, "model provider request failed");
    if err.is_timeout() {
        ProviderError::new(
            ProviderErrorKind::Timeout,
            "the model provider did not answer in time",
        )
    } else if err.is_connect() {
        ProviderError::new(
            ProviderErrorKind::Network,
            "could not connect to the model provider",
        )
    } else {
        ProviderError::new(
            ProviderErrorKind::Network,
            "the request to the model provider failed",
        )
    }
}

/// A failed response: its status, its `Retry-After` and its (bounded) body.
pub(crate) struct Failure {
    pub status: u16,
    pub retry_after_ms: Option<u64>,
    pub body: String,
}

impl Failure {
    pub async fn read(response: reqwest::Response, idle: Duration, endpoint: &str) -> Self {
        let status = response.status().as_u16();
        let retry_after_ms = retry_after_ms(response.headers(), SystemTime::now());
        let body = read_error_body(response, idle).await;
        tracing::warn!(status, body = %body, endpoint, "model provider answered with an error status");
        Self {
            status,
            retry_after_ms,
            body,
        }
    }

    /// The error of a status no body refines, for a provider that serves `model`.
    pub fn by_status(&self, model: &str, missing_key: Option<&str>) -> ProviderError {
        let status = self.status;
        match status {
            401 | 403 => match missing_key {
                Some(setting) => ProviderError::new(
                    ProviderErrorKind::Auth,
                    format!(
                        "the model provider requires an API key (HTTP {status}): set {setting}"
                    ),
                ),
                None => ProviderError::new(
                    ProviderErrorKind::Auth,
                    format!("the model provider rejected the API key (HTTP {status})"),
                ),
            },
            404 => ProviderError::new(
                ProviderErrorKind::Unknown,
                format!(
                    "the model provider does not serve model \"{model}\" at this endpoint (HTTP 404)"
                ),
            ),
            408 | 504 => ProviderError::new(
                ProviderErrorKind::Timeout,
                format!("the model provider timed out (HTTP {status})"),
            ),
            413 => ProviderError::new(
                ProviderErrorKind::ContextLength,
                "the conversation is too long for the model's context window",
            ),
            429 => ProviderError::new(
                ProviderErrorKind::RateLimit,
                "the model provider's rate limit was reached (HTTP 429); try again later",
            ),
            529 => ProviderError::new(
                ProviderErrorKind::Server,
                "the model provider is overloaded (HTTP 529)",
            ),
            400..=499 => ProviderError::new(
                ProviderErrorKind::Unknown,
                format!("the model provider rejected the request (HTTP {status})"),
            ),
            _ => ProviderError::new(
                ProviderErrorKind::Server,
                format!("the model provider failed (HTTP {status})"),
            ),
        }
    }
}

/// How long the provider asked to wait: `retry-after-ms`, else `Retry-After`
/// in seconds or as an HTTP date; capped at ten minutes.
pub(crate) fn retry_after_ms(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<u64> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let millis = header("retry-after-ms")
        .and_then(|value| value.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| ms.ceil() as u64)
        .or_else(|| {
            let value = header("retry-after")?;
            if let Ok(seconds) = value.parse::<f64>() {
                return (seconds.is_finite() && seconds >= 0.0)
                    .then(|| (seconds * 1000.0).ceil() as u64);
            }
            let at = httpdate::parse_http_date(value).ok()?;
            Some(
                at.duration_since(now)
                    .map_or(0, |wait| wait.as_millis() as u64),
            )
        })?;
    Some(millis.min(MAX_RETRY_AFTER_MS))
}

async fn read_error_body(response: reqwest::Response, wait: Duration) -> String {
    let Ok(Ok(bytes)) = tokio::time::timeout(wait, response.bytes()).await else {
        return String::new();
    };
    let end = bytes.len().min(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The model stream of a successful `text/event-stream` response.
pub(crate) fn event_stream<P: StreamParser>(
    response: reqwest::Response,
    parser: P,
    idle: Duration,
) -> ModelStream {
    let state = StreamState {
        events: Box::pin(response.bytes_stream().eventsource()),
        parser,
        pending: VecDeque::new(),
        done: false,
        idle,
    };
    Box::pin(futures_util::stream::unfold(state, next_event))
}

type SseStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

struct StreamState<P> {
    events: SseStream,
    parser: P,
    pending: VecDeque<ModelEvent>,
    done: bool,
    idle: Duration,
}

/// One step of the model stream: the next parsed event, reading SSE events as needed.
async fn next_event<P: StreamParser>(
    mut state: StreamState<P>,
) -> Option<(Result<ModelEvent, ProviderError>, StreamState<P>)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if state.done {
            return None;
        }
        let mut out = Vec::new();
        let step = match tokio::time::timeout(state.idle, state.events.next()).await {
            Err(_) => Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                "the model provider stopped responding",
            )),
            Ok(None) if state.parser.saw_finish() => {
                state.parser.finish(&mut out).map(|()| Feed::Done)
            }
            Ok(None) => Err(ProviderError::new(
                ProviderErrorKind::Network,
                "the model stream ended before the reply was complete",
            )),
            Ok(Some(Err(err))) => {
                tracing::warn!(error = %err, "model stream broke");
                Err(ProviderError::new(
                    ProviderErrorKind::Network,
                    "the connection to the model provider broke",
                ))
            }
            Ok(Some(Ok(event))) => state.parser.feed(&event.event, &event.data, &mut out),
        };
        state.pending.extend(out);
        match step {
            Ok(Feed::Continue) => {}
            Ok(Feed::Done) => state.done = true,
            Err(err) => {
                state.done = true;
                state.pending.clear();
                return Some((Err(err), state));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |h: &[(&'static str, &str)]| retry_after_ms(&headers(h), now);
        assert_eq!(at(&[("retry-after", "2")]), Some(2_000));
        assert_eq!(at(&[("retry-after", "0.5")]), Some(500));
        assert_eq!(
            at(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(250)
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(at(&[("retry-after", &later)]), Some(30_000));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(at(&[("retry-after", &earlier)]), Some(0));
        assert_eq!(at(&[("retry-after", "86400")]), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(at(&[("retry-after", "soon")]), None);
        assert_eq!(at(&[("retry-after", "-1")]), None);
        assert_eq!(at(&[]), None);
    }
}
