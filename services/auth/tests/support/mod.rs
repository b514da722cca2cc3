//! Test harness: an auth service on a fresh SQLite or PostgreSQL database with a
//! controllable clock, Ed25519 test devices that sign their connects, and
//! principals to call the RPCs with.

// Each test binary uses a different part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use clawgate_auth::keyring::Keyring;
use clawgate_auth::{AuthConfig, AuthService, GatewayToken};
use clawgate_proto::auth::{
    ApprovePairingRequest, AuthApi, AuthenticateConnectRequest, AuthenticateConnectResponse,
    ClientInfo, CreateApiKeyRequest, CreateTenantRequest, DeviceProof, GoclawConnect,
    OpenClawConnect, PairingPending, authenticate_connect_request::Connect,
    authenticate_connect_response::Outcome,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use clawgate_runtime::db::Database;
use clawgate_runtime::db::testing::{
    TEST_APP_ROLE, TestDatabase, app_role_url, fresh_postgres_url, fresh_sqlite_url,
};
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

pub const GATEWAY_TOKEN: &str = "gateway-s3cret";
pub const NONCE: &str = "2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";
pub const START_MS: i64 = 1_737_264_000_000;
pub const REMOTE: &str = "203.0.113.7:40000";
pub const LOOPBACK: &str = "127.0.0.1:40000";

/// Generates `sqlite::NAME` and `postgres::NAME` for each behaviour.
#[macro_export]
macro_rules! behaviour_suite {
    ($($name:ident),* $(,)?) => {
        $crate::behaviour_suite!(@backend sqlite, $($name),*);
        $crate::behaviour_suite!(@backend postgres, $($name),*);
    };
    (@backend $backend:ident, $($name:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = $crate::support::Harness::$backend().await;
                    super::$name(&harness).await;
                }
            )*
        }
    };
}

/// A migrated auth service on a database of its own. Dropping it removes the database.
///
/// On PostgreSQL the service runs as [`TEST_APP_ROLE`] (no superuser, no
/// `BYPASSRLS`), after migrating as the superuser and granting the role its
/// rights, exactly as a deployment would: every behaviour then also proves the
/// row-level security policies and the `SECURITY DEFINER` lookups.
pub struct Harness {
    pub auth: AuthService,
    clock: Arc<AtomicI64>,
    /// Inspection connection as the migrating (owner, superuser) role: sees every row.
    pub db: Database,
    /// The service's own connection (the app role on PostgreSQL).
    pub app_db: Database,
    /// URL of the service's connection.
    pub app_url: String,
    pub postgres: bool,
    // Last: the database outlives everything that uses it.
    _database: TestDatabase,
}

impl Harness {
    pub async fn sqlite() -> Self {
        Self::on(fresh_sqlite_url().expect("sqlite test database"), false).await
    }

    pub async fn postgres() -> Self {
        Self::on(
            fresh_postgres_url()
                .await
                .expect("postgres test database (is PostgreSQL running?)"),
            true,
        )
        .await
    }

    async fn on(database: TestDatabase, postgres: bool) -> Self {
        let clock = Arc::new(AtomicI64::new(START_MS));
        let migrator = AuthService::connect(database.url(), config(false))
            .await
            .expect("connect");
        migrator.migrate().await.expect("migrate");
        migrator.close().await;
        let db = Database::connect(database.url(), clawgate_auth::SCHEMA)
            .await
            .expect("inspection connection");
        let app_url = if postgres {
            // The role must exist before it is granted anything.
            let url = app_role_url(database.url()).await.expect("app role");
            db.grant_to_app_role(TEST_APP_ROLE)
                .await
                .expect("grant the app role");
            url
        } else {
            database.url().to_owned()
        };
        let app_db = Database::connect(&app_url, clawgate_auth::SCHEMA)
            .await
            .expect("service connection");
        if postgres {
            assert!(
                !app_db.bypasses_rls().await.unwrap(),
                "the service must run subject to row-level security"
            );
        }
        let now = clock.clone();
        let auth = AuthService::from_database(app_db.clone(), config(false))
            .with_clock(move || now.load(Ordering::SeqCst));
        Self {
            auth,
            clock,
            db,
            app_db,
            app_url,
            postgres,
            _database: database,
        }
    }

    /// A service over the same database and clock with `config`.
    pub fn service(&self, config: AuthConfig) -> AuthService {
        let now = self.clock.clone();
        AuthService::from_database(self.app_db.clone(), config)
            .with_clock(move || now.load(Ordering::SeqCst))
    }

    /// The same service with local auto-approval switched on.
    pub async fn with_auto_approve(&self) -> AuthService {
        self.service(config(true))
    }

