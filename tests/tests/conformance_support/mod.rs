//! Shape comparison of server frames against frames recorded between the real
//! OpenClaw clients and the real OpenClaw gateway (`tests/reference/captures/`).
//!
//! A frame conforms when it has the recorded frame's fields with the same JSON
//! types, recursively (arrays: their first elements compared), and no field the
//! recording lacks. Every difference must be named by an [`Exception`] (a path
//! prefix and why clawgate differs there); an exception that no longer
//! matches a difference is itself a failure, so the list stays true.
//! Recorded `null` matches any type (OpenClaw sends `null` for "not set").

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

/// Why clawgate's frame differs from the recorded one under `path` (a prefix:
/// it covers the subtree).
#[derive(Debug, Clone, Copy)]
pub struct Exception {
    pub path: &'static str,
    pub why: &'static str,
    /// Whether it must explain something (a generated exception, one of a
    /// family applied under several paths, need not).
    pub required: bool,
}

pub const fn except(path: &'static str, why: &'static str) -> Exception {
    Exception {
        path,
        why,
        required: true,
    }
}

/// `field` under each of `prefixes`, for `why`; none of them need explain
/// anything (see [`Exception::required`]).
pub fn except_under(prefixes: &[&str], fields: &[&str], why: &'static str) -> Vec<Exception> {
    let mut out = Vec::new();
    for prefix in prefixes {
        for field in fields {
            let path: &'static str = Box::leak(format!("{prefix}/{field}").into_boxed_str());
            out.push(Exception {
                path,
                why,
                required: false,
            });
        }
    }
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences between `recorded` and `ours` under `path`, one line each.
pub fn differences(path: &str, recorded: &Value, ours: &Value, out: &mut Vec<(String, String)>) {
    match (recorded, ours) {
        (Value::Null, _) => {}
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let child = format!("{path}/{key}");
                match have.get(key) {
                    None => out.push((child, "missing".into())),
                    Some(ours) => differences(&child, value, ours, out),
                }
            }
            for key in have.keys().filter(|k| !want.contains_key(*k)) {
                out.push((format!("{path}/{key}"), "not in the recording".into()));
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            if let (Some(w), Some(h)) = (want.first(), have.first()) {
                differences(&format!("{path}/0"), w, h, out);
            } else if !want.is_empty() && have.is_empty() {
                out.push((
                    format!("{path}/0"),
                    "empty where the recording has items".into(),
                ));
            }
        }
        (want, have) if type_name(want) != type_name(have) => out.push((
            path.to_owned(),
            format!("{} instead of {}", type_name(have), type_name(want)),
        )),
        _ => {}
    }
}

/// Compares pairs of frames; fails listing every unexplained difference and
/// every exception that explained none.
#[derive(Default)]
pub struct Conformance {
    unexplained: Vec<String>,
    used: BTreeSet<&'static str>,
    checked: usize,
}

impl Conformance {
    /// Compares one frame, labelled `label` (the root of its paths).
    pub fn frame(&mut self, label: &str, recorded: &Value, ours: &Value, exceptions: &[Exception]) {
        self.checked += 1;
        let mut found = Vec::new();
        differences(label, recorded, ours, &mut found);
        for (path, what) in found {
            match exceptions
                .iter()
                .find(|e| path == e.path || path.starts_with(&format!("{}/", e.path)))
            {
                Some(exception) => {
                    self.used.insert(exception.path);
                }
                None => self.unexplained.push(format!("{path}: {what}")),
            }
        }
    }

    /// A recorded frame clawgate does not send at all.
    pub fn absent(&mut self, label: &str, exceptions: &[Exception]) {
        self.checked += 1;
        match exceptions.iter().find(|e| e.path == label) {
            Some(exception) => {
                self.used.insert(exception.path);
            }
            None => self
                .unexplained
                .push(format!("{label}: recorded, never sent by clawgate")),
        }
    }

    /// Panics with every unexplained difference and unused exception.
    pub fn finish(self, exceptions: &[Exception]) {
        let unused: Vec<&str> = exceptions
            .iter()
            .filter(|e| e.required)
            .map(|e| e.path)
            .filter(|p| !self.used.contains(p))
            .collect();
        assert!(self.checked > 0, "nothing was compared");
        assert!(
            self.unexplained.is_empty() && unused.is_empty(),
            "unexplained differences:\n  {}\nexceptions that explain nothing (remove them):\n  {}",
            self.unexplained.join("\n  "),
            unused.join("\n  "),
        );
    }
}

/// A capture file of `tests/reference/captures/`.
pub fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reference/captures")
        .join(name)
}

/// The records of a `.jsonl` capture.
pub fn records(name: &str) -> Vec<Value> {
    std::fs::read_to_string(capture(name))
        .expect("capture readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("capture line is JSON"))
        .collect()
}

/// The kind of an event frame, finer than its name: `chat.<state>`,
/// `agent.<stream>` (`agent.lifecycle.<phase>`), else the event name.
pub fn event_kind(frame: &Value) -> String {
    let event = frame["event"].as_str().unwrap_or_default();
    let payload = &frame["payload"];
    match event {
        "chat" => format!("chat.{}", payload["state"].as_str().unwrap_or("?")),
        "agent" => {
            let stream = payload["stream"].as_str().unwrap_or("?");
            if stream == "lifecycle" {
                format!(
                    "agent.lifecycle.{}",
                    payload["data"]["phase"].as_str().unwrap_or("?")
                )
            } else {
                format!("agent.{stream}")
            }
        }
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_found_and_nulls_match_anything() {
        let mut out = Vec::new();
        differences(
            "f",
            &json!({"a": 1, "b": {"c": "x"}, "d": [ {"e": true} ], "n": null}),
            &json!({"a": "1", "b": {}, "d": [ {"e": true, "z": 1} ], "n": 5, "extra": 0}),
            &mut out,
        );
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["f/a", "f/b/c", "f/d/0/z", "f/extra"]);
    }
}
