//! Model failover: which of a run's models to call next, and for how long a
//! model that failed is left alone.
//!
//! A run's models are its agent's model (or the provider's) followed by the
//! agent's fallbacks, in order, without repeats. A retryable failure (connect
//! errors, broken streams, timeouts before any output, 429, 5xx, overloaded)
//! cools the model down for the provider's `Retry-After`, or for
//! [`DEFAULT_COOLDOWN`]; the run moves on to the next model that is not
//! cooling down. When every model is, the run waits for the first whose
//! provider asked for a `Retry-After` (within its deadline and [`MAX_WAIT`]),
//! so a `Retry-After` is honoured, never hammered; a model that failed without
//! one is not waited for. At most [`MAX_ATTEMPTS`] calls per run.
//! Cooldowns are shared by every run of the runner process, so the next run
//! skips a model that just failed; a success clears the model's cooldown.
//!
//! Invariant: the table holds at most [`MAX_COOLING`] models; expired entries
//! are dropped as new ones come.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::{ProviderError, ProviderErrorKind};

/// How long a model is left alone after a failure that named no wait.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

/// Longest cooldown (a `Retry-After` beyond it is cut to it).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// Calls of one run before it gives up, whatever its model list.
pub const MAX_ATTEMPTS: usize = 4;

/// Longest a run waits for a cooling model; a model that asks for more is
/// reported as failed at once, with its `Retry-After`.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

const MAX_COOLING: usize = 1024;

/// Whether another model (or a later try) may succeed where this failed.
pub fn is_retryable(error: &ProviderError) -> bool {
    matches!(
        error.kind,
        ProviderErrorKind::RateLimit
            | ProviderErrorKind::Server
            | ProviderErrorKind::Network
            | ProviderErrorKind::Timeout
    )
}

/// The models of a run, in the order they are tried.
pub fn candidates(primary: &str, fallbacks: &[String]) -> Vec<String> {
    let mut models: Vec<String> = Vec::with_capacity(fallbacks.len() + 1);
    for model in std::iter::once(primary).chain(fallbacks.iter().map(String::as_str)) {
        let model = model.trim();
        if !model.is_empty() && !models.iter().any(|known| known == model) {
            models.push(model.to_owned());
        }
    }
    models
}

/// What to call next.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// This model, now.
    Now(String),
    /// Every model is cooling down: this one, whose provider asked to wait,
    /// is free first, at this instant.
    At(String, Instant),
    /// Every model is cooling down, none at its provider's request: the first
    /// is free at this instant.
    Cooling(Instant),
}

/// Until when a model is left alone, and whether its provider asked for it.
#[derive(Debug, Clone, Copy)]
struct Cooling {
    until: Instant,
    asked: bool,
}

/// Models that failed recently, and until when they are left alone.
#[derive(Debug, Default)]
pub struct Cooldowns {
    until: Mutex<HashMap<String, Cooling>>,
}

impl Cooldowns {
    /// The first of `models` not cooling down at `now`, else the one free
    /// first. `None` only for an empty list.
    pub fn pick(&self, models: &[String], now: Instant) -> Option<Pick> {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let mut asked: Option<(&String, Instant)> = None;
        let mut free_at: Option<Instant> = None;
        for model in models {
            match until.get(model) {
                Some(cooling) if cooling.until > now => {
                    let at = cooling.until;
                    if cooling.asked && asked.is_none_or(|(_, best)| at < best) {
                        asked = Some((model, at));
                    }
                    free_at = Some(free_at.map_or(at, |best| best.min(at)));
                }
                _ => return Some(Pick::Now(model.clone())),
            }
        }
        match (asked, free_at) {
            (Some((model, at)), _) => Some(Pick::At(model.clone(), at)),
            (None, Some(at)) => Some(Pick::Cooling(at)),
            (None, None) => None,
        }
    }

    /// Leaves `model` alone after `error`: for its `Retry-After`, else the default.
    pub fn cool(&self, model: &str, error: &ProviderError, now: Instant) {
        let wait = error
            .retry_after_ms
            .map_or(DEFAULT_COOLDOWN, Duration::from_millis)
            .min(MAX_COOLDOWN);
        let cooling = Cooling {
            until: now + wait,
            asked: error.retry_after_ms.is_some(),
        };
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if until.len() >= MAX_COOLING {
            until.retain(|_, cooling| cooling.until > now);
        }
        if until.len() < MAX_COOLING {
            until.insert(model.to_owned(), cooling);
        }
    }

    /// `model` answered: it is usable again.
    pub fn clear(&self, model: &str) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.remove(model);
    }
}

/// The failures of one run, in order, for its error message.
#[derive(Debug, Default)]
pub struct Tried {
    failures: Vec<(String, ProviderError)>,
}

