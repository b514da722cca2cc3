//! Tests of the reference node client (`clawgate_testkit::refnode`) without a
//! gateway: the §3.2 identity test vector, and a tiny in-test WebSocket server
//! that plays the gateway side of the handshake (checking the signed connect
//! frame by rebuilding the v3 string itself), pushes events and invoke
//! requests, and checks the node's answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_testkit::refnode::{
    InvokeReply, NodeIdentity, NodeOptions, RefNode, SignedFields, normalize_metadata,
};
use ed25519_dalek::{Signature, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(5);
const NONCE: &str = "2f1c7a3e-0b7d-4c55-9d0e-6a2b1c3d4e5f";

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i + 1).expect("small"))
}

#[test]
fn identity_matches_the_reference_test_vector() {
    let identity = NodeIdentity::from_seed(seed());
    let device_id = "65b60673d6ed884bf01c2c222d82ada0740f29ac3355d6a925c81f17f47a27b8";
    assert_eq!(identity.device_id(), device_id);
    assert_eq!(
        identity.public_key_b64url(),
        "ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ"
    );
    let scopes = ["operator.read", "operator.write"];
    let signature = identity.sign_v3(
        "cli",
        "cli",
        "operator",
        &scopes,
        1_737_264_000_000,
        "secret-token",
        NONCE,
        "linux",
        "",
    );
    assert_eq!(
        signature,
        "_-totKKzVBUrW28AaaPL-vQdpsxBTnMbaw7PtLkYoUNTuv-AAPMFEGfGt5C9maz9DWnE9mB6AWq7FElw2vdaDw"
    );

    let fields = SignedFields {
        client_id: "cli",
        client_mode: "cli",
        role: "operator",
        scopes: &scopes,
        signed_at_ms: 1_737_264_000_000,
        token: "secret-token",
        nonce: NONCE,
    };
    assert_eq!(
        fields.v3_payload(device_id, "linux", ""),
        format!(
            "v3|{device_id}|cli|cli|operator|operator.read,operator.write|1737264000000|secret-token|{NONCE}|linux|"
        )
    );
    assert_eq!(
        identity.sign(&fields.v2_payload(device_id)),
        "zTwys2HDac6mSTcnfA5PJX-V1Cz0MjeDtWnc7rstqaXkpD5UVOgLLU-G4ctZV3XekUpeQFzhBs5UwApLEcAdBw"
    );
    // platform / deviceFamily are trimmed and ASCII-lowercased before signing
    assert_eq!(normalize_metadata("  LiNuX \t"), "linux");
    assert_eq!(
        identity.sign_v3(
            "cli",
            "cli",
            "operator",
            &scopes,
            1_737_264_000_000,
            "secret-token",
            NONCE,
            " Linux ",
            ""
        ),
        signature
    );
    assert_eq!(
        NodeIdentity::from_seed(identity.seed()).device_id(),
        device_id
    );
    assert_ne!(NodeIdentity::random().device_id(), device_id);
}

/// The gateway side of one socket.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

async fn accept(listener: &TcpListener) -> Peer {
    let (tcp, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    Peer { ws }
}

impl Peer {
    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON frame from the client.
    async fn recv(&mut self) -> Value {
        loop {
            let message = timeout(WAIT, self.ws.next())
                .await
                .expect("client frame in time")
                .expect("socket open")
                .expect("read ok");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).unwrap();
            }
            assert!(!message.is_close(), "client closed: {message:?}");
        }
    }

    /// The next request, which must be `method`.
    async fn recv_req(&mut self, method: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "req", "{frame}");
        assert_eq!(frame["method"], method, "{frame}");
        assert!(
            frame["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{frame}"
        );
        frame
    }

    async fn reply(&mut self, req: &Value, payload: Value) {
        self.send(json!({"type": "res", "id": req["id"], "ok": true, "payload": payload}))
            .await;
    }

    async fn reply_error(&mut self, req: &Value, code: &str, message: &str, details: Value) {
        let error = json!({"code": code, "message": message, "details": details});
        self.send(json!({"type": "res", "id": req["id"], "ok": false, "error": error}))
            .await;
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.ws.close(Some(frame)).await.unwrap();
    }

    /// How the client ended the socket: `Some(close frame)` or `None` (no frame).
    async fn ending(&mut self) -> Option<Option<CloseFrame>> {
        match timeout(WAIT, self.ws.next()).await.expect("end in time") {
            None | Some(Err(_)) => None,
            Some(Ok(Message::Close(frame))) => {
                // reading on sends the closing handshake's reply
                while let Ok(Some(Ok(_))) = timeout(WAIT, self.ws.next()).await {}
                Some(frame)
            }
            Some(Ok(other)) => panic!("unexpected frame before the end: {other:?}"),
        }
    }

    /// Sends the challenge, reads the connect request and checks it offered
    /// `protocol..protocol` as a signed node; returns the request.
    async fn handshake(&mut self, token: &str, protocol: u64) -> Value {
        let ts = 1_737_264_000_123_u64;
        self.send(json!({"type": "event", "event": "connect.challenge",
                         "payload": {"nonce": NONCE, "ts": ts}}))
            .await;
        let req = self.recv_req("connect").await;
        check_connect(&req["params"], token, ts, protocol);
        req
    }
}

