//! The one place every service call passes through: a tower stack that wraps
//! each call of a generated client (local or gRPC) and each call a generated gRPC
//! server adapter serves.
//!
//! The stack is built from [`tower`] layers around [`Invoke`], a service whose
//! request is the call itself (its [`Rpc`] and the future that performs it).
//! Today it holds one layer, a per-call deadline ([`DEFAULT_CALL_TIMEOUT`] unless
//! the client or adapter is given another); a call that misses it fails with
//! `UNAVAILABLE` (retryable), the same error on both paths. New cross-cutting
//! concerns (metrics) are added here as further layers, and reach every RPC of
//! every service at once.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::timeout::error::Elapsed;
use tower::timeout::{Timeout, TimeoutLayer};
use tower::{BoxError, Layer as _, Service, ServiceExt as _};

use crate::ServiceError;

/// How long a call may take when the client or adapter was not told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which RPC a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rpc {
    /// The service name (`auth`, `runner`, `session`).
    pub service: &'static str,
    /// The trait method (`start_run`).
    pub method: &'static str,
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.service, self.method)
    }
}

/// Which end of a call the stack runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// A generated client (either path).
    Client,
    /// A generated gRPC server adapter.
    Server,
}

/// One call travelling through the stack: what it is and the future doing it.
#[derive(Debug)]
pub struct Call<F> {
    pub rpc: Rpc,
    pub side: Side,
    pub future: F,
}

/// The innermost service of the stack: runs the call's future.
#[derive(Clone, Copy, Debug, Default)]
pub struct Invoke;

impl<F, T> Service<Call<F>> for Invoke
where
    F: Future<Output = Result<T, ServiceError>>,
{
    type Response = T;
    type Error = ServiceError;
    type Future = F;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call<F>) -> Self::Future {
        call.future
    }
}

/// The layers around [`Invoke`], outermost first.
type Stack = Timeout<Invoke>;

/// The call stack a client or adapter runs every call through.
#[derive(Clone, Debug)]
pub struct CallLayers {
    timeout: Duration,
    stack: Stack,
}

impl Default for CallLayers {
    fn default() -> Self {
        Self::with_timeout(DEFAULT_CALL_TIMEOUT)
    }
}

impl CallLayers {
    /// A stack whose calls fail with `UNAVAILABLE` after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            stack: TimeoutLayer::new(timeout).layer(Invoke),
        }
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `future`, the call `rpc` at `side`, through the stack.
    pub async fn call<F, T>(&self, rpc: Rpc, side: Side, future: F) -> Result<T, ServiceError>
    where
        F: Future<Output = Result<T, ServiceError>>,
    {
        let call = Call { rpc, side, future };
        self.stack
            .clone()
            .oneshot(call)
            .await
            .map_err(|err| self.mapped(rpc, err))
    }

    /// The service error for what a layer failed the call with.
    fn mapped(&self, rpc: Rpc, err: BoxError) -> ServiceError {
        match err.downcast::<ServiceError>() {
            Ok(err) => *err,
            Err(err) if err.is::<Elapsed>() => {
                tracing::warn!(%rpc, timeout_ms = self.timeout.as_millis(), "call timed out");
                ServiceError::unavailable(format!(
                    "{rpc} did not answer within {} ms",
                    self.timeout.as_millis()
                ))
            }
            Err(err) => ServiceError::internal(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    const RPC: Rpc = Rpc {
        service: "test",
        method: "slow",
    };

    #[tokio::test(start_paused = true)]
    async fn a_late_call_fails_unavailable() {
        let layers = CallLayers::with_timeout(Duration::from_millis(50));
        let late = layers.call(RPC, Side::Client, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, ServiceError>(1)
        });
        let err = late.await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.retryable);
        assert_eq!(err.message, "test.slow did not answer within 50 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_time_keeps_its_outcome() {
        let layers = CallLayers::with_timeout(Duration::from_millis(50));
        let answer = layers.call(RPC, Side::Server, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, ServiceError>(7)
        });
        assert_eq!(answer.await.unwrap(), 7);
        let failed = layers.call(RPC, Side::Server, async {
            Err::<u8, _>(ServiceError::not_found("nope"))
        });
        assert_eq!(failed.await.unwrap_err(), ServiceError::not_found("nope"));
    }
}
