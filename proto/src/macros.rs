//! `service_bindings!` turns one list of RPCs into the three things every service
//! needs, so they cannot drift apart:
//!
//! - the async service trait (`principal` first, then the request message);
//! - a client enum, `Local` (the implementation in this process) or `Grpc`, that
//!   itself implements the trait, so callers never know which they hold;
//! - a gRPC server adapter that takes the principal from the call's verified token
//!   (see [`crate::call_auth`]), reads the trace context and calls the trait.
//!
//! The gRPC client signs a token for the principal of every call with the
//! [`CallSigner`](crate::call_auth::CallSigner) it was built with; the adapter
//! refuses a call whose token does not verify, for every RPC. RPCs marked `authed`
//! additionally refuse an empty principal, on both paths. `public` RPCs (the
//! connect handshake and friends) run before a user principal exists.
//!
//! The invoking module must import `GrpcClient`, `GrpcService` and `GrpcServer`
//! (the generated tonic client, server trait and server) under those names.

macro_rules! service_bindings {
    (@check authed, $principal:ident) => {
        $principal.require()?;
    };
    (@check public, $principal:ident) => {
        let _ = &$principal;
    };
    (
        name: $name:literal,
        trait $Trait:ident,
        client $Client:ident,
        adapter $Adapter:ident,
        rpcs {
            $( $(#[$meta:meta])* $kind:ident fn $method:ident($Req:ty) -> $Resp:ty; )*
        }
    ) => {
        #[doc = concat!("The ", $name, " service. Every method takes the verified caller first.")]
        #[async_trait::async_trait]
        pub trait $Trait: Send + Sync + 'static {
            $(
                $(#[$meta])*
                async fn $method(
                    &self,
                    principal: &$crate::Principal,
                    request: $Req,
                ) -> Result<$Resp, $crate::ServiceError> {
                    let _ = (principal, request);
                    Err($crate::ServiceError::unimplemented(concat!($name, ".", stringify!($method))))
                }
            )*
        }

        #[doc = concat!("A handle on the ", $name, " service, in this process or over gRPC.")]
        #[derive(Clone)]
        pub enum $Client {
            Local(std::sync::Arc<dyn $Trait>),
            /// A remote service; every call carries a token signed by the signer.
            Grpc(
                GrpcClient<tonic::transport::Channel>,
                $crate::call_auth::SharedSigner,
            ),
        }

        impl $Client {
            /// Calls `service` directly, in this process.
            pub fn local(service: std::sync::Arc<dyn $Trait>) -> Self {
                Self::Local(service)
            }

            /// Calls the service over gRPC on `channel`, signing each call's
            /// principal with `signer`.
            pub fn grpc(
                channel: tonic::transport::Channel,
                signer: $crate::call_auth::SharedSigner,
            ) -> Self {
                Self::Grpc(GrpcClient::new(channel), signer)
            }

            /// Calls the service at `url` over gRPC, connecting on first use.
            pub fn connect_lazy(
                url: &str,
                signer: $crate::call_auth::SharedSigner,
            ) -> Result<Self, $crate::ServiceError> {
                Ok(Self::grpc($crate::grpc::lazy_channel(url)?, signer))
            }
        }

        impl std::fmt::Debug for $Client {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Local(_) => f.write_str(concat!(stringify!($Client), "::Local")),
                    Self::Grpc(..) => f.write_str(concat!(stringify!($Client), "::Grpc")),
                }
            }
        }

        #[async_trait::async_trait]
        impl $Trait for $Client {
            $(
                async fn $method(
                    &self,
                    principal: &$crate::Principal,
                    request: $Req,
                ) -> Result<$Resp, $crate::ServiceError> {
                    $crate::macros::service_bindings!(@check $kind, principal);
                    match self {
                        Self::Local(service) => service.$method(principal, request).await,
                        Self::Grpc(client, signer) => {
                            let request = $crate::grpc::outgoing(&**signer, principal, request)?;
                            let mut client = client.clone();
                            client
                                .$method(request)
                                .await
                                .map(tonic::Response::into_inner)
                                .map_err($crate::ServiceError::from)
                        }
                    }
                }
            )*
        }

        #[doc = concat!("Serves a ", stringify!($Trait), " implementation over gRPC.")]
        #[derive(Clone)]
        pub struct $Adapter {
            service: std::sync::Arc<dyn $Trait>,
            verifier: $crate::call_auth::SharedVerifier,
        }

        impl $Adapter {
            /// Serves `service`, accepting only calls whose token `verifier` accepts.
            pub fn new(
                service: std::sync::Arc<dyn $Trait>,
                verifier: $crate::call_auth::SharedVerifier,
            ) -> Self {
                Self { service, verifier }
            }

            /// The tonic service to add to a server.
            pub fn into_server(self) -> GrpcServer<Self> {
                GrpcServer::new(self)
            }
        }

        #[tonic::async_trait]
        impl GrpcService for $Adapter {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$Req>,
                ) -> Result<tonic::Response<$Resp>, tonic::Status> {
                    use tracing::Instrument as _;
                    let span = $crate::grpc::server_span(&request, $name, stringify!($method));
                    let call = async {
                        let principal = $crate::grpc::principal_of(&*self.verifier, &request)?;
                        $crate::macros::service_bindings!(@check $kind, principal);
                        self.service.$method(&principal, request.into_inner()).await
                    };
                    let response = call.instrument(span).await?;
                    Ok(tonic::Response::new(response))
                }
            )*
        }
    };
}

pub(crate) use service_bindings;
