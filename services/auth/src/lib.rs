//! The auth service: decides who a connection is, and keeps the state that
//! decision needs: tenants and their users, paired devices, pending pairing
//! requests, device tokens, goclaw pairing codes and paired senders, API keys,
//! the tenants' sealed secrets, and node pairing (the commands each node may
//! be invoked with).
//!
//! It owns credential checks and the building of the [`Principal`] that every later
//! call carries. The edge only asks and enforces the answer: it publishes the
//! pairing events and disconnects the sockets the responses name. Invariants:
//! - tenant and user come only from verified credentials, stored records and
//!   server configuration, never from what a client asks for (a goclaw tenant
//!   hint is honoured only for an owner or a member of that tenant; a goclaw
//!   `user_id` only with the gateway token, or as the user a browser asks to
//!   be paired as, which the approving admin sees);
//! - a connect succeeds only into an existing, active tenant and never as a user
//!   whose membership there was removed (see `access`);
//! - every RPC is scoped to the caller's tenant (an owner's being the one it
//!   connected to); admins and owners see the whole tenant, operators only
//!   their own devices, requests, tokens, keys and senders, and a non-admin
//!   caller bound to a device only that device; another tenant's or user's
//!   object is "not found" exactly like a missing one;
//! - on PostgreSQL every tenant's rows are also guarded by row-level security
//!   (migration 0002): the store reads and writes inside the tenant's
//!   transaction, and asks the few pre-authentication questions through
//!   `SECURITY DEFINER` lookups (see `store`);
//! - credentials are compared in constant time and never logged, never stored in
//!   plaintext (SHA-256 digests only) and shown once, to their owner; tenant
//!   secrets are sealed with the configured keyring and never returned by an RPC;
//! - failed credential checks are counted by the failed-auth limiter
//!   ([`clawgate_runtime::limits`]); a locked-out client is refused before any
//!   credential is checked, and a limiter that cannot answer fails closed.
//!
//! Layout: `openclaw` and `goclaw` run the connect chains, `access` the
//! tenant and membership checks, `pairing`, `device_tokens`, `api_keys`,
//! `tenants`, `users`, `secrets` and `nodes` (node pairing) the RPCs, `store`
//! the SQL, `convert` the mapping of stored records to protobuf messages.

mod access;
mod api_keys;
mod connect_errors;
mod convert;
pub mod device_proof;
mod device_tokens;
mod goclaw;
pub mod keyring;
mod nodes;
mod openclaw;
mod pairing;
mod scopes;
mod secret;
mod secrets;
mod store;
mod tenants;
mod token;
mod users;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use clawgate_proto::auth::{
    ApiKey, ApproveNodePairingRequest, ApproveNodePairingResponse, ApprovePairingRequest,
    ApprovePairingResponse, AuthApi, AuthenticateConnectRequest, AuthenticateConnectResponse,
    CreateApiKeyRequest, CreateApiKeyResponse, CreateTenantRequest, DeleteSecretRequest,
    DeleteSecretResponse, DeviceTokenInfo, GetNodeRequest, GetNodeResponse, GetTenantRequest,
    ListApiKeysRequest, ListApiKeysResponse, ListNodePairingRequest, ListNodePairingResponse,
    ListPairingRequest, ListPairingResponse, ListSecretsRequest, ListSecretsResponse,
    ListTenantsRequest, ListTenantsResponse, ListUsersRequest, ListUsersResponse,
    NodeConnectedRequest, NodeConnectedResponse, PairedNode, PairingRequest, PairingStatusRequest,
    PairingStatusResponse, PutUserRequest, RejectNodePairingRequest, RejectNodePairingResponse,
    RejectPairingRequest, RejectPairingResponse, RemoveDeviceRequest, RemoveDeviceResponse,
    RemoveNodeRequest, RemoveNodeResponse, RemoveUserRequest, RemoveUserResponse,
    RenameNodeRequest, RequestNodePairingRequest, RequestNodePairingResponse,
    RequestPairingRequest, RevealSecretRequest, RevealSecretResponse, RevokeApiKeyRequest,
    RevokeDeviceTokenRequest, RotateDeviceTokenRequest, SecretInfo, SetSecretRequest, Tenant,
    UpdateTenantRequest, User, VerifyNodeRequest, VerifyNodeResponse,
    authenticate_connect_request::Connect,
};
use clawgate_proto::principal::ROLE_RUNNER;
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::db::Database;
use clawgate_runtime::limits::memory::MemoryAuthLimiter;
use clawgate_runtime::limits::{AuthLimitConfig, AuthLimiter, AuthScope, LimitKey};