impl Tried {
    pub fn push(&mut self, model: &str, error: ProviderError) {
        self.failures.push((model.to_owned(), error));
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// One error naming every model tried and why it failed; its kind (and
    /// `Retry-After`) is the last failure's.
    pub fn into_error(mut self, last: Option<(&str, ProviderError)>) -> ProviderError {
        if let Some((model, error)) = last {
            self.push(model, error);
        }
        let Some((_, final_error)) = self.failures.last() else {
            return ProviderError::new(ProviderErrorKind::Unknown, "no model was called");
        };
        // Each model once, with its last failure and how often it failed.
        let mut models: Vec<(&str, &ProviderError, usize)> = Vec::new();
        for (model, error) in &self.failures {
            match models
                .iter_mut()
                .find(|(known, _, _)| *known == model.as_str())
            {
                Some(entry) => {
                    entry.1 = error;
                    entry.2 += 1;
                }
                None => models.push((model, error, 1)),
            }
        }
        if models.len() == 1 {
            return final_error.clone();
        }
        let listed: Vec<String> = models
            .iter()
            .map(|(model, error, times)| match times {
                1 => format!("{model}: {}", error.message),
                _ => format!("{model}, {times} tries: {}", error.message),
            })
            .collect();
        let mut error = ProviderError::new(
            final_error.kind,
            format!("every model failed ({})", listed.join("; ")),
        );
        error.retry_after_ms = final_error.retry_after_ms;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ProviderErrorKind, retry_after_ms: Option<u64>) -> ProviderError {
        let mut error = ProviderError::new(kind, format!("{kind:?}"));
        error.retry_after_ms = retry_after_ms;
        error
    }

    #[test]
    fn candidates_keep_order_and_drop_repeats() {
        let fallbacks = [
            "b".to_owned(),
            "a".to_owned(),
            " ".to_owned(),
            "c".to_owned(),
        ];
        assert_eq!(candidates("a", &fallbacks), ["a", "b", "c"]);
        assert!(candidates("", &[]).is_empty());
    }

    #[test]
    fn cooling_models_are_skipped_until_their_time() {
        let cooldowns = Cooldowns::default();
        let models = candidates("a", &["b".to_owned()]);
        let now = Instant::now();
        assert_eq!(cooldowns.pick(&models, now), Some(Pick::Now("a".into())));
        cooldowns.cool("a", &error(ProviderErrorKind::RateLimit, Some(2_000)), now);
        assert_eq!(cooldowns.pick(&models, now), Some(Pick::Now("b".into())));
        cooldowns.cool("b", &error(ProviderErrorKind::Server, None), now);
        let a_free = now + Duration::from_secs(2);
        assert_eq!(
            cooldowns.pick(&models, now),
            Some(Pick::At("a".into(), a_free))
        );
        assert_eq!(cooldowns.pick(&models, a_free), Some(Pick::Now("a".into())));
        cooldowns.clear("b");
        assert_eq!(cooldowns.pick(&models, now), Some(Pick::Now("b".into())));
        cooldowns.cool(
            "a",
            &error(ProviderErrorKind::RateLimit, Some(3_600_000)),
            now,
        );
        assert_eq!(
            cooldowns.pick(&["a".to_owned()], now),
            Some(Pick::At("a".into(), now + MAX_COOLDOWN))
        );
        assert_eq!(cooldowns.pick(&[], now), None);
    }

    #[test]
    fn only_transient_failures_fail_over() {
        for kind in [
            ProviderErrorKind::RateLimit,
            ProviderErrorKind::Server,
            ProviderErrorKind::Network,
            ProviderErrorKind::Timeout,
        ] {
            assert!(is_retryable(&error(kind, None)), "{kind:?}");
        }
        for kind in [
            ProviderErrorKind::Auth,
            ProviderErrorKind::ContextLength,
            ProviderErrorKind::Refusal,
            ProviderErrorKind::Protocol,
            ProviderErrorKind::Unknown,
        ] {
            assert!(!is_retryable(&error(kind, None)), "{kind:?}");
        }
    }

    #[test]
    fn the_error_names_every_model_tried() {
        let mut tried = Tried::default();
        tried.push("a", error(ProviderErrorKind::RateLimit, Some(1_000)));
        let combined = tried.into_error(Some(("b", error(ProviderErrorKind::Server, None))));
        assert_eq!(combined.kind, ProviderErrorKind::Server);
        assert_eq!(
            combined.message,
            "every model failed (a: RateLimit; b: Server)"
        );
        let single = Tried::default().into_error(Some(("a", error(ProviderErrorKind::Auth, None))));
        assert_eq!(single.message, "Auth");
    }
}
