//! The `node.invoke` benchmark behind `clawgate-bench-nodes`: a local process
//! cluster with two edges (auth, session, a runner; PostgreSQL and Redis), one
//! node (the test kit's reference node client, answering every call at once)
//! on edge 1 and operators on edge 0, so every call crosses edges through
//! Redis both ways.
//!
//! - **round trip**: one call at a time from one operator, `sequential` calls
//!   after a warm-up: request sent → response received, as p50/p99/max;
//! - **throughput**: `sockets` operator sockets keep `in_flight` calls each
//!   outstanding for `duration`; completed calls per second, and errors.
//!
//! Everything is bounded: counts are checked by [`NodeBenchOptions::validate`],
//! every wait has a time limit.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clawgate_runtime::db::testing::fresh_postgres_url;
use clawgate_testkit::refnode::{InvokeReply, NodeIdentity, NodeOptions, RefNode};
use serde_json::{Value, json};

use crate::bench::stats::{Percentiles, percentiles, round3};
use crate::cluster::{Cluster, ClusterOptions, Scale};
use crate::mock_model::{MockModel, Script};
use crate::ws::{WsClient, openclaw_connect_params};

/// Budgets of the issue, reported next to the figures.
pub const BUDGET_ROUND_TRIP_P50_MS: f64 = 2.0;
pub const BUDGET_INVOKES_PER_S: f64 = 5_000.0;

/// What to measure.
#[derive(Debug, Clone)]
pub struct NodeBenchOptions {
    pub warmup_calls: usize,
    pub sequential: usize,
    pub sockets: usize,
    pub in_flight: usize,
    pub duration: Duration,
    pub redis_url: String,
}

impl Default for NodeBenchOptions {
    fn default() -> Self {
        Self {
            warmup_calls: 200,
            sequential: 2_000,
            sockets: 8,
            in_flight: 16,
            duration: Duration::from_secs(5),
            redis_url: crate::cluster::test_redis_url(),
        }
    }
}

impl NodeBenchOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=100_000).contains(&self.sequential),
            "--sequential must be 1..=100000"
        );
        ensure!(
            (1..=256).contains(&self.sockets),
            "--sockets must be 1..=256"
        );
        ensure!(
            (1..=256).contains(&self.in_flight),
            "--in-flight must be 1..=256"
        );
        ensure!(
            self.duration >= Duration::from_millis(100)
                && self.duration <= Duration::from_secs(600),
            "--duration-s must be 0.1..=600"
        );
        Ok(())
    }
}

async fn operator(url: &str, token: &str) -> anyhow::Result<WsClient> {
    let mut client = WsClient::connect(url).await?;
    client.event("connect.challenge").await?;
    let mut params = openclaw_connect_params(token);
    params["scopes"] = json!(["operator.read", "operator.write", "operator.pairing"]);
    let res = client.request("connect", params).await?;
    ensure!(res["ok"] == true, "connect failed: {res}");
    Ok(client)
}

fn call(node_id: &str, key: &str) -> Value {
    json!({
        "nodeId": node_id,
        "command": "bench.echo",
        "params": {"n": 1},
        "timeoutMs": 10_000,
        "idempotencyKey": key,
    })
}

