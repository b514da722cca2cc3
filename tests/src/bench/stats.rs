//! Latency arithmetic: matching received tokens to the instant the mock model
//! emitted them, and percentiles.
//!
//! Tokens are matched by `(run id, token index)`: a run's message is
//! `<run id> 1 2 3 … n`, the mock model echoes it word by word, so token `i` of
//! the reply is the text `i` and token 0 is the run id itself (see
//! [`crate::bench::client::run_message`]). Both the mock model and the clients live
//! in this process, so one monotonic clock ([`Instant`]) serves both ends.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::mock_model::TokenEmission;

/// One `agent` assistant frame seen by a latency-tracking socket.
#[derive(Debug, Clone)]
pub struct TokenReceipt {
    pub run_id: String,
    /// Token indices (≥ 1) the frame's `delta` carried.
    pub tokens: Vec<u32>,
    pub received_at: Instant,
}

/// When each token of each run was emitted, by run id.
#[derive(Debug, Default)]
pub struct EmissionIndex {
    runs: HashMap<String, Vec<Option<Instant>>>,
}

impl EmissionIndex {
    /// Indexes the mock model's record. Requests whose first token is not a run
    /// id of this tool are ignored.
    pub fn new(emissions: &[TokenEmission]) -> Self {
        let mut run_of_request: HashMap<usize, String> = HashMap::new();
        for emission in emissions.iter().filter(|e| e.index == 0) {
            run_of_request.insert(emission.request, emission.text.trim().to_owned());
        }
        let mut runs: HashMap<String, Vec<Option<Instant>>> = HashMap::new();
        for emission in emissions.iter().filter(|e| e.index > 0) {
            let Some(run) = run_of_request.get(&emission.request) else {
                continue;
            };
            let Ok(token) = emission.text.trim().parse::<usize>() else {
                continue;
            };
            let slots = runs.entry(run.clone()).or_default();
            if slots.len() <= token {
                slots.resize(token + 1, None);
            }
            slots[token] = Some(emission.at);
        }
        Self { runs }
    }

    pub fn emitted_at(&self, run_id: &str, token: u32) -> Option<Instant> {
        self.runs
            .get(run_id)?
            .get(usize::try_from(token).ok()?)
            .copied()
            .flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Mean streaming rate of the requests in `emissions` (tokens/s between each
/// request's first and last token); requests with fewer than two tokens are
/// skipped.
pub fn stream_rate(emissions: &[&TokenEmission]) -> Option<f64> {
    let mut spans: HashMap<usize, (Instant, Instant, usize)> = HashMap::new();
    for emission in emissions {
        let span = spans
            .entry(emission.request)
            .or_insert((emission.at, emission.at, 0));
        span.0 = span.0.min(emission.at);
        span.1 = span.1.max(emission.at);
        span.2 += 1;
    }
    let rates: Vec<f64> = spans
        .values()
        .filter(|(first, last, count)| *count >= 2 && last > first)
        .map(|(first, last, count)| (*count - 1) as f64 / last.duration_since(*first).as_secs_f64())
        .collect();
    (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Number of (socket, token) pairs measured.
    pub samples: usize,
}

/// Gateway-added latency of every received token: receive instant − emit
/// instant, in ms. Tokens received outside `[from, to]` are skipped; tokens
/// without an emission record are counted in the second value.
pub fn token_latencies(
    receipts: &[TokenReceipt],
    index: &EmissionIndex,
    from: Instant,
    to: Instant,
) -> (Vec<f64>, usize) {
    let mut latencies = Vec::new();
    let mut unmatched = 0;
    for receipt in receipts {
        if receipt.received_at < from || receipt.received_at > to {
            continue;
        }
        for &token in &receipt.tokens {
            match index.emitted_at(&receipt.run_id, token) {
                Some(emitted) => latencies.push(
                    receipt
                        .received_at
                        .saturating_duration_since(emitted)
                        .as_secs_f64()
                        * 1000.0,
                ),
                None => unmatched += 1,
            }
        }
    }
    (latencies, unmatched)
}

/// Nearest-rank percentiles; `None` without samples.
pub fn percentiles(mut values: Vec<f64>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let position = (p * values.len() as f64).ceil() as usize;
        values[position.clamp(1, values.len()) - 1]
    };
    Some(Percentiles {
        p50: round3(rank(0.50)),
        p90: round3(rank(0.90)),
        p95: round3(rank(0.95)),
        p99: round3(rank(0.99)),
        p999: round3(rank(0.999)),
        max: round3(values[values.len() - 1]),
        samples: values.len(),
    })
}

/// Rounds to three decimals (µs precision for ms values) for readable JSON.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn emission(request: usize, index: usize, text: &str, at: Instant) -> TokenEmission {
        TokenEmission {
            request,
            index,
            text: text.to_owned(),
            at,
            wall_clock: SystemTime::now(),
        }
    }

    #[test]
    fn matches_tokens_by_run_and_index() {
        let t0 = Instant::now();
        let emissions = vec![
            emission(0, 0, "run-a ", t0),
            emission(0, 1, "1 ", t0),
            emission(0, 2, "2", t0 + Duration::from_millis(10)),
            emission(1, 0, "run-b ", t0),
            emission(1, 1, "1 ", t0 + Duration::from_millis(5)),
        ];
        let index = EmissionIndex::new(&emissions);
        let receipts = vec![
            TokenReceipt {
                run_id: "run-a".into(),
                tokens: vec![1, 2],
                received_at: t0 + Duration::from_millis(12),
            },
            TokenReceipt {
                run_id: "run-b".into(),
                tokens: vec![1, 7],
                received_at: t0 + Duration::from_millis(6),
            },
        ];
        let (mut latencies, unmatched) =
            token_latencies(&receipts, &index, t0, t0 + Duration::from_secs(1));
        latencies.sort_by(f64::total_cmp);
        assert_eq!(unmatched, 1);
        assert_eq!(latencies.len(), 3);
        assert!((latencies[0] - 1.0).abs() < 1e-6);
        assert!((latencies[1] - 2.0).abs() < 1e-6);
        assert!((latencies[2] - 12.0).abs() < 1e-6);
    }

    #[test]
    fn percentiles_are_ordered() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(values).expect("samples");
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p95, 950.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(p.samples, 1000);
        assert!(percentiles(Vec::new()).is_none());
    }
}