pub use nodes::{EXEC_COMMANDS, NODE_PAIRING_REQUEST_TTL_MS};
pub use secret::{API_KEY_PREFIX, PAIRING_CODE_ALPHABET, PAIRING_CODE_LEN};
pub use secrets::MAX_SECRET_VALUE_BYTES;
pub use token::GatewayToken;

/// PostgreSQL schema (and SQLite file role) the auth service owns.
pub const SCHEMA: &str = "auth";

/// How long a pending OpenClaw pairing request lives.
pub const PAIRING_REQUEST_TTL_MS: i64 = 5 * 60 * 1000;
/// How long a goclaw pairing code lives.
pub const PAIRING_CODE_TTL_MS: i64 = 60 * 60 * 1000;
/// Most live pending goclaw codes per (tenant, channel, account).
pub const MAX_PENDING_CODES_PER_ACCOUNT: i64 = 3;
/// How long a goclaw sender stays paired.
pub const PAIRED_SENDER_TTL_MS: i64 = 30 * 24 * 60 * 60 * 1000;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Settings of the auth service.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The shared gateway token.
    pub gateway_token: GatewayToken,
    /// Tenant of connections authenticated by the gateway token.
    pub default_tenant_id: String,
    /// User of connections that authenticate without naming one (OpenClaw clients).
    pub default_user_id: String,
    /// goclaw users who get the `owner` role; the others get `admin`.
    pub owner_ids: Vec<String>,
    /// Approve pairing silently for direct loopback connections (never for a
    /// scope upgrade). Off: every new device waits for an operator's approval.
    pub auto_approve_local: bool,
    /// Keys sealing tenant secrets (`CLAWGATE_ENCRYPTION_KEY`); without one,
    /// secrets can be listed and deleted but not set or revealed.
    pub keyring: Option<crate::keyring::Keyring>,
}

/// Source of the current time, epoch milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The auth service on a PostgreSQL or SQLite database. Cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    config: AuthConfig,
    store: store::Store,
    limiter: Arc<dyn AuthLimiter>,
    clock: Clock,
    /// Permits of connect bookkeeping writes running off the connect path.
    bookkeeping: Arc<tokio::sync::Semaphore>,
}