/// Sequential round trips, in ms.
async fn round_trips(
    client: &mut WsClient,
    node_id: &str,
    count: usize,
    tag: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        let started = Instant::now();
        let res = client
            .request("node.invoke", call(node_id, &format!("{tag}-{index}")))
            .await?;
        ensure!(res["ok"] == true, "invoke failed: {res}");
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// One socket keeping `in_flight` calls outstanding until `until`:
/// (completed, errors).
async fn pump(
    mut client: WsClient,
    node_id: String,
    in_flight: usize,
    until: Instant,
    tag: String,
) -> anyhow::Result<(u64, u64)> {
    let (mut sent, mut done, mut errors) = (0_u64, 0_u64, 0_u64);
    for _ in 0..in_flight {
        client
            .send_request("node.invoke", call(&node_id, &format!("{tag}-{sent}")))
            .await?;
        sent += 1;
    }
    let grace = until + Duration::from_secs(10);
    while done + errors < sent {
        let frame = tokio::time::timeout_at(grace.into(), client.recv())
            .await
            .context("calls did not finish")??;
        if frame["type"] != "res" {
            continue;
        }
        if frame["ok"] == true {
            done += 1;
        } else {
            if errors == 0 {
                eprintln!("node bench: first error: {}", frame["error"]);
            }
            errors += 1;
        }
        if Instant::now() < until {
            client
                .send_request("node.invoke", call(&node_id, &format!("{tag}-{sent}")))
                .await?;
            sent += 1;
        }
    }
    Ok((done, errors))
}

/// Runs the benchmark; its JSON report.
pub async fn run(options: &NodeBenchOptions) -> anyhow::Result<Value> {
    options.validate()?;
    let model = MockModel::start(Script::text("unused")).await?;
    let database = fresh_postgres_url().await?;
    let cluster = Cluster::start_with(
        ClusterOptions {
            edges: 2,
            database_url: database.url().to_owned(),
            redis_url: options.redis_url.clone(),
            model_base_url: model.base_url(),
            env: Vec::new(),
        },
        Scale::default(),
    )
    .await?;
    let token = cluster.gateway_token.clone();
    let (edge0, edge1) = (&cluster.edge_urls[0], &cluster.edge_urls[1]);
    let mut op = operator(edge0, &token).await?;
    let identity = NodeIdentity::random();
    let node_id = identity.device_id();
    let node = RefNode::connect(
        edge1,
        NodeOptions::new(identity, &token).with_commands(["bench.echo"]),
    )
    .await
    .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    node.on_invoke(|_| InvokeReply::ok(json!({"ok": true})));
    let requested = op.event("node.pair.requested").await?;
    let request_id = requested["payload"]["requestId"].clone();
    let approved = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await?;
    ensure!(approved["ok"] == true, "approval failed: {approved}");
    // The approval reaches the node's edge asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = op.request("node.invoke", call(&node_id, "probe")).await?;
        if res["ok"] == true {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the node never became invocable: {res}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    round_trips(&mut op, &node_id, options.warmup_calls, "warm").await?;
    let samples = round_trips(&mut op, &node_id, options.sequential, "seq").await?;
    let round_trip: Option<Percentiles> = percentiles(samples);

    let mut sockets = Vec::with_capacity(options.sockets);
    for _ in 0..options.sockets {
        sockets.push(operator(edge0, &token).await?);
    }
    let started = Instant::now();
    let until = started + options.duration;
    let pumps: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            tokio::spawn(pump(
                client,
                node_id.clone(),
                options.in_flight,
                until,
                format!("tp{index}"),
            ))
        })
        .collect();
    let (mut done, mut errors) = (0_u64, 0_u64);
    for pump in pumps {
        let (d, e) = pump.await??;
        done += d;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_second = done as f64 / elapsed;
    let p50 = round_trip.map(|p| p.p50);
    Ok(json!({
        "scenario": "node.invoke across two edges (Redis), node answering at once",
        "round_trip_ms": round_trip,
        "throughput": {
            "sockets": options.sockets,
            "in_flight_per_socket": options.in_flight,
            "window_s": round3(elapsed),
            "completed": done,
            "errors": errors,
            "invokes_per_s": round3(per_second),
        },
        "node_received": node.invokes_received(),
        "budgets": {
            "round_trip_p50_ms": BUDGET_ROUND_TRIP_P50_MS,
            "round_trip_p50_met": p50.is_some_and(|p| p <= BUDGET_ROUND_TRIP_P50_MS),
            "invokes_per_s": BUDGET_INVOKES_PER_S,
            "invokes_per_s_met": per_second >= BUDGET_INVOKES_PER_S,
        },
        "machine": {
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        },
    }))
}
