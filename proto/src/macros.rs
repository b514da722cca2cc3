//! `service_bindings!` turns one list of RPCs into the three things every service
//! needs, so they cannot drift apart:
//!
//! - the async service trait (`principal` first, then the request message);
//! - a client enum, `Local` (the implementation in this process) or `Grpc`, that
//!   itself implements the trait, so callers never know which they hold;
//! - a gRPC server adapter that reads principal and trace context from metadata
//!   and calls the trait.
//!
//! RPCs marked `authed` refuse a call without a principal, on both paths. The only
//! `public` RPC is the connect handshake, which runs before a principal exists.
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
            Grpc(GrpcClient<tonic::transport::Channel>),
        }

        impl $Client {
            /// Calls `service` directly, in this process.
            pub fn local(service: std::sync::Arc<dyn $Trait>) -> Self {
                Self::Local(service)
            }

            /// Calls the service over gRPC on `channel`.
            pub fn grpc(channel: tonic::transport::Channel) -> Self {
                Self::Grpc(GrpcClient::new(channel))
            }

            /// Calls the service at `url` over gRPC, connecting on first use.
            pub fn connect_lazy(url: &str) -> Result<Self, $crate::ServiceError> {
                Ok(Self::grpc($crate::grpc::lazy_channel(url)?))
            }
        }

        impl std::fmt::Debug for $Client {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Local(_) => f.write_str(concat!(stringify!($Client), "::Local")),
                    Self::Grpc(_) => f.write_str(concat!(stringify!($Client), "::Grpc")),
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
                        Self::Grpc(client) => {
                            let mut client = client.clone();
                            client
                                .$method($crate::grpc::outgoing(principal, request))
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
        pub struct $Adapter(std::sync::Arc<dyn $Trait>);

        impl $Adapter {
            pub fn new(service: std::sync::Arc<dyn $Trait>) -> Self {
                Self(service)
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
                    let principal = $crate::grpc::principal_of(&request)?.unwrap_or_default();
                    let call = async {
                        $crate::macros::service_bindings!(@check $kind, principal);
                        self.0.$method(&principal, request.into_inner()).await
                    };
                    let response = call.instrument(span).await?;
                    Ok(tonic::Response::new(response))
                }
            )*
        }
    };
}

pub(crate) use service_bindings;
