//! Command-line options. Every option is also an environment variable `CLAWGATE_*`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "clawgate", version, about = "A multi-tenant AI agent gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run every service in this process on the embedded default (SQLite under the
    /// data directory, in-process event bus).
    Up(UpArgs),
    /// Run a chosen set of services, reaching the others over gRPC.
    Serve(ServeArgs),
    /// Apply database migrations of the chosen services and exit.
    Migrate(MigrateArgs),
    /// Print a new Ed25519 signing key (PKCS#8 PEM) for `CLAWGATE_SIGNING_KEY`.
    Keygen,
}

/// Options every service-running command shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Shared gateway token clients present on connect. `up` creates and keeps one
    /// in the data directory when unset.
    #[arg(long, env = "CLAWGATE_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<String>,

    /// Tenant of connections authenticated with the gateway token.
    #[arg(long, env = "CLAWGATE_DEFAULT_TENANT", default_value = "default")]
    pub default_tenant: String,

    /// User of connections that do not name one (OpenClaw clients).
    #[arg(long, env = "CLAWGATE_DEFAULT_USER", default_value = "owner")]
    pub default_user: String,

    /// goclaw user ids that get the owner role (comma separated).
    #[arg(long, env = "CLAWGATE_OWNER_IDS", value_delimiter = ',')]
    pub owner_ids: Vec<String>,

    /// Base URL of an OpenAI-compatible Chat Completions API
    /// (e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1).
    // The comment is also the `--help` text, where URLs stay bare.
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "CLAWGATE_MODEL_BASE_URL")]
    pub model_base_url: Option<String>,

    /// Wire format of the model provider: `openai` (Chat Completions: OpenAI,
    /// vLLM, Ollama, LiteLLM, …) or `anthropic` (the Messages API; base URL
    /// e.g. https://api.anthropic.com).
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "CLAWGATE_MODEL_PROVIDER", default_value = "openai",
        value_parser = ["openai", "anthropic"])]
    pub model_provider: String,

    /// Directory under which agents' `exec` tool runs commands (each user in
    /// `<dir>/<tenant>/<user>`); unset: agents have no `exec` tool. Every
    /// command waits for a human approval (`exec.approval.resolve`).
    #[arg(long, env = "CLAWGATE_EXEC_WORKSPACE")]
    pub exec_workspace: Option<std::path::PathBuf>,

    /// How long an exec approval waits for an answer, in milliseconds.
    #[arg(
        long,
        env = "CLAWGATE_APPROVAL_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub approval_timeout_ms: u64,

    /// Model name sent to the provider.
    #[arg(long, env = "CLAWGATE_MODEL", default_value = "gpt-4o-mini")]
    pub model: String,

    /// API key for the provider (optional for local servers).
    #[arg(long, env = "CLAWGATE_MODEL_API_KEY", hide_env_values = true)]
    pub model_api_key: Option<String>,

    /// How long the runner gathers tokens before publishing them, in milliseconds.
    #[arg(long, env = "CLAWGATE_COALESCE_MS", default_value_t = 40)]
    pub coalesce_ms: u64,

    /// Address the WebSocket edge listens on.
    #[arg(long, env = "CLAWGATE_LISTEN", default_value = "127.0.0.1:18789")]
    pub listen: SocketAddr,

    /// Key(s) sealing tenant secrets at rest (AES-256-GCM), used by the auth
    /// service: 32 bytes as 64 hex digits or base64, several separated by commas
    /// (the first seals, the others only open: key rotation). `up` creates one in
    /// its data directory when unset. Prefer the environment variable: a flag
    /// value is visible in the process list.
    #[arg(long, env = "CLAWGATE_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<SecretArg>,

    /// Days a session and its transcript are kept after their last activity
    /// (0: forever). Enforced by the session service.
    #[arg(long, env = "CLAWGATE_SESSION_RETENTION_DAYS", default_value_t = 30)]
    pub session_retention_days: u64,

    #[command(flatten)]
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// A secret given on the command line or in the environment: its `Debug`
/// never shows it, so printing the parsed options cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretArg(String);

