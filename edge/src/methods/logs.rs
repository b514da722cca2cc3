//! `logs.tail`: the recent log lines of this edge process, from the ring the
//! process's telemetry feeds ([`clawgate_runtime::log_ring`]).
//!
//! In a deployment of several processes each keeps its own ring and there is
//! no log aggregation service, so an edge answers its own lines only; `file`
//! says whose (`memory:<pod id>`). Params as the reference's: `cursor` (a byte
//! offset as returned by an earlier call), `limit` 1..5000 (default 500),
//! `maxBytes` 1..1000000 (default 250000). The result is `{file, cursor, size,
//! lines, truncated, reset}`: each line one JSON object as a string; `reset`
//! when the cursor is not one of this process's (another edge's, or from
//! before a restart), `truncated` when lines were left out (the bounds, or
//! lines already dropped from the ring).

use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::log_ring;
use serde_json::{Value, json};

use super::decl::{Method, Outcome, Request, Runs, Scope, job};
use crate::params::Style;
use crate::state::EdgeState;

const DEFAULT_LIMIT: i64 = 500;
const MAX_LIMIT: i64 = 5_000;
const DEFAULT_MAX_BYTES: i64 = 250_000;
const MAX_MAX_BYTES: i64 = 1_000_000;

pub const METHODS: &[Method] = &[Method::call("logs.tail", Some(Scope::Read), None, parse)];

/// A validated `logs.tail`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    cursor: Option<u64>,
    limit: usize,
    max_bytes: usize,
}

fn parse(request: &Request<'_>) -> Result<Box<dyn super::Job>, ServiceError> {
    let obj = request.closed(&["cursor", "limit", "maxBytes"])?;
    let invalid = |why| request.invalid(why);
    let cursor = obj.opt_int("cursor", 0, i64::MAX).map_err(invalid)?;
    let limit = obj.opt_int("limit", 1, MAX_LIMIT).map_err(invalid)?;
    let max_bytes = obj.opt_int("maxBytes", 1, MAX_MAX_BYTES).map_err(invalid)?;
    let size = |value: i64| usize::try_from(value).unwrap_or(usize::MAX);
    Ok(job(Tail {
        cursor: cursor.and_then(|c| u64::try_from(c).ok()),
        limit: size(limit.unwrap_or(DEFAULT_LIMIT)),
        max_bytes: size(max_bytes.unwrap_or(DEFAULT_MAX_BYTES)),
    }))
}

impl Runs for Tail {
    async fn execute(self, state: &EdgeState, _principal: &Principal, _style: Style) -> Outcome {
        Ok(tail(state, &self)).into()
    }
}

fn tail(state: &EdgeState, call: &Tail) -> Value {
    let read = log_ring::global().tail(call.cursor, call.limit, call.max_bytes);
    json!({
        "file": format!("memory:{}", state.config.pod_id),
        "cursor": read.cursor,
        "size": read.size,
        "lines": read.lines,
        "truncated": read.truncated,
        "reset": read.reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::decl::parse_with;

    fn refusal(params: Value) -> String {
        let principal = Principal::default();
        parse_with("logs.tail", &params, Style::Camel, &principal, parse)
            .err()
            .expect("refused")
            .message
    }

    #[test]
    fn bad_params_are_refused() {
        assert!(refusal(json!({"limit": 0})).starts_with("invalid logs.tail params: at /limit"));
        assert!(refusal(json!({"limit": 5001})).contains("/limit"));
        assert!(refusal(json!({"maxBytes": 2_000_000})).contains("/maxBytes"));
        assert!(refusal(json!({"cursor": -1})).contains("/cursor"));
        assert!(refusal(json!({"follow": true})).contains("'follow'"));
        let principal = Principal::default();
        let ok = parse_with(
            "logs.tail",
            &json!({"limit": 3, "maxBytes": 250_000, "cursor": 10}),
            Style::Camel,
            &principal,
            parse,
        );
        assert!(ok.is_ok());
    }
}