    /// Creates tenant `id` (slug `id`) as an owner.
    pub async fn create_tenant(&self, id: &str) {
        self.api()
            .create_tenant(
                &owner("default"),
                CreateTenantRequest {
                    id: id.into(),
                    slug: id.to_ascii_lowercase(),
                    name: format!("Tenant {id}"),
                },
            )
            .await
            .expect("create tenant");
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn api(&self) -> &dyn AuthApi {
        &self.auth
    }

    pub async fn connect(
        &self,
        request: AuthenticateConnectRequest,
    ) -> Result<AuthenticateConnectResponse, ServiceError> {
        self.auth
            .authenticate_connect(&Principal::default(), request)
            .await
    }

    /// Every text value stored in the auth tables, for "no plaintext secret" checks.
    pub async fn dump_tables(&self) -> String {
        let mut out = String::new();
        for (table, columns) in [
            ("devices", "device_id || public_key || roles || scopes"),
            (
                "device_pairing_requests",
                "request_id || device_id || scopes",
            ),
            ("device_tokens", "device_id || role || token_hash || scopes"),
            (
                "api_keys",
                "id || name || prefix || key_hash || scopes || owner_id",
            ),
            (
                "pairing_codes",
                "request_id || code || sender_id || channel",
            ),
            ("paired_senders", "sender_id || channel || user_id"),
        ] {
            let sql = format!("SELECT {columns} AS v FROM {table}");
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(self.db.pool())
                .await
                .unwrap()
            {
                out.push_str(&row.try_get::<String, _>("v").unwrap());
                out.push('\n');
            }
        }
        out
    }
}

pub fn config(auto_approve_local: bool) -> AuthConfig {
    AuthConfig {
        gateway_token: GatewayToken::new(GATEWAY_TOKEN),
        default_tenant_id: "default".into(),
        default_user_id: "owner".into(),
        owner_ids: vec!["alice".into()],
        auto_approve_local,
        keyring: None,
    }
}

/// A keyring of one key made of `byte`.
pub fn keyring(byte: u8) -> Keyring {
    Keyring::from_keys(&[[byte; 32]]).unwrap()
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A principal of `tenant` with `scopes`, optionally bound to a device.
pub fn principal(tenant: &str, user: &str, scopes: &[&str], device_id: &str) -> Principal {
    Principal {
        tenant_id: tenant.into(),
        user_id: user.into(),
        role: "operator".into(),
        scopes: strings(scopes),
        device_id: device_id.into(),
        ..Default::default()
    }
}

pub fn admin(tenant: &str) -> Principal {
    principal(tenant, "admin", &["operator.admin"], "")
}

/// A goclaw principal of `tenant` with a membership role (`admin`, `operator`, `viewer`).
pub fn member(tenant: &str, user: &str, role: &str) -> Principal {
    let scopes: &[&str] = match role {
        "admin" => &["operator.admin"],
        "operator" => &["operator.read", "operator.write"],
        _ => &["operator.read"],
    };
    Principal {
        role: role.into(),
        ..principal(tenant, user, scopes, "")
    }
}

/// An owner (goclaw `owner`) connected to `tenant`.
pub fn owner(tenant: &str) -> Principal {
    Principal {
        role: "owner".into(),
        ..principal(tenant, "alice", &["operator.admin"], "")
    }
}

pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, ServiceError>,
    code: ErrorCode,
) -> ServiceError {
    let err = result.expect_err("expected an error");
    assert_eq!(err.code, code, "unexpected error: {err:?}");
    err
}

pub fn detail_code(err: &ServiceError) -> String {
    err.details
        .as_ref()
        .and_then(|d| d["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

pub fn principal_of(response: &AuthenticateConnectResponse) -> Principal {
    match &response.outcome {
        Some(Outcome::Principal(p)) => p.clone(),
        other => panic!("expected a principal, got {other:?}"),
    }
}

pub fn pending_of(response: &AuthenticateConnectResponse) -> PairingPending {
    match &response.outcome {
        Some(Outcome::Pairing(p)) => p.clone(),
        other => panic!("expected pairing, got {other:?}"),
    }
}

/// The refusal details the edge must send for a pending pairing.
pub fn pairing_details(response: &AuthenticateConnectResponse) -> serde_json::Value {
    serde_json::from_str(&pending_of(response).error_details_json).unwrap()
}

/// How a test device connects.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub role: String,
    pub scopes: Vec<String>,
    pub token: Option<String>,
    pub device_token: Option<String>,
    pub platform: String,
    pub device_family: String,
    pub client_id: String,
    pub mode: String,
    pub remote_addr: String,
    pub is_local: bool,
    pub nonce: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            role: "operator".into(),
            scopes: strings(&["operator.read", "operator.write"]),
            token: Some(GATEWAY_TOKEN.into()),
            device_token: None,
            platform: "linux".into(),
            device_family: String::new(),
            client_id: "cli".into(),
            mode: "cli".into(),
            remote_addr: REMOTE.into(),
            is_local: false,
            nonce: NONCE.into(),
        }
    }
}

impl ConnectOptions {
    /// Connect with a device token only (as `auth.token` and `auth.deviceToken`).
    pub fn with_device_token(token: &str) -> Self {
        Self {
            token: Some(token.into()),
            device_token: Some(token.into()),
            ..Self::default()
        }
    }

    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = strings(scopes);
        self
    }

