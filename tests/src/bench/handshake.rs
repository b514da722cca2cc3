//! The handshake phase: connect → `hello-ok` latency, one connection at a
//! time, for each OpenClaw protocol version and both ways the stock clients
//! authenticate: token-only (the device-less `gateway-client`/`backend`
//! operator the v4 CLI's `health`/`status`/`models list` use) and
//! device-signed (a paired device signing the challenge, as the v3 CLI and
//! every TUI do).
//!
//! The clock runs from the moment the `connect` request is written to the
//! moment its response is read, so it measures the gateway (auth call,
//! signature check, device-token lookup, `hello-ok`) and not the client's own
//! signing. Each variant first connects once unmeasured (a fresh device is
//! paired then: local auto-approval), then measures `connects` connects. A
//! device-signed client reconnects as OpenClaw's reference client does: with
//! the device token the last `hello-ok` gave it (`auth.deviceToken`) besides
//! the shared token.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::client::{next_json, open};
use super::stats::{Percentiles, percentiles};
use crate::openclaw_device::{ClientInfo, ConnectSpec, DeviceIdentity};

/// How long one handshake may take before the phase gives up on it.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// One way of connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub protocol: u64,
    pub device_signed: bool,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant {
            protocol: 3,
            device_signed: false,
        },
        Variant {
            protocol: 4,
            device_signed: false,
        },
        Variant {
            protocol: 3,
            device_signed: true,
        },
        Variant {
            protocol: 4,
            device_signed: true,
        },
    ];

    pub fn name(self) -> String {
        let how = if self.device_signed {
            "device_signed"
        } else {
            "token"
        };
        format!("v{}_{how}", self.protocol)
    }
}

/// The measured latency of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub name: String,
    pub protocol: u64,
    pub device_signed: bool,
    /// Connect → `hello-ok`, in ms.
    pub latency_ms: Option<Percentiles>,
    pub failures: usize,
}

/// One handshake on a new socket; returns the connect → response time and
/// the device token `hello-ok` gave, if any.
async fn handshake(
    url: &str,
    spec: &ConnectSpec,
    identity: Option<&DeviceIdentity>,
) -> anyhow::Result<(Duration, Option<String>)> {
    tokio::time::timeout(HANDSHAKE_LIMIT, async {
        let mut ws = open(url).await?;
        let challenge = next_json(&mut ws).await?;
        let nonce = challenge["payload"]["nonce"]
            .as_str()
            .context("challenge without nonce")?;
        let params = match identity {
            Some(identity) => spec.params(identity, nonce),
            None => spec.params_without_device(),
        };
        let request =
            json!({"type": "req", "id": "c", "method": "connect", "params": params}).to_string();
        let sent = Instant::now();
        ws.send(Message::Text(request.into())).await?;
        let frame: Value = loop {
            let frame = next_json(&mut ws).await?;
            if frame["type"] == "res" {
                break frame;
            }
        };
        let took = sent.elapsed();
        if frame["ok"] != true {
            bail!("connect refused: {frame}");
        }
        let _ = ws.close(None).await;
        let device_token = frame["payload"]["auth"]["deviceToken"]
            .as_str()
            .map(str::to_owned);
        Ok((took, device_token))
    })
    .await
    .context("handshake timed out")?
}

/// Measures `connects` handshakes of each variant against `url`.
pub async fn run(url: &str, token: &str, connects: usize) -> Vec<VariantReport> {
    let mut reports = Vec::new();
    for variant in Variant::ALL {
        let (client, scopes): (ClientInfo, &[&str]) = if variant.device_signed {
            (ClientInfo::cli(), &["operator.read", "operator.write"])
        } else {
            (ClientInfo::backend(), &["operator.read"])
        };
        let mut spec = ConnectSpec::operator(scopes)
            .with_client(client)
            .with_token(token)
            .with_protocol(variant.protocol, variant.protocol);
        let identity = variant.device_signed.then(DeviceIdentity::generate);
        let mut failures = 0;
        // Unmeasured: pairs the device, warms the connection pools.
        match handshake(url, &spec, identity.as_ref()).await {
            Ok((_, Some(device_token))) => spec = spec.with_device_token(&device_token),
            Ok((_, None)) => {}
            Err(_) => failures += 1,
        }
        let mut samples = Vec::with_capacity(connects);
        for _ in 0..connects {
            match handshake(url, &spec, identity.as_ref()).await {
                Ok((took, device_token)) => {
                    samples.push(took.as_secs_f64() * 1000.0);
                    if let Some(device_token) = device_token {
                        spec = spec.with_device_token(&device_token);
                    }
                }
                Err(err) => {
                    failures += 1;
                    tracing::debug!(error = %err, "handshake failed");
                }
            }
        }
        reports.push(VariantReport {
            name: variant.name(),
            protocol: variant.protocol,
            device_signed: variant.device_signed,
            latency_ms: percentiles(samples),
            failures,
        });
    }
    reports
}