/// The §2.2 / §3 checks a gateway makes, written independently of the client.
fn check_connect(params: &Value, token: &str, ts: u64, protocol: u64) {
    assert_eq!(params["minProtocol"], protocol, "{params}");
    assert_eq!(params["maxProtocol"], protocol, "{params}");
    assert_eq!(params["role"], "node");
    assert_eq!(params["scopes"], json!([]));
    assert_eq!(params["client"]["mode"], "node");
    assert_eq!(params["auth"]["token"], token);
    let client = &params["client"];
    let device = &params["device"];
    let key = URL_SAFE_NO_PAD
        .decode(device["publicKey"].as_str().unwrap())
        .unwrap();
    let key: [u8; 32] = key.try_into().unwrap();
    let id: String = Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(device["id"], id.as_str());
    assert_eq!(device["nonce"], NONCE);
    assert_eq!(device["signedAt"], ts);
    let lower = |v: &Value| v.as_str().unwrap_or("").trim().to_ascii_lowercase();
    let payload = format!(
        "v3|{id}|{}|node|node||{ts}|{token}|{NONCE}|{}|{}",
        client["id"].as_str().unwrap(),
        lower(&client["platform"]),
        lower(&client["deviceFamily"]),
    );
    let signature = URL_SAFE_NO_PAD
        .decode(device["signature"].as_str().unwrap())
        .unwrap();
    let signature = Signature::from_slice(&signature).unwrap();
    VerifyingKey::from_bytes(&key)
        .unwrap()
        .verify_strict(payload.as_bytes(), &signature)
        .expect("signature over the rebuilt v3 string");
}

fn hello(protocol: u64) -> Value {
    json!({"type": "hello-ok", "protocol": protocol,
           "server": {"version": "test", "connId": "c1"},
           "features": {"methods": ["node.invoke.result", "node.event"], "events": []},
           "auth": {"role": "node", "scopes": [], "deviceToken": "dt-1"},
           "policy": {"tickIntervalMs": 30000}})
}

