//! The process's recent log lines in memory: a bounded ring of JSON lines fed
//! by a `tracing` layer ([`layer`]) that telemetry installs next to the log
//! output, read by `logs.tail` ([`LogRing::tail`]).
//!
//! Lines are addressed like a file read from its start: each line's cursor is
//! the count of bytes (line plus newline) logged before it, so a reader passes
//! the returned cursor back to get only what came after. A process has one ring
//! ([`global`]): there is no log aggregation between processes, so each one
//! answers only its own lines.
//!
//! Invariants: the ring holds at most [`MAX_LINES`] lines and [`MAX_BYTES`]
//! bytes (oldest dropped first), and one line at most [`MAX_LINE_BYTES`]; an
//! event is formatted before the lock is taken, and the lock is held only to
//! push or copy lines; the ring records exactly the events the log output
//! does (the same global filter), so what logs never carry (secrets) it never
//! carries either.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Most lines kept.
pub const MAX_LINES: usize = 5_000;
/// Most bytes kept.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Longest line kept; a longer message is cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What [`LogRing::tail`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Pass back to read what comes after these lines.
    pub cursor: u64,
    /// Bytes logged since the process started.
    pub size: u64,
    /// Oldest first.
    pub lines: Vec<String>,
    /// Lines between the cursor (or the start) and these were left out.
    pub truncated: bool,
    /// The cursor lay beyond what this process ever logged (another
    /// process's, or one from before a restart): reading started over.
    pub reset: bool,
}

struct Ring {
    lines: VecDeque<(u64, String)>,
    bytes: usize,
    /// Bytes ever logged (the cursor after the newest line).
    end: u64,
}

/// A bounded ring of log lines.
pub struct LogRing {
    ring: Mutex<Ring>,
    max_lines: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRing").finish_non_exhaustive()
    }
}

impl Default for LogRing {
    fn default() -> Self {
        Self::new(MAX_LINES, MAX_BYTES)
    }
}

impl LogRing {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                end: 0,
            }),
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one line (without its newline).
    pub fn push(&self, line: String) {
        let len = line.len() + 1;
        let mut ring = self.lock();
        let at = ring.end;
        ring.end += len as u64;
        ring.bytes += len;
        ring.lines.push_back((at, line));
        while ring.lines.len() > self.max_lines || ring.bytes > self.max_bytes {
            match ring.lines.pop_front() {
                Some((_, old)) => ring.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The newest lines after `cursor` (all kept lines when `None`), at most
    /// `limit` of them and `max_bytes` in all (newest kept).
    pub fn tail(&self, cursor: Option<u64>, limit: usize, max_bytes: usize) -> Tail {
        let ring = self.lock();
        let reset = cursor.is_some_and(|cursor| cursor > ring.end);
        let from = cursor.filter(|_| !reset).unwrap_or(0);
        let mut lines = Vec::new();
        let mut bytes = 0;
        let mut truncated = false;
        for (at, line) in ring.lines.iter().rev() {
            if *at < from {
                break;
            }
            if lines.len() >= limit || bytes + line.len() + 1 > max_bytes {
                truncated = true;
                break;
            }
            bytes += line.len() + 1;
            lines.push(line.clone());
        }
        // Lines after the cursor already dropped from the ring.
        if let (Some(cursor), Some((oldest, _))) = (cursor, ring.lines.front())
            && !reset
            && cursor < *oldest
        {
            truncated = true;
        }
        lines.reverse();
        Tail {
            cursor: ring.end,
            size: ring.end,
            lines,
            truncated,
            reset,
        }
    }
}

/// The ring of this process.
pub fn global() -> &'static LogRing {
    static RING: OnceLock<LogRing> = OnceLock::new();
    RING.get_or_init(LogRing::default)
}

/// A layer that records every event it sees in [`global`], as one JSON object
/// per line: `{time, level, target, message?, <fields>…, span?}`.
pub fn layer() -> RingLayer {
    RingLayer { ring: global() }
}

/// See [`layer`].
pub struct RingLayer {
    ring: &'static LogRing,
}

impl<S> Layer<S> for RingLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("time".into(), Value::from(rfc3339_now()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        line.extend(fields.0);
        if let Some(span) = cx.event_span(event) {
            let names: Vec<&str> = span.scope().from_root().map(|s| s.name()).collect();
            line.insert("span".into(), Value::from(names.join(":")));
        }
        let mut text = Value::Object(line).to_string();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            // Still one JSON value: the cut object as a string.
            text = Value::from(&text[..cut]).to_string();
        }
        self.ring.push(text);
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// Now as RFC 3339 UTC with milliseconds.
fn rfc3339_now() -> String {
    let ms = crate::clock::now_ms();
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_follow_cursors_and_bounds() {
        let ring = LogRing::new(3, 1024);
        assert_eq!(ring.tail(None, 10, 1000).lines, Vec::<String>::new());
        for n in 0..5 {
            ring.push(format!("line{n}"));
        }
        // Only the last three are kept; `line0` and `line1` were dropped.
        let all = ring.tail(None, 10, 1000);
        assert_eq!(all.lines, ["line2", "line3", "line4"]);
        assert_eq!(all.size, 30);
        assert_eq!(all.cursor, 30);
        assert!(!all.truncated && !all.reset);
        // The limit keeps the newest.
        let two = ring.tail(None, 2, 1000);
        assert_eq!(two.lines, ["line3", "line4"]);
        assert!(two.truncated);
        // So does the byte budget.
        assert_eq!(ring.tail(None, 10, 12).lines, ["line3", "line4"]);
        // After a cursor, only newer lines.
        ring.push("line5".into());
        let next = ring.tail(Some(all.cursor), 10, 1000);
        assert_eq!(next.lines, ["line5"]);
        assert!(!next.truncated);
        assert_eq!(next.cursor, 36);
        // A cursor whose lines were dropped: truncated; beyond the end: reset.
        assert!(ring.tail(Some(0), 10, 1000).truncated);
        let reset = ring.tail(Some(1_000), 10, 1000);
        assert!(reset.reset);
        assert_eq!(reset.lines.len(), 3);
    }

    #[test]
    fn the_byte_bound_holds() {
        let ring = LogRing::new(100, 20);
        for n in 0..10 {
            ring.push(format!("{n:08}"));
        }
        let tail = ring.tail(None, 100, 1000);
        assert_eq!(tail.lines, ["00000008", "00000009"]);
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
