//! Every gRPC hop carries a signed call token, and a real tonic server adapter
//! (the session service on SQLite) serves a call only when the token verifies:
//! missing, tampered, expired and unknown-key tokens are refused with
//! UNAUTHENTICATED before the service runs; a valid token delivers exactly the
//! principal it was signed for. Key rotation works by `kid`.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_proto::call_auth::{CallSigner, CallVerifier};
use clawgate_proto::pb::session::v1::session_service_client::SessionServiceClient;
use clawgate_proto::principal::Dialect;
use clawgate_proto::session::{
    AllowExecRequest, AppendMessageRequest, DeleteProviderRequest, DeleteProviderResponse,
    DeleteSessionRequest, DeleteSessionResponse, EnsureSessionRequest, GetSessionRequest,
    ListMessagesRequest, ListMessagesResponse, ListProvidersRequest, ListProvidersResponse,
    ListSessionsRequest, ListSessionsResponse, PatchSessionRequest, PutProviderRequest,
    ResetSessionRequest, Session, SessionApi, SessionClient, SessionGrpc, TenantProvider,
    TranscriptMessage,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::db::testing::{TestDatabase, fresh_sqlite_url};
use clawgate_runtime::internal_token::{InternalTokenSigner, KeySet};
use clawgate_session::SessionService;

/// The real session service, recording the principal of every call it serves.
struct Recording {
    inner: SessionService,
    seen: Mutex<Vec<Principal>>,
}

#[async_trait]
impl SessionApi for Recording {
    async fn ensure_session(
        &self,
        principal: &Principal,
        request: EnsureSessionRequest,
    ) -> Result<Session, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.ensure_session(principal, request).await
    }

    async fn get_session(
        &self,
        principal: &Principal,
        request: GetSessionRequest,
    ) -> Result<Session, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.get_session(principal, request).await
    }

    async fn list_sessions(
        &self,
        principal: &Principal,
        request: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.list_sessions(principal, request).await
    }

    async fn patch_session(
        &self,
        principal: &Principal,
        request: PatchSessionRequest,
    ) -> Result<Session, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.patch_session(principal, request).await
    }

    async fn delete_session(
        &self,
        principal: &Principal,
        request: DeleteSessionRequest,
    ) -> Result<DeleteSessionResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.delete_session(principal, request).await
    }

    async fn reset_session(
        &self,
        principal: &Principal,
        request: ResetSessionRequest,
    ) -> Result<Session, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.reset_session(principal, request).await
    }

    async fn append_message(
        &self,
        principal: &Principal,
        request: AppendMessageRequest,
    ) -> Result<TranscriptMessage, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.append_message(principal, request).await
    }

    async fn list_messages(
        &self,
        principal: &Principal,
        request: ListMessagesRequest,
    ) -> Result<ListMessagesResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.list_messages(principal, request).await
    }

    async fn list_agents(
        &self,
        principal: &Principal,
        request: clawgate_proto::session::ListAgentsRequest,
    ) -> Result<clawgate_proto::session::ListAgentsResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.list_agents(principal, request).await
    }

    async fn get_agent(
        &self,
        principal: &Principal,
        request: clawgate_proto::session::GetAgentRequest,
    ) -> Result<clawgate_proto::session::Agent, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.get_agent(principal, request).await
    }

    async fn create_agent(
        &self,
        principal: &Principal,
        request: clawgate_proto::session::CreateAgentRequest,
    ) -> Result<clawgate_proto::session::Agent, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.create_agent(principal, request).await
    }

    async fn update_agent(
        &self,
        principal: &Principal,
        request: clawgate_proto::session::UpdateAgentRequest,
    ) -> Result<clawgate_proto::session::Agent, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.update_agent(principal, request).await
    }

    async fn delete_agent(
        &self,
        principal: &Principal,
        request: clawgate_proto::session::DeleteAgentRequest,
    ) -> Result<clawgate_proto::session::DeleteAgentResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.delete_agent(principal, request).await
    }

    async fn allow_exec(
        &self,
        principal: &Principal,
        request: AllowExecRequest,
    ) -> Result<clawgate_proto::session::Agent, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.allow_exec(principal, request).await
    }

    async fn list_providers(
        &self,
        principal: &Principal,
        request: ListProvidersRequest,
    ) -> Result<ListProvidersResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.list_providers(principal, request).await
    }

    async fn put_provider(
        &self,
        principal: &Principal,
        request: PutProviderRequest,
    ) -> Result<TenantProvider, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.put_provider(principal, request).await
    }

    async fn delete_provider(
        &self,
        principal: &Principal,
        request: DeleteProviderRequest,
    ) -> Result<DeleteProviderResponse, ServiceError> {
        self.seen.lock().unwrap().push(principal.clone());
        self.inner.delete_provider(principal, request).await
    }
}

/// A session gRPC server on 127.0.0.1 accepting tokens `verifier` accepts.
struct Server {
    url: String,
    service: Arc<Recording>,
    task: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
}