#[tokio::test]
async fn v3_connect_is_signed_and_invokes_are_answered() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        let req = peer.handshake("gw-token", 3).await;
        let params = &req["params"];
        assert_eq!(params["client"]["id"], "node-host");
        assert_eq!(params["client"]["platform"], "Linux");
        assert_eq!(params["client"]["displayName"], "bench node");
        assert_eq!(params["caps"], json!(["system"]));
        assert_eq!(params["commands"], json!(["system.run", "system.which"]));
        assert_eq!(params["permissions"], json!({"screen.record": false}));
        assert_eq!(params["pathEnv"], "/usr/bin");
        peer.reply(&req, hello(3)).await;

        // the client is ready once it has set its handler and calls skills.bins
        let bins = peer.recv_req("skills.bins").await;
        peer.send(json!({"type": "event", "event": "tick", "payload": {"ts": 1}, "seq": 1}))
            .await;
        peer.send(json!({"type": "event", "event": "some.future.event", "payload": {"x": 1}}))
            .await;
        peer.reply(&bins, json!({"bins": ["git"]})).await;
        let invoke = |id: &str, command: &str, params: Value| {
            json!({"type": "event", "event": "node.invoke.request",
                   "payload": {"id": id, "nodeId": "ignored-by-check", "command": command,
                               "paramsJSON": params.to_string(), "timeoutMs": 30000,
                               "idempotencyKey": format!("idem-{id}")}})
        };
        peer.send(invoke("i1", "system.which", json!({"bins": ["ls"]})))
            .await;
        peer.send(invoke("i2", "system.run", json!({"argv": ["false"]})))
            .await;
        peer.send(invoke("i3", "silent.cmd", json!({}))).await;

        let first = peer.recv_req("node.invoke.result").await;
        let result = &first["params"];
        assert_eq!(result["id"], "i1");
        assert_eq!(result["ok"], true);
        let payload: Value = serde_json::from_str(result["payloadJSON"].as_str().unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({"which": {"ls": "/bin/ls"}, "got": {"bins": ["ls"]}})
        );
        peer.reply(&first, json!({"ok": true})).await;

        let second = peer.recv_req("node.invoke.result").await;
        assert_eq!(second["params"]["id"], "i2");
        assert_eq!(second["params"]["ok"], false);
        assert_eq!(
            second["params"]["error"],
            json!({"code": "EXIT_1", "message": "exit 1"})
        );
        peer.reply(&second, json!({"ok": true, "ignored": true}))
            .await;

        // i3 is never answered: the next frame is the node.event
        let event = peer.recv_req("node.event").await;
        assert_eq!(event["params"]["event"], "exec.finished");
        let sent: Value =
            serde_json::from_str(event["params"]["payloadJSON"].as_str().unwrap()).unwrap();
        assert_eq!(sent, json!({"runId": "r1"}));
        peer.reply(&event, json!({"ok": true})).await;

        let close = peer
            .ending()
            .await
            .expect("a close frame")
            .expect("with a code");
        assert_eq!(close.code, CloseCode::Normal);
    });

    let mut opts = NodeOptions::new(NodeIdentity::from_seed(seed()), "gw-token")
        .with_caps(["system"])
        .with_commands(["system.run", "system.which"])
        .with_display_name("bench node");
    opts.platform = "Linux".into();
    opts.device_family = Some(" Desktop ".into());
    opts.permissions
        .insert("screen.record".into(), json!(false));
    opts.path_env = Some("/usr/bin".into());
    let node = RefNode::connect(&url, opts).await.expect("hello-ok");
    assert_eq!(node.protocol, 3);
    assert_eq!(node.offered, vec![(3, 3)]);
    assert_eq!(node.device_token().as_deref(), Some("dt-1"));
    assert!(node.methods.iter().any(|m| m == "node.event"));
    assert_eq!(node.challenge["nonce"], NONCE);
    node.on_invoke(|request| match request.command.as_str() {
        "system.which" => {
            InvokeReply::ok(json!({"which": {"ls": "/bin/ls"}, "got": request.params}))
        }
        "system.run" => InvokeReply::error("EXIT_1", "exit 1").after(Duration::from_millis(100)),
        _ => InvokeReply::NoAnswer,
    });
    assert_eq!(node.skills_bins().await.unwrap(), json!({"bins": ["git"]}));

    assert!(node.wait_invokes(3, WAIT).await);
    assert!(node.wait_answers(2, WAIT).await);
    assert_eq!(node.invokes_received(), 3);
    let invokes = node.invokes();
    assert_eq!(invokes[0].command, "system.which");
    assert_eq!(invokes[0].params, json!({"bins": ["ls"]}));
    assert_eq!(invokes[0].idempotency_key.as_deref(), Some("idem-i1"));
    assert_eq!(invokes[0].timeout_ms, Some(30000));
    let answers = node.invoke_answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].response, Ok(json!({"ok": true})));
    assert_eq!(
        answers[1].response,
        Ok(json!({"ok": true, "ignored": true}))
    );
    // ticks are swallowed; unknown events are queued, invoke requests too
    assert_eq!(node.ticks(), 1);
    let invoke = node.next_event("node.invoke.request", WAIT).await.unwrap();
    assert_eq!(invoke.payload["id"], "i1");
    let future = node.next_event("some.future.event", WAIT).await.unwrap();
    assert_eq!(future.payload, json!({"x": 1}));
    assert!(
        node.next_event("tick", Duration::from_millis(50))
            .await
            .is_none()
    );

    node.event("exec.finished", json!({"runId": "r1"}))
        .await
        .unwrap();
    assert_eq!(node.invokes_received(), 3);
    let ended = node.close().await.expect("closing handshake");
    assert_eq!(ended.code, Some(1000));
    server.await.unwrap();
}

