//! The load harness at CI scale, so it cannot rot: a local process cluster with
//! two edges, 200 idle sockets, a few streaming runs for about 3 s, and a latency
//! run with a 5 ms coalescing window; and the tool-turn scenario on the embedded
//! gateway with a few turns. Asserts that the JSON reports are complete and
//! sane; the figures themselves are benchmarks, not timed tests.

use std::time::Duration;

use clawgate_tests::bench::tool_turn::{ToolTarget, ToolTurnOptions};
use clawgate_tests::bench::{self, Config, Mode};
use serde_json::Value;

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a number in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_reports_complete_and_sane_json() -> anyhow::Result<()> {
    let config = Config {
        mode: Mode::All,
        sockets: 200,
        edges: 2,
        stream_sockets: 40,
        runs: 3,
        tokens_per_second: 100.0,
        tokens_per_run: 60,
        throughput_latency_sockets: 4,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        hold: Duration::from_millis(500),
        coalesce_ms: 40,
        latency_coalesce_ms: vec![5],
        latency_sockets: 6,
        latency_runs: 3,
        latency_tokens_per_second: 50.0,
        handshakes: 20,
        redis_url: std::env::var("CLAWGATE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ..Config::default()
    };
    let report = bench::run(&config).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);

    // Headline fields.
    assert_eq!(report["sockets_held"], 200, "{report:#}");
    assert!(number(&report, "/edge_rss_per_idle_socket_bytes").is_finite());
    assert!(number(&report, "/delivered_frames_per_s") > 0.0);
    assert_eq!(report["coalesce_ms"], 40);
    assert_eq!(report["latency_coalesce_ms"], 5);
    let p50 = number(&report, "/latency_ms/p50");
    let p99 = number(&report, "/latency_ms/p99");
    let max = number(&report, "/latency_ms/max");
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report:#}");
    assert!(number(&report, "/latency_ms/samples") > 0.0);
    assert!(number(&report, "/machine/cores") >= 1.0);
    for field in [
        "sockets",
        "edges",
        "runs",
        "tokens_per_second",
        "duration_s",
    ] {
        assert!(
            report["parameters"][field].is_number(),
            "parameters.{field}"
        );
    }
    for budget in [
        "edge_rss_per_idle_socket_bytes",
        "delivered_frames_per_s",
        "latency_p99_ms",
        "handshake_token_p50_ms",
        "handshake_device_signed_p50_ms",
    ] {
        assert!(
            report["budgets"][budget]["measured"].is_number(),
            "{budget}"
        );
    }

    // Phase details.
    let idle = &report["phases"]["idle"];
    assert_eq!(idle["connect_failures"], 0, "{idle:#}");
    let throughput = &report["phases"]["throughput"];
    assert_eq!(throughput["sockets_connected"], 40);
    assert_eq!(throughput["sockets_ended_early"], 0, "{throughput:#}");
    assert!(
        number(throughput, "/runs_finished") >= 1.0,
        "{throughput:#}"
    );
    assert_eq!(throughput["run_errors"], 0, "{throughput:#}");
    assert_eq!(throughput["unmatched_tokens"], 0, "{throughput:#}");
    assert!(number(throughput, "/model_tokens_per_s") > 0.0);
    assert!(number(throughput, "/model_stream_rate_per_run") > 0.0);
    assert!(
        throughput["cpu"]["edge0"]["cpu_s"].is_number(),
        "{throughput:#}"
    );
    let latency = &report["phases"]["latency"][0];
    assert_eq!(latency["coalesce_ms"], 5);
    assert!(number(latency, "/delivered_frames_per_s") > 0.0);
    assert_eq!(latency["unmatched_tokens"], 0, "{latency:#}");
    // Every variant of the handshake phase: both versions, token and signed.
    let handshakes = report["phases"]["handshake"]
        .as_array()
        .expect("handshake phase");
    let names: Vec<&str> = handshakes
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "v3_token",
            "v4_token",
            "v3_device_signed",
            "v4_device_signed"
        ],
        "{report:#}"
    );
    for variant in handshakes {
        assert_eq!(variant["failures"], 0, "{variant:#}");
        assert_eq!(variant["latency_ms"]["samples"], 20, "{variant:#}");
        assert!(number(variant, "/latency_ms/p50") > 0.0, "{variant:#}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_turn_scenario_reports_every_turn_without_errors() -> anyhow::Result<()> {
    let config = Config {
        mode: Mode::ToolTurn,
        tool_turn: ToolTurnOptions {
            target: ToolTarget::Embedded,
            turns: 6,
            plain_turns: 4,
            warmup_turns: 2,
            concurrent_runs: 24,
            sockets: 4,
            ..ToolTurnOptions::default()
        },
        ..Config::default()
    };
    let report = bench::run(&config).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);

    assert_eq!(report["mode"], "tool-turn");
    assert_eq!(report["target"], "embedded");
    assert_eq!(report["parameters"]["tool_turn"]["turns"], 6);
    let tool = &report["phases"]["tool_turn"];
    assert_eq!(tool["target"], "embedded", "{tool:#}");
    for (kind, turns) in [("tool", 6.0), ("plain", 4.0)] {
        let stats = &tool["sequential"][kind];
        assert_eq!(number(stats, "/turns"), turns, "{stats:#}");
        assert_eq!(number(stats, "/ok"), turns, "{stats:#}");
        assert_eq!(stats["errors"], 0, "{stats:#}");
        let e2e = number(stats, "/end_to_end_ms/p50");
        let model = number(stats, "/model_ms/p50");
        let overhead = number(stats, "/overhead_ms/p50");
        assert!(e2e > 0.0 && model >= 0.0 && overhead > 0.0, "{stats:#}");
        assert!(overhead <= e2e, "{stats:#}");
        assert!(number(stats, "/overhead_ms/p95") <= number(stats, "/overhead_ms/p99"));
    }
    assert!(number(tool, "/sequential/tool_step_added_p50_ms").is_finite());

    let concurrent = &tool["concurrent"];
    assert_eq!(concurrent["runs"], 24, "{concurrent:#}");
    assert_eq!(concurrent["sockets_connected"], 4, "{concurrent:#}");
    assert_eq!(concurrent["users"], 4, "{concurrent:#}");
    assert_eq!(concurrent["stats"]["ok"], 24, "{concurrent:#}");
    assert_eq!(concurrent["stats"]["errors"], 0, "{concurrent:#}");
    assert_eq!(concurrent["sockets_ended_early"], 0, "{concurrent:#}");
    assert!(
        number(concurrent, "/peak_in_flight") >= 1.0,
        "{concurrent:#}"
    );
    assert!(number(concurrent, "/runs_per_s") > 0.0, "{concurrent:#}");
    assert!(number(concurrent, "/stats/overhead_ms/p99") > 0.0);

    let budgets = &report["budgets"];
    assert!(budgets["tool_turn_overhead_p50_ms"]["measured"].is_number());
    assert_eq!(budgets["tool_turn_concurrent_runs"]["measured"], 24);
    assert_eq!(budgets["tool_turn_concurrent_runs"]["errors"], 0);
    // 24 runs are below the budget's 500.
    assert_eq!(budgets["tool_turn_concurrent_runs"]["met"], false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_invoke_harness_reports_complete_and_sane_json() -> anyhow::Result<()> {
    use clawgate_tests::bench::node_invoke::{self, NodeBenchOptions};
    let options = NodeBenchOptions {
        warmup_calls: 10,
        sequential: 50,
        sockets: 2,
        in_flight: 4,
        duration: Duration::from_millis(500),
        ..NodeBenchOptions::default()
    };
    let report = node_invoke::run(&options).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let p50 = number(&report, "/round_trip_ms/p50");
    assert!(
        0.0 < p50 && p50 <= number(&report, "/round_trip_ms/max"),
        "{report:#}"
    );
    assert_eq!(number(&report, "/round_trip_ms/samples"), 50.0);
    assert!(number(&report, "/throughput/completed") > 0.0, "{report:#}");
    assert_eq!(number(&report, "/throughput/errors"), 0.0, "{report:#}");
    assert!(number(&report, "/throughput/invokes_per_s") > 0.0);
    assert!(number(&report, "/node_received") >= 60.0, "{report:#}");
    Ok(())
}