/// Connect bookkeeping writes (last-seen times) in flight at once off the
/// connect path; beyond that a connect writes its own in line.
const MAX_BACKGROUND_BOOKKEEPING: usize = 64;

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// Connects to `database_url` (`postgres://…` or `sqlite://…?mode=rwc`), using
    /// schema [`SCHEMA`] on PostgreSQL. Call [`migrate`](Self::migrate) before use.
    pub async fn connect(database_url: &str, config: AuthConfig) -> Result<Self, ServiceError> {
        let db = Database::connect(database_url, SCHEMA).await?;
        Ok(Self::from_database(db, config))
    }

    /// The service on an already connected database (which must be this service's own).
    /// Failed-auth attempts are counted in this process until
    /// [`with_limiter`](Self::with_limiter) installs a shared limiter.
    pub fn from_database(db: Database, config: AuthConfig) -> Self {
        Self {
            config,
            store: store::Store::new(db),
            limiter: Arc::new(MemoryAuthLimiter::new(AuthLimitConfig::default())),
            clock: Arc::new(clawgate_runtime::clock::now_ms),
            bookkeeping: Arc::new(tokio::sync::Semaphore::new(MAX_BACKGROUND_BOOKKEEPING)),
        }
    }

    /// Records a paired device's connect (its last-seen time and metadata,
    /// its token's last use) without holding the connect up: on a task of
    /// its own, or in line when [`MAX_BACKGROUND_BOOKKEEPING`] are running
    /// already. A failure is logged, not returned: it loses a last-seen time,
    /// never a credential.
    pub(crate) async fn record_seen(&self, seen: store::ConnectSeen) {
        let failed = |err: ServiceError| {
            tracing::warn!(error = %err, "connect bookkeeping failed");
        };
        match self.bookkeeping.clone().try_acquire_owned() {
            Ok(permit) => {
                let store = self.store.clone();
                tokio::spawn(async move {
                    if let Err(err) = store.touch_connect(&seen).await {
                        failed(err);
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                if let Err(err) = self.store.touch_connect(&seen).await {
                    failed(err);
                }
            }
        }
    }

    /// Uses `limiter` for the failed-auth lockout (e.g. the Redis one, shared by
    /// every auth process).
    pub fn with_limiter(mut self, limiter: Arc<dyn AuthLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Uses `clock` instead of the system clock (tests, simulations).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Brings the schema up to date (forward only) and makes sure the default
    /// tenant's row exists.
    pub async fn migrate(&self) -> Result<(), ServiceError> {
        self.store
            .database()
            .migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS)
            .await?;
        self.ensure_default_tenant().await
    }

    /// Closes the database pool.
    pub async fn close(&self) {
        self.store.database().close().await;
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Refuses the attempt when (client IP, `scope`) is locked out. Fails closed
    /// (UNAVAILABLE) when the limiter cannot answer.
    async fn check_lockout(
        &self,
        ip: Option<IpAddr>,
        scope: AuthScope,
    ) -> Result<(), ServiceError> {
        let Some(ip) = ip else { return Ok(()) };
        let decision = self.limiter.check(&LimitKey::new(ip, scope)).await?;
        match decision.to_error() {
            Some(err) => Err(connect_errors::rate_limited(err)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt of `scope`; the attempt is refused either way.
    async fn record_failure(&self, ip: Option<IpAddr>, scope: AuthScope) {
        let Some(ip) = ip else { return };
        if let Err(err) = self.limiter.record_failure(&LimitKey::new(ip, scope)).await {
            tracing::warn!(error = %err, scope = %scope, "cannot record failed authentication");
        }
    }
}

/// Where a connect attempt comes from.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub connection_id: String,
    /// Client IP as text ('' when unknown), stored with pairing requests.
    pub remote_ip: String,
    pub ip: Option<IpAddr>,
    pub is_local: bool,
}

impl Origin {
    fn of(request: &AuthenticateConnectRequest) -> Self {
        let addr = request.remote_addr.trim();
        let ip = addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| addr.parse::<IpAddr>())
            .ok();
        Self {
            connection_id: request.connection_id.clone(),
            remote_ip: ip.map(|ip| ip.to_string()).unwrap_or_default(),
            ip,
            is_local: request.is_local,
        }
    }
}

#[async_trait]
impl AuthApi for AuthService {
    async fn authenticate_connect(
        &self,
        _principal: &Principal,
        request: AuthenticateConnectRequest,
    ) -> Result<AuthenticateConnectResponse, ServiceError> {
        let origin = Origin::of(&request);
        let response = match request.connect {
            Some(Connect::Openclaw(connect)) => openclaw::connect(self, &origin, connect).await?,
            Some(Connect::Goclaw(connect)) => goclaw::connect(self, &origin, connect).await?,
            None => return Err(ServiceError::invalid("connect parameters missing")),
        };
        if let Some(clawgate_proto::auth::authenticate_connect_response::Outcome::Principal(p)) =
            &response.outcome
        {
            tracing::debug!(
                tenant = %p.tenant_id,
                user = %p.user_id,
                role = %p.role,
                device = %p.device_id,
                "connection authenticated"
            );
        }
        Ok(response)
    }

    async fn request_pairing(
        &self,
        principal: &Principal,
        request: RequestPairingRequest,
    ) -> Result<PairingRequest, ServiceError> {
        pairing::request_pairing(self, principal, request).await
    }

    async fn list_pairing(
        &self,
        principal: &Principal,
        _request: ListPairingRequest,
    ) -> Result<ListPairingResponse, ServiceError> {
        pairing::list(self, principal).await
    }

    async fn approve_pairing(
        &self,
        principal: &Principal,
        request: ApprovePairingRequest,
    ) -> Result<ApprovePairingResponse, ServiceError> {
        pairing::approve(self, principal, request).await
    }

    async fn reject_pairing(
        &self,
        principal: &Principal,
        request: RejectPairingRequest,
    ) -> Result<RejectPairingResponse, ServiceError> {
        pairing::reject(self, principal, request).await
    }

    async fn remove_device(
        &self,
        principal: &Principal,
        request: RemoveDeviceRequest,
    ) -> Result<RemoveDeviceResponse, ServiceError> {
        pairing::remove(self, principal, request).await
    }

    async fn pairing_status(
        &self,
        _principal: &Principal,
        request: PairingStatusRequest,
    ) -> Result<PairingStatusResponse, ServiceError> {
        pairing::status(self, request).await
    }

    async fn rotate_device_token(
        &self,
        principal: &Principal,
        request: RotateDeviceTokenRequest,
    ) -> Result<DeviceTokenInfo, ServiceError> {
        device_tokens::rotate(self, principal, request).await
    }

    async fn revoke_device_token(
        &self,
        principal: &Principal,
        request: RevokeDeviceTokenRequest,
    ) -> Result<DeviceTokenInfo, ServiceError> {
        device_tokens::revoke(self, principal, request).await
    }

    async fn create_api_key(
        &self,
        principal: &Principal,
        request: CreateApiKeyRequest,
    ) -> Result<CreateApiKeyResponse, ServiceError> {
        api_keys::create(self, principal, request).await
    }

    async fn list_api_keys(
        &self,
        principal: &Principal,
        _request: ListApiKeysRequest,
    ) -> Result<ListApiKeysResponse, ServiceError> {
        api_keys::list(self, principal).await
    }

    async fn revoke_api_key(
        &self,
        principal: &Principal,
        request: RevokeApiKeyRequest,
    ) -> Result<ApiKey, ServiceError> {
        api_keys::revoke(self, principal, request).await
    }

    async fn create_tenant(
        &self,
        principal: &Principal,
        request: CreateTenantRequest,
    ) -> Result<Tenant, ServiceError> {
        tenants::create(self, principal, request).await
    }

    async fn update_tenant(
        &self,
        principal: &Principal,
        request: UpdateTenantRequest,
    ) -> Result<Tenant, ServiceError> {
        tenants::update(self, principal, request).await
    }

    async fn get_tenant(
        &self,
        principal: &Principal,
        request: GetTenantRequest,
    ) -> Result<Tenant, ServiceError> {
        tenants::get(self, principal, request).await
    }

    async fn list_tenants(
        &self,
        principal: &Principal,
        _request: ListTenantsRequest,
    ) -> Result<ListTenantsResponse, ServiceError> {
        tenants::list(self, principal).await
    }

    async fn put_user(
        &self,
        principal: &Principal,
        request: PutUserRequest,
    ) -> Result<User, ServiceError> {
        users::put(self, principal, request).await
    }

    async fn remove_user(
        &self,
        principal: &Principal,
        request: RemoveUserRequest,
    ) -> Result<RemoveUserResponse, ServiceError> {
        users::remove(self, principal, request).await
    }

    async fn list_users(
        &self,
        principal: &Principal,
        request: ListUsersRequest,
    ) -> Result<ListUsersResponse, ServiceError> {
        users::list(self, principal, request).await
    }

    async fn set_secret(
        &self,
        principal: &Principal,
        request: SetSecretRequest,
    ) -> Result<SecretInfo, ServiceError> {
        secrets::set(self, principal, request).await
    }

    async fn list_secrets(
        &self,
        principal: &Principal,
        _request: ListSecretsRequest,
    ) -> Result<ListSecretsResponse, ServiceError> {
        secrets::list(self, principal).await
    }

    async fn delete_secret(
        &self,
        principal: &Principal,
        request: DeleteSecretRequest,
    ) -> Result<DeleteSecretResponse, ServiceError> {
        secrets::delete(self, principal, request).await
    }

    async fn reveal_secret(
        &self,
        principal: &Principal,
        request: RevealSecretRequest,
    ) -> Result<RevealSecretResponse, ServiceError> {
        if principal.role != ROLE_RUNNER || principal.tenant_id.is_empty() {
            return Err(ServiceError::forbidden(
                "secrets are revealed to the runner only",
            ));
        }
        let value = self
            .open_secret(&principal.tenant_id, &request.name)
            .await?;
        Ok(RevealSecretResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        })
    }

    async fn request_node_pairing(
        &self,
        principal: &Principal,
        request: RequestNodePairingRequest,
    ) -> Result<RequestNodePairingResponse, ServiceError> {
        nodes::request(self, principal, request).await
    }

    async fn node_connected(
        &self,
        principal: &Principal,
        request: NodeConnectedRequest,
    ) -> Result<NodeConnectedResponse, ServiceError> {
        nodes::connected(self, principal, request).await
    }

    async fn list_node_pairing(
        &self,
        principal: &Principal,
        _request: ListNodePairingRequest,
    ) -> Result<ListNodePairingResponse, ServiceError> {
        nodes::list(self, principal).await
    }

    async fn approve_node_pairing(
        &self,
        principal: &Principal,
        request: ApproveNodePairingRequest,
    ) -> Result<ApproveNodePairingResponse, ServiceError> {
        nodes::approve(self, principal, request).await
    }

    async fn reject_node_pairing(
        &self,
        principal: &Principal,
        request: RejectNodePairingRequest,
    ) -> Result<RejectNodePairingResponse, ServiceError> {
        nodes::reject(self, principal, request).await
    }

    async fn remove_node(
        &self,
        principal: &Principal,
        request: RemoveNodeRequest,
    ) -> Result<RemoveNodeResponse, ServiceError> {
        nodes::remove(self, principal, request).await
    }

    async fn verify_node(
        &self,
        principal: &Principal,
        request: VerifyNodeRequest,
    ) -> Result<VerifyNodeResponse, ServiceError> {
        nodes::verify(self, principal, request).await
    }

    async fn rename_node(
        &self,
        principal: &Principal,
        request: RenameNodeRequest,
    ) -> Result<PairedNode, ServiceError> {
        nodes::rename(self, principal, request).await
    }

    async fn get_node(
        &self,
        principal: &Principal,
        request: GetNodeRequest,
    ) -> Result<GetNodeResponse, ServiceError> {
        nodes::get(self, principal, request).await
    }
}