#[tokio::test]
async fn v4_connect_matches_responses_and_aborts_without_close_frame() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        let req = peer.handshake("tok4", 4).await;
        peer.reply(&req, hello(4)).await;

        let surface = peer.recv_req("node.pluginSurface.refresh").await;
        assert_eq!(surface["params"], json!({"surface": "canvas"}));
        let drain = peer.recv_req("node.pending.drain").await;
        assert_eq!(drain["params"], json!({"maxItems": 5}));
        // answered in reverse order
        peer.reply(&drain, json!({"items": [], "hasMore": false}))
            .await;
        peer.reply(
            &surface,
            json!({"surface": "canvas", "pluginSurfaceUrls": {"canvas": "u"}}),
        )
        .await;

        let ack = peer.recv_req("node.pending.ack").await;
        assert_eq!(ack["params"], json!({"ids": ["a1", "a2"]}));
        peer.reply_error(
            &ack,
            "INVALID_REQUEST",
            "unauthorized role: node",
            json!({"reason": "x"}),
        )
        .await;
        let pull = peer.recv_req("node.pending.pull").await;
        assert_eq!(pull["params"], json!({}));
        // no answer to pull: the client times out
        assert!(peer.ending().await.is_none(), "abort sends no close frame");
    });

    let opts = NodeOptions::new(NodeIdentity::random(), "tok4").with_protocol(4);
    let node = RefNode::connect(&url, opts).await.expect("hello-ok");
    assert_eq!(node.protocol, 4);
    let (surface, drain) = tokio::join!(node.plugin_surface_refresh("canvas"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        node.pending_drain(Some(5)).await
    });
    assert_eq!(surface.unwrap()["pluginSurfaceUrls"]["canvas"], "u");
    assert_eq!(drain.unwrap()["hasMore"], false);
    let error = node.pending_ack(&["a1", "a2"]).await.unwrap_err();
    assert_eq!(error.code, "INVALID_REQUEST");
    assert_eq!(error.message, "unauthorized role: node");
    assert_eq!(error.details, json!({"reason": "x"}));
    let timed_out = node
        .call_with_timeout("node.pending.pull", json!({}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(timed_out.code, "TIMEOUT");
    node.abort().await;
    server.await.unwrap();
}

#[tokio::test]
async fn pairing_failure_reports_code_request_id_and_close() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        let req = peer.handshake("t", 3).await;
        let details =
            json!({"code": "PAIRING_REQUIRED", "reason": "not-paired", "requestId": "req-9"});
        peer.reply_error(&req, "NOT_PAIRED", "pairing required: not-paired", details)
            .await;
        peer.close(1008, "pairing required: not-paired (requestId: req-9)")
            .await;
    });
    let failure = RefNode::connect(&url, NodeOptions::new(NodeIdentity::random(), "t"))
        .await
        .err()
        .expect("refused");
    assert_eq!(failure.code, "NOT_PAIRED");
    assert_eq!(failure.details_code(), Some("PAIRING_REQUIRED"));
    assert_eq!(failure.request_id(), Some("req-9"));
    let close = failure.close.expect("close frame");
    assert_eq!(close.code, Some(1008));
    assert!(close.reason.contains("req-9"));
    server.await.unwrap();
}

#[tokio::test]
async fn node_host_fallback_retries_on_protocol_3() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut first = accept(&listener).await;
        let req = first.handshake("t", 4).await;
        first
            .reply_error(
                &req,
                "INVALID_REQUEST",
                "protocol mismatch",
                json!({"expectedProtocol": 3}),
            )
            .await;
        first.close(1002, "protocol mismatch").await;
        let mut second = accept(&listener).await;
        let req = second.handshake("t", 3).await;
        second.reply(&req, hello(3)).await;
        let refresh = second.recv_req("node.canvas.capability.refresh").await;
        second.reply(&refresh, json!({"canvasHostUrl": "h"})).await;
        second.close(4001, "device removed").await;
    });
    let mut opts = NodeOptions::new(NodeIdentity::random(), "t").with_protocol(4);
    opts.node_host_fallback = true;
    let node = RefNode::connect(&url, opts).await.expect("connected on 3");
    assert_eq!(node.offered, vec![(4, 4), (3, 3)]);
    assert_eq!(node.protocol, 3);
    assert_eq!(node.canvas_refresh().await.unwrap()["canvasHostUrl"], "h");
    let closed = node.wait_closed(WAIT).await.expect("closed by the gateway");
    assert_eq!(closed.code, Some(4001));
    assert_eq!(closed.reason, "device removed");
    assert_eq!(node.health().await.unwrap_err().code, "CLOSED");
    server.await.unwrap();
}

#[tokio::test]
async fn node_host_fallback_reconnects_on_4_when_the_legacy_hello_says_4() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut first = accept(&listener).await;
        let req = first.handshake("t", 4).await;
        let details = json!({"code": "PROTOCOL_MISMATCH", "expectedProtocol": 3});
        first
            .reply_error(&req, "INVALID_REQUEST", "protocol mismatch", details)
            .await;
        first.close(1002, "protocol mismatch").await;
        let mut legacy = accept(&listener).await;
        let req = legacy.handshake("t", 3).await;
        legacy.reply(&req, hello(4)).await;
        let close = legacy.ending().await.expect("close frame").expect("code");
        assert_eq!(u16::from(close.code), 1012);
        assert_eq!(close.reason.as_str(), "gateway protocol upgraded");
        let mut current = accept(&listener).await;
        let req = current.handshake("t", 4).await;
        current.reply(&req, hello(4)).await;
        let _ = current.ending().await;
    });
    let mut opts = NodeOptions::new(NodeIdentity::random(), "t").with_protocol(4);
    opts.node_host_fallback = true;
    let node = RefNode::connect(&url, opts).await.expect("connected on 4");
    assert_eq!(node.offered, vec![(4, 4), (3, 3), (4, 4)]);
    assert_eq!(node.protocol, 4);
    node.close().await;
    server.await.unwrap();
}