impl SecretArg {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretArg {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Settings of the auth service: pairing and the failed-auth lockout.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Approve new devices silently when they connect over direct loopback (no
    /// proxy headers), as the OpenClaw reference does; never for a scope upgrade.
    /// `false` makes every new device wait for an operator's `device.pair.approve`
    /// (the Helm chart sets it so).
    #[arg(long, env = "CLAWGATE_PAIRING_AUTO_APPROVE_LOCAL", default_value_t = AuthArgs::DEFAULT.pairing_auto_approve_local,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pairing_auto_approve_local: bool,

    /// Failed authentication attempts per client IP (and credential kind) within
    /// the failure window that lock the client out.
    #[arg(long, env = "CLAWGATE_AUTH_MAX_FAILURES", default_value_t = AuthArgs::DEFAULT.auth_max_failures)]
    pub auth_max_failures: u32,

    /// The sliding window failures are counted in, in milliseconds.
    #[arg(long, env = "CLAWGATE_AUTH_FAILURE_WINDOW_MS", default_value_t = AuthArgs::DEFAULT.auth_failure_window_ms)]
    pub auth_failure_window_ms: u64,

    /// How long a locked-out client is refused (`AUTH_RATE_LIMITED`), in milliseconds.
    #[arg(long, env = "CLAWGATE_AUTH_LOCKOUT_MS", default_value_t = AuthArgs::DEFAULT.auth_lockout_ms)]
    pub auth_lockout_ms: u64,

    /// Count and lock out loopback clients too (by default they are exempt, as in
    /// the OpenClaw reference).
    #[arg(long, env = "CLAWGATE_AUTH_LIMIT_LOOPBACK", default_value_t = AuthArgs::DEFAULT.auth_limit_loopback,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auth_limit_loopback: bool,
}

impl AuthArgs {
    pub const DEFAULT: AuthArgs = AuthArgs {
        pairing_auto_approve_local: true,
        auth_max_failures: 10,
        auth_failure_window_ms: 60_000,
        auth_lockout_ms: 300_000,
        auth_limit_loopback: false,
    };
}

impl Default for AuthArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Settings of the WebSocket edge.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Largest client frame after the handshake, in bytes (advertised as
    /// `policy.maxPayload`). Before the handshake the limit is 64 KiB.
    #[arg(long, env = "CLAWGATE_MAX_PAYLOAD_BYTES", default_value_t = EdgeArgs::DEFAULT.max_payload_bytes)]
    pub max_payload_bytes: usize,

    /// Bound of each socket's outbound queue, in bytes (advertised as
    /// `policy.maxBufferedBytes`); a socket that falls further behind is closed.
    #[arg(long, env = "CLAWGATE_SOCKET_QUEUE_BYTES", default_value_t = EdgeArgs::DEFAULT.socket_queue_bytes)]
    pub socket_queue_bytes: usize,

    /// Time a new socket has to complete `connect`, in milliseconds.
    #[arg(long, env = "CLAWGATE_HANDSHAKE_TIMEOUT_MS", default_value_t = EdgeArgs::DEFAULT.handshake_timeout_ms)]
    pub handshake_timeout_ms: u64,

    /// Period of the OpenClaw `tick` event, in milliseconds.
    #[arg(long, env = "CLAWGATE_TICK_INTERVAL_MS", default_value_t = EdgeArgs::DEFAULT.tick_interval_ms)]
    pub tick_interval_ms: u64,

    /// How long shutdown waits for sockets to take their `shutdown` event and
    /// close, in milliseconds.
    #[arg(long, env = "CLAWGATE_DRAIN_TIMEOUT_MS", default_value_t = EdgeArgs::DEFAULT.drain_timeout_ms)]
    pub drain_timeout_ms: u64,

    /// Sockets one client IP may hold open before completing the handshake
    /// (counted over every edge when Redis is configured); more upgrades are
    /// answered with HTTP 503.
    #[arg(long, env = "CLAWGATE_PREAUTH_SOCKETS_PER_IP", default_value_t = EdgeArgs::DEFAULT.preauth_sockets_per_ip)]
    pub preauth_sockets_per_ip: u32,

    /// `restartExpectedMs` announced in the `shutdown` event sockets get when the
    /// edge stops (0: `null`, no restart expected).
    #[arg(long, env = "CLAWGATE_RESTART_EXPECTED_MS", default_value_t = EdgeArgs::DEFAULT.restart_expected_ms)]
    pub restart_expected_ms: u64,

    /// How long an edge keeps a bus topic subscribed after the last socket on
    /// it closed, in milliseconds, so a client that reconnects (each CLI
    /// command is a connection of its own) skips that round trip (0: at once).
    #[arg(long, env = "CLAWGATE_TOPIC_LINGER_MS", default_value_t = EdgeArgs::DEFAULT.topic_linger_ms)]
    pub topic_linger_ms: u64,
}

impl EdgeArgs {
    pub const DEFAULT: EdgeArgs = EdgeArgs {
        max_payload_bytes: 1024 * 1024,
        socket_queue_bytes: 4 * 1024 * 1024,
        handshake_timeout_ms: 15_000,
        tick_interval_ms: 30_000,
        drain_timeout_ms: 10_000,
        preauth_sockets_per_ip: 32,
        restart_expected_ms: 5_000,
        topic_linger_ms: 10_000,
    };
}

impl Default for EdgeArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Where the embedded databases and the gateway token live
    /// (default: $HOME/.clawgate).
    #[arg(long, env = "CLAWGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The services a process can run (`--services edge,auth`). Each has one
/// wiring function in [`crate::wiring`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Service {
    Edge,
    Auth,
    Runner,
    Session,
}

impl Service {
    /// Its name on the command line (`edge`, `auth`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Edge => "edge",
            Self::Auth => "auth",
            Self::Runner => "runner",
            Self::Session => "session",
        }
    }

    /// The services it calls: a process running it reaches each of them, here
    /// or over gRPC.
    pub fn calls(self) -> &'static [Service] {
        match self {
            Self::Edge => &[Self::Auth, Self::Runner, Self::Session],
            Self::Runner => &[Self::Session],
            Self::Auth | Self::Session => &[],
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Services to run in this process: any of edge, auth, runner, session.
    #[arg(
        long,
        env = "CLAWGATE_SERVICES",
        value_delimiter = ',',
        required = true,
        value_enum
    )]
    pub services: Vec<Service>,

    /// Database of the services that store data: postgres://… or sqlite://…
    #[arg(long, env = "CLAWGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis for the event bus between processes. Without it the bus is
    /// in-process, which only works when edge and runner share this process.
    #[arg(long, env = "CLAWGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel (lets deployments share a Redis).
    #[arg(long, env = "CLAWGATE_REDIS_PREFIX", default_value = "clawgate")]
    pub redis_prefix: String,

    /// Address the gRPC server of this process listens on (when it runs any
    /// service besides the edge).
    #[arg(long, env = "CLAWGATE_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,

    /// Ed25519 private key(s) in PEM (PKCS#8) that sign and verify the call
    /// tokens of gRPC hops; the same secret in every process. The first key signs,
    /// later ones (old keys during a rotation) only verify. Prefer the environment
    /// variable: a flag value is visible in the process list.
    #[arg(long, env = "CLAWGATE_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,

    /// gRPC address of the auth service when it runs elsewhere.
    #[arg(long, env = "CLAWGATE_AUTH_URL")]
    pub auth_url: Option<String>,

    /// gRPC address of the runner service when it runs elsewhere.
    #[arg(long, env = "CLAWGATE_RUNNER_URL")]
    pub runner_url: Option<String>,

    /// gRPC address of the session service when it runs elsewhere.
    #[arg(long, env = "CLAWGATE_SESSION_URL")]
    pub session_url: Option<String>,

    /// Apply this process's migrations before serving.
    #[arg(long, env = "CLAWGATE_MIGRATE", default_value_t = false)]
    pub migrate: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How a runner takes part in a cluster of runners sharing Redis, and how a
