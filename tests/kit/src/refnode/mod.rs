//! A reference OpenClaw **node** client for gateway tests, written only from
//! the protocol reference (openclaw-protocol.md §1–§6, openclaw-v4.md), never
//! from clawgate's code, so a gateway bug cannot be mirrored here.
//!
//! - [`identity`]: the Ed25519 device key, device id and the signed v3 string;
//! - [`connect`]: [`NodeOptions`] and one handshake attempt (challenge →
//!   signed `connect` with role `node` → hello-ok or [`ConnectFailure`]);
//! - [`session`]: [`Connected`], the running node (RPC calls, events, invoke
//!   handling, node-role helpers, close/abort);
//! - [`types`]: the errors, events and invoke request/reply values;
//! - this file: [`RefNode::connect`], including the node host's v4 → v3
//!   protocol fallback.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use clawgate_testkit::refnode::{InvokeReply, NodeIdentity, NodeOptions, RefNode};
//! let opts = NodeOptions::new(NodeIdentity::random(), "gateway-token")
//!     .with_protocol(4)
//!     .with_commands(["system.which"]);
//! let node = RefNode::connect("ws://127.0.0.1:18789", opts).await?;
//! node.on_invoke(|request| InvokeReply::ok(serde_json::json!({"echo": request.params})));
//! # Ok(()) }
//! ```

pub mod connect;
pub mod identity;
pub mod session;
pub mod types;

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub use connect::{NodeOptions, ProofOverrides};
pub use identity::{NodeIdentity, SignedFields, normalize_metadata};
pub use session::Connected;
pub use types::{
    CODE_CLOSED, CODE_IO, CODE_TIMEOUT, CloseInfo, ConnectFailure, Event, InvokeAnswer,
    InvokeReply, InvokeRequest, RpcError,
};

/// The reference node client. See [`RefNode::connect`].
#[derive(Debug)]
pub struct RefNode;

impl RefNode {
    /// Connects as a node to the gateway at `url` (`ws://host:port/...`).
    ///
    /// Offers `opts.range()`; with `opts.node_host_fallback` and a 4..4 offer,
    /// behaves like the real node host (v4 §1.3): retries on 3..3 after a
    /// protocol mismatch naming `expectedProtocol: 3`, and after a legacy
    /// 3..3 connect answered with `protocol > 3` closes 1012
    /// `gateway protocol upgraded` and reconnects on 4..4.
    pub async fn connect(url: &str, opts: NodeOptions) -> Result<Connected, ConnectFailure> {
        let mut offered = vec![opts.range()];
        let mut result = connect::handshake(url, &opts, opts.range()).await;
        let fallback = opts.node_host_fallback && opts.range() == (4, 4);
        if fallback
            && let Err(failure) = &result
            && failure.is_protocol_mismatch()
            && failure.details["expectedProtocol"] == 3
        {
            offered.push((3, 3));
            result = connect::handshake(url, &opts, (3, 3)).await;
            if let Ok(legacy) = &mut result
                && legacy.hello["protocol"].as_u64().is_some_and(|p| p > 3)
            {
                let frame = CloseFrame {
                    code: CloseCode::Restart,
                    reason: "gateway protocol upgraded".into(),
                };
                let _ = legacy.stream.close(Some(frame)).await;
                offered.push((4, 4));
                result = connect::handshake(url, &opts, (4, 4)).await;
            }
        }
        let handshake = result?;
        let node_id = if opts.proof.omit_device {
            opts.client_id.clone()
        } else {
            opts.identity.device_id()
        };
        let mut connected = Connected::start(
            handshake.stream,
            handshake.hello,
            handshake.challenge,
            node_id,
            opts.call_timeout,
            opts.event_buffer,
        );
        connected.offered = offered;
        Ok(connected)
    }
}
