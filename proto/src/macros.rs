//! `service_bindings!` turns one list of RPCs into the three things every service
//! needs, so they cannot drift apart:
//!
//! - the async service trait (`principal` first, then the request message);
//! - a client, local (the implementation in this process) or gRPC, that itself
//!   implements the trait, so callers never know which they hold;
//! - a gRPC server adapter that takes the principal from the call's verified token
//!   (see [`crate::call_auth`]), reads the trace context and calls the trait.
//!
//! Every trait method is required: an RPC is implemented by its service or not
//! declared at all, so nothing answers "unimplemented" at run time. Both the
//! client (on either path) and the adapter run every call through their
//! [`CallLayers`](crate::call_layer::CallLayers), the one tower stack that wraps
//! every RPC (the per-call deadline today).
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
                ) -> Result<$Resp, $crate::ServiceError>;
            )*
        }

        #[doc = concat!("A handle on the ", $name, " service, in this process or over gRPC.")]
        #[doc = ""]
        #[doc = "Every call runs through the client's [`CallLayers`](crate::call_layer::CallLayers)."]
        #[derive(Clone)]
        pub struct $Client {
            route: $crate::macros::Route<dyn $Trait, GrpcClient<tonic::transport::Channel>>,
            layers: $crate::call_layer::CallLayers,
            /// The channel of a gRPC client, for its health check.
            channel: Option<tonic::transport::Channel>,
        }

        impl $Client {
            /// Calls `service` directly, in this process.
            pub fn local(service: std::sync::Arc<dyn $Trait>) -> Self {
                Self {
                    route: $crate::macros::Route::Local(service),
                    layers: $crate::call_layer::CallLayers::default(),
                    channel: None,
                }
            }

            /// Calls the service over gRPC on `channel`, signing each call's
            /// principal with `signer`.
            pub fn grpc(
                channel: tonic::transport::Channel,
                signer: $crate::call_auth::SharedSigner,
            ) -> Self {
                Self {
                    route: $crate::macros::Route::Grpc(GrpcClient::new(channel.clone()), signer),
                    layers: $crate::call_layer::CallLayers::default(),
                    channel: Some(channel),
                }
            }

            /// Calls the service at `url` over gRPC, connecting on first use.
            pub fn connect_lazy(
                url: &str,
                signer: $crate::call_auth::SharedSigner,
            ) -> Result<Self, $crate::ServiceError> {
                Ok(Self::grpc($crate::grpc::lazy_channel(url)?, signer))
            }

            /// The same client with every call failing `UNAVAILABLE` after `timeout`.
            pub fn with_call_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.layers = $crate::call_layer::CallLayers::with_timeout(timeout);
                self
            }

            /// Whether the service answers: in this process it does; over gRPC,
            /// what the standard health check of its service answers within
            /// `timeout` (see [`crate::reach`]).
            pub async fn reachability(
                &self,
                timeout: std::time::Duration,
            ) -> $crate::reach::Reachability {
                match &self.channel {
                    None => $crate::reach::Reachability::InProcess,
                    Some(channel) => {
                        let name = <GrpcServer<$Adapter> as tonic::server::NamedService>::NAME;
                        $crate::reach::check(channel.clone(), name, timeout).await
                    }
                }
            }
        }

        impl std::fmt::Debug for $Client {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.route {
                    $crate::macros::Route::Local(_) => {
                        f.write_str(concat!(stringify!($Client), "::Local"))
                    }
                    $crate::macros::Route::Grpc(..) => {
                        f.write_str(concat!(stringify!($Client), "::Grpc"))
                    }
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
                    let rpc = $crate::call_layer::Rpc {
                        service: $name,
                        method: stringify!($method),
                    };
                    let call = async {
                        $crate::macros::service_bindings!(@check $kind, principal);
                        match &self.route {
                            $crate::macros::Route::Local(service) => {
                                service.$method(principal, request).await
                            }
                            $crate::macros::Route::Grpc(client, signer) => {
                                let request = $crate::grpc::outgoing(&**signer, principal, request)?;
                                let mut client = client.clone();
                                client
                                    .$method(request)
                                    .await
                                    .map(tonic::Response::into_inner)
                                    .map_err($crate::ServiceError::from)
                            }
                        }
                    };
                    self.layers
                        .call(rpc, $crate::call_layer::Side::Client, call)
                        .await
                }
            )*
        }

        #[doc = concat!("Serves a ", stringify!($Trait), " implementation over gRPC.")]
        #[derive(Clone)]
        pub struct $Adapter {
            service: std::sync::Arc<dyn $Trait>,
            verifier: $crate::call_auth::SharedVerifier,
            layers: $crate::call_layer::CallLayers,
        }

        impl $Adapter {
            /// Serves `service`, accepting only calls whose token `verifier` accepts.
            pub fn new(
                service: std::sync::Arc<dyn $Trait>,
                verifier: $crate::call_auth::SharedVerifier,
            ) -> Self {
                Self {
                    service,
                    verifier,
                    layers: $crate::call_layer::CallLayers::default(),
                }
            }

            /// The same adapter with every call failing `UNAVAILABLE` after `timeout`.
            pub fn with_call_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.layers = $crate::call_layer::CallLayers::with_timeout(timeout);
                self
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
                    let rpc = $crate::call_layer::Rpc {
                        service: $name,
                        method: stringify!($method),
                    };
                    let call = async {
                        let principal = $crate::grpc::principal_of(&*self.verifier, &request)?;
                        $crate::macros::service_bindings!(@check $kind, principal);
                        self.service.$method(&principal, request.into_inner()).await
                    };
                    let response = self
                        .layers
                        .call(rpc, $crate::call_layer::Side::Server, call)
                        .instrument(span)
                        .await?;
                    Ok(tonic::Response::new(response))
                }
            )*
        }
    };
}

pub(crate) use service_bindings;

/// Where a generated client sends its calls.
pub(crate) enum Route<S: ?Sized, G> {
    /// The implementation in this process.
    Local(std::sync::Arc<S>),
    /// A remote service; every call carries a token signed by the signer.
    Grpc(G, crate::call_auth::SharedSigner),
}

impl<S: ?Sized, G: Clone> Clone for Route<S, G> {
    fn clone(&self) -> Self {
        match self {
            Self::Local(service) => Self::Local(service.clone()),
            Self::Grpc(client, signer) => Self::Grpc(client.clone(), signer.clone()),
        }
    }
}