/// runner process stops.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Id of this runner, unique among live runners (names its control topic and
    /// the owner of its runs). Default: the host name, else a random id.
    #[arg(long, env = "CLAWGATE_RUNNER_ID")]
    pub runner_id: Option<String>,

    /// A run whose lease is not renewed for this long (its runner died) is ended
    /// by another runner, in milliseconds.
    #[arg(long, env = "CLAWGATE_RUN_LEASE_MS", default_value_t = 10_000)]
    pub run_lease_ms: u64,

    /// How often a runner looks for runs of dead runners, in milliseconds.
    #[arg(long, env = "CLAWGATE_REAP_INTERVAL_MS", default_value_t = 2_000)]
    pub reap_interval_ms: u64,

    /// Events kept in each run's replay history (approximately).
    #[arg(long, env = "CLAWGATE_REPLAY_MAX_EVENTS", default_value_t = 2_000)]
    pub replay_max_events: usize,

    /// How long a run's replay history lives after its last event, in milliseconds.
    #[arg(long, env = "CLAWGATE_REPLAY_RETENTION_MS", default_value_t = 600_000)]
    pub replay_retention_ms: u64,

    /// On SIGTERM, how long a runner lets in-flight runs finish (then aborts
    /// them) before it exits, in milliseconds.
    #[arg(
        long,
        env = "CLAWGATE_RUNNER_SHUTDOWN_GRACE_MS",
        default_value_t = 30_000
    )]
    pub runner_shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Database to migrate: postgres://… or sqlite://… On PostgreSQL, migrate as
    /// the role that owns the schemas (not the role the services run as).
    #[arg(long, env = "CLAWGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// PostgreSQL role the services run as (LOGIN, without SUPERUSER or
    /// BYPASSRLS, so row-level security applies to it): after migrating, each
    /// service's schema grants it data rights only (no DDL). The role must
    /// exist. Ignored on SQLite.
    #[arg(long, env = "CLAWGATE_DATABASE_APP_ROLE")]
    pub app_role: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(args: &[&str]) -> UpArgs {
        let argv = ["clawgate", "up"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Up(args)) => args,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn auth_flags() {
        let defaults = up(&[]).common;
        assert!(defaults.auth.pairing_auto_approve_local);
        assert_eq!(defaults.auth.auth_max_failures, 10);
        assert_eq!(defaults.auth.auth_lockout_ms, 300_000);
        assert!(!defaults.auth.auth_limit_loopback);
        assert_eq!(defaults.edge.preauth_sockets_per_ip, 32);
        let off = up(&[
            "--pairing-auto-approve-local=false",
            "--auth-limit-loopback",
        ])
        .common;
        assert!(!off.auth.pairing_auto_approve_local);
        assert!(off.auth.auth_limit_loopback);
        let on = up(&[
            "--pairing-auto-approve-local",
            "--preauth-sockets-per-ip",
            "4",
        ])
        .common;
        assert!(on.auth.pairing_auto_approve_local);
        assert_eq!(on.edge.preauth_sockets_per_ip, 4);
    }

    #[test]
    fn secrets_and_retention_flags() {
        let defaults = up(&[]).common;
        assert!(defaults.encryption_key.is_none());
        assert_eq!(defaults.session_retention_days, 30);
        let key = "ab".repeat(32);
        let set = up(&["--encryption-key", &key, "--session-retention-days", "7"]).common;
        assert_eq!(
            set.encryption_key.as_ref().map(SecretArg::expose),
            Some(key.as_str())
        );
        assert_eq!(set.session_retention_days, 7);
        let printed = format!("{set:?}");
        assert!(!printed.contains(&key), "the key appears in Debug output");
        let argv = [
            "clawgate",
            "migrate",
            "--database-url",
            "postgres://x@h/db",
            "--app-role",
            "clawgate_app",
        ];
        let Ok(Command::Migrate(args)) = Cli::try_parse_from(argv).map(|cli| cli.command) else {
            panic!("migrate expected");
        };
        assert_eq!(args.app_role.as_deref(), Some("clawgate_app"));
    }

    #[test]
    fn cluster_flags() {
        let argv = [
            "clawgate",
            "serve",
            "--services",
            "runner",
            "--runner-id",
            "r7",
            "--run-lease-ms",
            "900",
            "--runner-shutdown-grace-ms",
            "1500",
        ];
        let Ok(Command::Serve(args)) = Cli::try_parse_from(argv).map(|cli| cli.command) else {
            panic!("serve expected");
        };
        assert_eq!(args.cluster.runner_id.as_deref(), Some("r7"));
        assert_eq!(args.cluster.run_lease_ms, 900);
        assert_eq!(args.cluster.reap_interval_ms, 2_000);
        assert_eq!(args.cluster.runner_shutdown_grace_ms, 1_500);
        assert_eq!(args.common.edge.restart_expected_ms, 5_000);
    }
}