    pub fn local(mut self) -> Self {
        self.is_local = true;
        self.remote_addr = LOOPBACK.into();
        self
    }
}

/// A device key pair that signs its connects (v3 payload).
pub struct TestDevice {
    key: SigningKey,
    pub id: String,
    pub public_key: String,
}

impl TestDevice {
    pub fn new(seed: u8) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let raw = key.verifying_key().to_bytes();
        Self {
            id: hex::encode(Sha256::digest(raw)),
            public_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            key,
        }
    }

    /// A signed OpenClaw connect request at `now_ms`.
    pub fn request(&self, now_ms: i64, options: &ConnectOptions) -> AuthenticateConnectRequest {
        let token = options
            .token
            .as_deref()
            .or(options.device_token.as_deref())
            .unwrap_or("");
        let payload = format!(
            "v3|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.id,
            options.client_id,
            options.mode,
            options.role,
            options.scopes.join(","),
            now_ms,
            token,
            options.nonce,
            options.platform.trim().to_ascii_lowercase(),
            options.device_family.trim().to_ascii_lowercase(),
        );
        let signature = self.key.sign(payload.as_bytes());
        AuthenticateConnectRequest {
            connection_id: format!("conn-{}", &self.id[..8]),
            remote_addr: options.remote_addr.clone(),
            is_local: options.is_local,
            connect: Some(Connect::Openclaw(OpenClawConnect {
                client: Some(ClientInfo {
                    id: options.client_id.clone(),
                    mode: options.mode.clone(),
                    platform: options.platform.clone(),
                    device_family: options.device_family.clone(),
                    display_name: "test device".into(),
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
                role: options.role.clone(),
                scopes: options.scopes.clone(),
                token: options.token.clone(),
                device_token: options.device_token.clone(),
                device: Some(DeviceProof {
                    id: self.id.clone(),
                    public_key: self.public_key.clone(),
                    signature: base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(signature.to_bytes()),
                    signed_at_ms: now_ms,
                    nonce: options.nonce.clone(),
                }),
                challenge_nonce: NONCE.into(),
                ..Default::default()
            })),
        }
    }
}

/// A device-less OpenClaw connect.
pub fn deviceless(
    token: Option<&str>,
    role: &str,
    client_id: &str,
    mode: &str,
    is_local: bool,
) -> AuthenticateConnectRequest {
    AuthenticateConnectRequest {
        connection_id: "conn-deviceless".into(),
        remote_addr: if is_local {
            LOOPBACK.into()
        } else {
            REMOTE.into()
        },
        is_local,
        connect: Some(Connect::Openclaw(OpenClawConnect {
            client: Some(ClientInfo {
                id: client_id.into(),
                mode: mode.into(),
                platform: "linux".into(),
                ..Default::default()
            }),
            role: role.into(),
            scopes: strings(&["operator.read", "operator.write"]),
            token: token.map(str::to_owned),
            challenge_nonce: NONCE.into(),
            ..Default::default()
        })),
    }
}

/// A goclaw connect.
pub fn goclaw(
    token: &str,
    user_id: &str,
    sender_id: &str,
    tenant_id: &str,
) -> AuthenticateConnectRequest {
    AuthenticateConnectRequest {
        connection_id: "conn-goclaw".into(),
        remote_addr: REMOTE.into(),
        is_local: false,
        connect: Some(Connect::Goclaw(GoclawConnect {
            token: token.into(),
            user_id: user_id.into(),
            sender_id: sender_id.into(),
            tenant_id: tenant_id.into(),
            ..Default::default()
        })),
    }
}

/// The request id of a first connect of `device` that needs pairing.
pub async fn new_request(h: &Harness, device: &TestDevice, options: &ConnectOptions) -> String {
    pending_of(&h.connect(device.request(h.now(), options)).await.unwrap()).request_id
}

pub fn approve(request_id: &str) -> ApprovePairingRequest {
    ApprovePairingRequest {
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// Pairs `device` asking for `scopes`; returns the principal of its next connect.
pub async fn paired(h: &Harness, device: &TestDevice, scopes: &[&str]) -> Principal {
    let request_id = new_request(h, device, &ConnectOptions::default().scopes(scopes)).await;
    h.api()
        .approve_pairing(&admin("default"), approve(&request_id))
        .await
        .unwrap();
    let response = h
        .connect(device.request(h.now(), &ConnectOptions::default().scopes(scopes)))
        .await
        .unwrap();
    principal_of(&response)
}

pub fn key_request(scopes: &[&str]) -> CreateApiKeyRequest {
    CreateApiKeyRequest {
        name: "ci".into(),
        scopes: strings(scopes),
        ..Default::default()
    }
}