impl Server {
    async fn start(verifier: Arc<dyn CallVerifier>) -> Self {
        let database = fresh_sqlite_url().unwrap();
        let inner = SessionService::connect(database.url()).await.unwrap();
        inner.migrate().await.unwrap();
        let service = Arc::new(Recording {
            inner,
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(SessionGrpc::new(service.clone(), verifier).into_server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        Self {
            url: format!("http://{addr}"),
            service,
            task,
            _database: database,
        }
    }

    fn client(&self, signer: Arc<dyn CallSigner>) -> SessionClient {
        SessionClient::connect_lazy(&self.url, signer).unwrap()
    }

    fn seen(&self) -> Vec<Principal> {
        self.service.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn alice() -> Principal {
    Principal {
        tenant_id: "t1".into(),
        user_id: "alice".into(),
        role: "operator".into(),
        scopes: vec!["operator.write".into(), "operator.read".into()],
        device_id: "device-1".into(),
        connection_id: "conn-1".into(),
        dialect: Dialect::Openclaw as i32,
    }
}

fn ensure(key: &str) -> EnsureSessionRequest {
    EnsureSessionRequest {
        session_key: key.into(),
        agent_id: String::new(),
    }
}

/// Asserts the call was refused as unauthenticated and returns the message.
fn refused<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> String {
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err:?}");
    err.message
}

/// Signs correctly, then rewrites the claims to another tenant and user while
/// keeping the original signature.
struct Tampering(Arc<InternalTokenSigner>);

impl CallSigner for Tampering {
    fn sign(&self, principal: &Principal) -> Result<String, ServiceError> {
        let token = self.0.sign(principal)?;
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["tenant_id"] = "t2".into();
        claims["user_id"] = "mallory".into();
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        Ok(format!("{}.{claims}.{}", parts[0], parts[2]))
    }
}

/// Signs with a properly keyed signer, but as of `age` ago.
struct Backdated(Arc<InternalTokenSigner>, Duration);

impl CallSigner for Backdated {
    fn sign(&self, principal: &Principal) -> Result<String, ServiceError> {
        self.0.issue(principal, SystemTime::now() - self.1)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_delivers_exactly_its_principal() {
    let keys = KeySet::generate();
    let server = Server::start(keys.verifier()).await;
    let client = server.client(keys.signer());

    let created = client
        .ensure_session(&alice(), ensure("main"))
        .await
        .unwrap();
    assert_eq!(created.session_key, "main");
    assert_eq!(server.seen(), vec![alice()]);

    // The service scopes by the token's principal: another tenant sees nothing.
    let other = Principal {
        tenant_id: "t2".into(),
        ..alice()
    };
    let missing = client
        .get_session(
            &other,
            GetSessionRequest {
                session_key: "main".into(),
            },
        )
        .await;
    assert_eq!(missing.unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(server.seen(), vec![alice(), other]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_without_a_token_is_refused() {
    let keys = KeySet::generate();
    let server = Server::start(keys.verifier()).await;
    let mut raw = SessionServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    let status = raw.ensure_session(ensure("main")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "missing call token");

    // The old unsigned principal metadata is not a credential.
    let mut request = tonic::Request::new(ensure("main"));
    request.metadata_mut().insert_bin(
        "clawgate-principal-bin",
        tonic::metadata::MetadataValue::from_bytes(&prost::Message::encode_to_vec(&alice())),
    );
    let status = raw.ensure_session(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // A bearer value that is no token at all.
    let mut request = tonic::Request::new(ensure("main"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer not-a-token".parse().unwrap());
    let status = raw.ensure_session(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    assert!(server.seen().is_empty(), "the service never ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_token_is_refused() {
    let keys = KeySet::generate();
    let server = Server::start(keys.verifier()).await;
    let client = server.client(Arc::new(Tampering(keys.signer())));
    let message = refused(client.ensure_session(&alice(), ensure("main")).await);
    assert_eq!(message, "invalid call token");
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_an_unknown_key_is_refused() {
    let server = Server::start(KeySet::generate().verifier()).await;
    let client = server.client(KeySet::generate().signer());
    let message = refused(client.ensure_session(&alice(), ensure("main")).await);
    assert_eq!(message, "call token signed by an unknown key");
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refused() {
    let keys = KeySet::generate();
    let server = Server::start(keys.verifier()).await;
    let client = server.client(Arc::new(Backdated(
        keys.signer(),
        Duration::from_secs(20 * 60),
    )));
    let message = refused(client.ensure_session(&alice(), ensure("main")).await);
    assert_eq!(message, "expired call token");
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let old = KeySet::generate();
    let old_signer = old.signer();
    let new_key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());

    // During the rotation the server knows both keys.
    let both = KeySet::from_signing_key(&new_key).with_verification_key(old.active_public_key());
    let server = Server::start(both.verifier()).await;
    server
        .client(old_signer.clone())
        .ensure_session(&alice(), ensure("main"))
        .await
        .unwrap();
    server
        .client(both.signer())
        .ensure_session(&alice(), ensure("main"))
        .await
        .unwrap();
    drop(server);

    // After it, only the new key: tokens of the old key are refused.
    let new_only = KeySet::from_signing_key(&new_key);
    let server = Server::start(new_only.verifier()).await;
    let message = refused(
        server
            .client(old_signer)
            .ensure_session(&alice(), ensure("main"))
            .await,
    );
    assert_eq!(message, "call token signed by an unknown key");
    server
        .client(new_only.signer())
        .ensure_session(&alice(), ensure("main"))
        .await
        .unwrap();
    assert_eq!(server.seen(), vec![alice()]);
}
