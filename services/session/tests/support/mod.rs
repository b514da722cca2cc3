//! Test harness: a session service on a fresh SQLite or PostgreSQL database,
//! called in-process or through a real gRPC server, behind one `SessionApi`.
//!
//! On PostgreSQL the schema is migrated as the server's superuser (the owner)
//! and the service then runs as [`TEST_APP_ROLE`], a role that row-level
//! security applies to, as in a real deployment.

// Each test binary uses a different part of the harness.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use clawgate_proto::session::{
    AppendMessageRequest, EnsureSessionRequest, GetSessionRequest, ListMessagesRequest, SessionApi,
    SessionClient, SessionGrpc, TranscriptMessage,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::db::Database;
use clawgate_runtime::db::testing::{
    TEST_APP_ROLE, TestDatabase, fresh_postgres_url, fresh_sqlite_url,
};
use clawgate_runtime::internal_token::KeySet;
use clawgate_session::{SCHEMA, SessionService};
use tokio::task::JoinHandle;

/// A running service under test. Dropping it stops the server and removes the database.
pub struct Harness {
    api: Arc<dyn SessionApi>,
    /// The in-process service (as the app role on PostgreSQL).
    service: SessionService,
    /// URL the service connects with (the app role's on PostgreSQL).
    service_url: String,
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
        let (service, service_url) = migrated(&database).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let keys = KeySet::generate();
        let server = tonic::transport::Server::builder()
            .add_service(SessionGrpc::new(Arc::new(service.clone()), keys.verifier()).into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        let client =
            SessionClient::connect_lazy(&format!("http://{addr}"), keys.signer()).expect("client");
        Self {
            api: Arc::new(client),
            service,
            service_url,
            grpc_addr: Some(addr),
            server: Some(server),
            database,
        }
    }

    async fn local(database: TestDatabase) -> Self {
        let (service, service_url) = migrated(&database).await;
        Self {
            api: Arc::new(service.clone()),
            service,
            service_url,
            grpc_addr: None,
            server: None,
            database,
        }
    }

    pub fn api(&self) -> &dyn SessionApi {
        &*self.api
    }

    /// The in-process service (also behind the gRPC server of the `grpc` harness).
    pub fn service(&self) -> &SessionService {
        &self.service
    }

    /// The database URL of the owner (the superuser on PostgreSQL).
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// The database URL the service runs with (the app role's on PostgreSQL).
    pub fn service_url(&self) -> &str {
        &self.service_url
    }

    /// A pool on the service's schema as its owner, for looking behind the API.
    pub async fn owner_database(&self) -> Database {
        Database::connect(self.database.url(), SCHEMA)
            .await
            .expect("connect as owner")
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

/// `url` connecting as the test app role (created on the server if missing).
pub async fn app_role_url(url: &str) -> String {
    clawgate_runtime::db::testing::app_role_url(url)
        .await
        .expect("app role")
}

/// Migrates as the owner; on PostgreSQL grants the app role its rights and
/// connects the service as the app role. The service and the URL it uses.
async fn migrated(database: &TestDatabase) -> (SessionService, String) {
    let owner = SessionService::connect(database.url())
        .await
        .expect("connect");
    owner.migrate().await.expect("migrate");
    if database.url().starts_with("sqlite:") {
        return (owner, database.url().to_owned());
    }
    // The role must exist before it is granted anything.
    let app_url = app_role_url(database.url()).await;
    owner
        .grant_to_app_role(TEST_APP_ROLE)
        .await
        .expect("grant to the app role");
    owner.close().await;
    let app_db = Database::connect(&app_url, SCHEMA)
        .await
        .expect("connect as the app role");
    assert!(
        !app_db.bypasses_rls().await.expect("role check"),
        "the app role must not bypass row-level security"
    );
    (SessionService::from_database(app_db), app_url)
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

/// An operator of `tenant`: sees its own sessions only.
pub fn operator(tenant: &str, user: &str) -> Principal {
    Principal {
        role: "operator".into(),
        scopes: vec![
            clawgate_proto::principal::SCOPE_READ.into(),
            clawgate_proto::principal::SCOPE_WRITE.into(),
        ],
        ..principal(tenant, user)
    }
}

/// An admin of `tenant`: lists every user's sessions of the tenant.
pub fn admin(tenant: &str, user: &str) -> Principal {
    Principal {
        role: "admin".into(),
        ..principal(tenant, user)
    }
}

/// An owner, connected to `tenant`: lists every user's sessions of the tenant.
pub fn owner(tenant: &str, user: &str) -> Principal {
    Principal {
        role: "owner".into(),
        ..principal(tenant, user)
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
