//! Test harness: a session service on a fresh SQLite or PostgreSQL database,
//! called in-process or through a real gRPC server, behind one `SessionApi`.

// Each test binary uses a different part of the harness.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use clawgate_proto::session::{
    AppendMessageRequest, EnsureSessionRequest, GetSessionRequest, ListMessagesRequest, SessionApi,
    SessionClient, SessionGrpc, TranscriptMessage,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::db::testing::{TestDatabase, fresh_postgres_url, fresh_sqlite_url};
use clawgate_runtime::internal_token::KeySet;
use clawgate_session::SessionService;
use tokio::task::JoinHandle;

/// A running service under test. Dropping it stops the server and removes the database.
pub struct Harness {
    api: Arc<dyn SessionApi>,
    grpc_addr: Option<SocketAddr>,
    server: Option<JoinHandle<()>>,
    // Last: the database outlives everything that uses it.
    database: TestDatabase,
}

impl Harness {
    pub async fn sqlite() -> Self {
        Self::local(fresh_sqlite_url().expect("sqlite test database")).await
    }

    pub async fn postgres() -> Self {
        Self::local(
            fresh_postgres_url()
                .await
                .expect("postgres test database (is PostgreSQL running?)"),
        )
        .await
    }

    /// The service on PostgreSQL, served by tonic and called through the gRPC client.
    pub async fn grpc() -> Self {
        let database = fresh_postgres_url()
            .await
            .expect("postgres test database (is PostgreSQL running?)");
        let service = migrated(&database).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let keys = KeySet::generate();
        let server = tonic::transport::Server::builder()
            .add_service(SessionGrpc::new(Arc::new(service), keys.verifier()).into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        let client =
            SessionClient::connect_lazy(&format!("http://{addr}"), keys.signer()).expect("client");
        Self {
            api: Arc::new(client),
            grpc_addr: Some(addr),
            server: Some(server),
            database,
        }
    }

    async fn local(database: TestDatabase) -> Self {
        let service = migrated(&database).await;
        Self {
            api: Arc::new(service),
            grpc_addr: None,
            server: None,
            database,
        }
    }

    pub fn api(&self) -> &dyn SessionApi {
        &*self.api
    }

    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// Address of the gRPC server, for the `grpc` harness.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn migrated(database: &TestDatabase) -> SessionService {
    let service = SessionService::connect(database.url())
        .await
        .expect("connect");
    service.migrate().await.expect("migrate");
    service
}

/// A principal of `tenant` / `user` with write scope.
pub fn principal(tenant: &str, user: &str) -> Principal {
    Principal {
        tenant_id: tenant.into(),
        user_id: user.into(),
        scopes: vec![clawgate_proto::principal::SCOPE_WRITE.into()],
        ..Default::default()
    }
}

pub fn append_request(key: &str, role: &str, content: &str, run_id: &str) -> AppendMessageRequest {
    AppendMessageRequest {
        session_key: key.into(),
        role: role.into(),
        content: content.into(),
        run_id: run_id.into(),
        ..Default::default()
    }
}

pub async fn append(
    api: &dyn SessionApi,
    who: &Principal,
    key: &str,
    role: &str,
    content: &str,
) -> TranscriptMessage {
    api.append_message(who, append_request(key, role, content, ""))
        .await
        .expect("append")
}

pub async fn messages(api: &dyn SessionApi, who: &Principal, key: &str) -> Vec<TranscriptMessage> {
    api.list_messages(
        who,
        ListMessagesRequest {
            session_key: key.into(),
            limit: 0,
        },
    )
    .await
    .expect("list messages")
    .messages
}

pub fn get(key: &str) -> GetSessionRequest {
    GetSessionRequest {
        session_key: key.into(),
    }
}

pub fn ensure(key: &str) -> EnsureSessionRequest {
    EnsureSessionRequest {
        session_key: key.into(),
        agent_id: String::new(),
    }
}

pub fn assert_code<T: std::fmt::Debug>(result: Result<T, ServiceError>, code: ErrorCode) -> String {
    match result {
        Err(err) => {
            assert_eq!(err.code, code, "unexpected error {err:?}");
            err.message
        }
        Ok(value) => panic!("expected {code}, got {value:?}"),
    }
}
