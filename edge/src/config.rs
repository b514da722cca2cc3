//! Edge configuration: limits, timers and defaults advertised to clients.
//!
//! Invariant: every queue and buffer the edge allocates per socket is sized from
//! here, so one value bounds one resource.

use std::time::Duration;

/// Largest frame a client may send before the handshake completed (OpenClaw's
/// `MAX_PREAUTH_PAYLOAD_BYTES`). Larger frames close the socket with 1009.
pub const PREAUTH_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Budget of one response payload that lists stored data (e.g. `chat.history`);
/// oldest entries are left out beyond it.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Settings of one edge process.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Server version reported in `hello-ok.server.version` and goclaw `server.version`.
    pub version: String,
    /// Largest client frame after the handshake; advertised as `policy.maxPayload`.
    pub max_payload_bytes: usize,
    /// Time a socket has to complete `connect` after the challenge.
    pub handshake_timeout: Duration,
    /// Period of the OpenClaw `tick` event; advertised as `policy.tickIntervalMs`.
    pub tick_interval: Duration,
    /// Period of WebSocket ping frames after the handshake.
    pub ping_interval: Duration,
    /// Bound, in bytes, of each socket's outbound queue (and of its inbound event
    /// queue); advertised as `policy.maxBufferedBytes`.
    pub socket_queue_bytes: usize,
    /// Agent used when a session key or request names none.
    pub default_agent_id: String,
    /// Name of the main session of an agent (`agent:<id>:<main_key>`).
    pub main_key: String,
    /// tungstenite read buffer per socket.
    pub read_buffer_size: usize,
    /// tungstenite write buffer per socket (writes are flushed once per batch).
    pub write_buffer_size: usize,
    /// Requests of one socket being served at the same time; more are refused.
    pub max_in_flight_requests: usize,
    /// goclaw `chat.send` calls of one socket waiting for their run to end.
    pub max_pending_chat_sends: usize,
    /// Capacity, in messages, of the process's one bus subscriber.
    pub bus_queue_capacity: usize,
    /// How long a bus topic stays subscribed after its last socket left, so a
    /// client that reconnects (each CLI command is a connection of its own)
    /// finds it subscribed and its handshake skips the bus round trip.
    pub topic_linger: Duration,
    /// How long a closing socket may take to write what is queued and the close
    /// frame (a client that stopped reading is dropped after this).
    pub close_timeout: Duration,
    /// How long shutdown waits for sockets to say goodbye before dropping them.
    pub drain_timeout: Duration,
    /// `restartExpectedMs` announced in the `shutdown` event.
    pub restart_expected_ms: Option<u64>,
    /// Id of this edge process, unique among live edges: names its inbox topic
    /// and its entries in the device registry (random by default).
    pub pod_id: String,
    /// The process's effective configuration with every secret redacted, as
    /// `config.get` answers it (the binary builds it; `None`: not provided).
    pub effective_config: Option<serde_json::Value>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_payload_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(15),
            tick_interval: Duration::from_secs(30),
            ping_interval: Duration::from_secs(25),
            socket_queue_bytes: 4 * 1024 * 1024,
            default_agent_id: "main".to_owned(),
            main_key: "main".to_owned(),
            read_buffer_size: 1024,
            write_buffer_size: 4 * 1024,
            max_in_flight_requests: 64,
            max_pending_chat_sends: 64,
            bus_queue_capacity: 4096,
            topic_linger: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            restart_expected_ms: None,
            pod_id: format!("edge-{}", uuid::Uuid::new_v4().simple()),
            effective_config: None,
        }
    }
}

impl EdgeConfig {
    /// Largest message the WebSocket reader accepts at all. Pre-handshake frames are
    /// additionally checked against [`PREAUTH_MAX_PAYLOAD_BYTES`].
    pub(crate) fn reader_limit(&self) -> usize {
        self.max_payload_bytes.max(PREAUTH_MAX_PAYLOAD_BYTES)
    }

    /// Hard bound of tungstenite's write buffer. tungstenite stops accepting frames
    /// once its buffer passes `write_buffer_size` and the socket would block, so the
    /// buffer holds at most one write buffer plus one frame; frames are bounded by the
    /// largest response ([`MAX_RESPONSE_BYTES`]) or the queue bound.
    pub(crate) fn max_write_buffer(&self) -> usize {
        self.write_buffer_size + 2 * self.socket_queue_bytes.max(MAX_RESPONSE_BYTES)
    }
}
