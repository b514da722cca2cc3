//! Token coalescing: gathers assistant text for a short window so a run publishes
//! one delta per window instead of one bus message per token.
//!
//! Invariants: the concatenation of every delta returned by [`Coalescer::flush`]
//! is exactly the text pushed so far (nothing lost, nothing repeated), and each
//! delta's `offset` is the byte length of the text published before it.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Coalescer {
    window: Duration,
    max_pending_bytes: usize,
    /// The whole assistant text so far.
    text: String,
    /// Bytes of `text` already handed out as deltas.
    flushed: usize,
    /// When the pending text must be flushed; `None` while nothing is pending.
    deadline: Option<Instant>,
}

/// One coalesced piece of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    pub text: String,
    pub offset: u64,
}

impl Coalescer {
    pub fn new(window: Duration, max_pending_bytes: usize) -> Self {
        Self {
            window,
            max_pending_bytes: max_pending_bytes.max(1),
            text: String::new(),
            flushed: 0,
            deadline: None,
        }
    }

    /// Adds text. Returns true when enough is pending that it should be flushed now.
    pub fn push(&mut self, piece: &str, now: Instant) -> bool {
        if piece.is_empty() {
            return false;
        }
        if self.deadline.is_none() {
            self.deadline = Some(now + self.window);
        }
        self.text.push_str(piece);
        self.text.len() - self.flushed >= self.max_pending_bytes || self.window.is_zero()
    }

    /// When the pending text is due, if any is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes the pending text as one delta (`None` when nothing is pending).
    pub fn flush(&mut self) -> Option<Delta> {
        self.deadline = None;
        if self.flushed == self.text.len() {
            return None;
        }
        let delta = Delta {
            text: self.text[self.flushed..].to_owned(),
            offset: self.flushed as u64,
        };
        self.flushed = self.text.len();
        Some(delta)
    }

    /// The whole text so far, flushed or not.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_reassemble_the_text_with_offsets() {
        let now = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(40), 1024);
        assert_eq!(coalescer.deadline(), None);
        assert!(!coalescer.push("Hé", now));
        assert!(!coalescer.push("llo", now));
        assert_eq!(coalescer.deadline(), Some(now + Duration::from_millis(40)));
        let first = coalescer.flush().expect("pending");
        assert_eq!(
            first,
            Delta {
                text: "Héllo".into(),
                offset: 0
            }
        );
        assert_eq!(coalescer.flush(), None);
        assert_eq!(coalescer.deadline(), None);
        coalescer.push(" world", now);
        let second = coalescer.flush().expect("pending");
        assert_eq!(second.offset, "Héllo".len() as u64);
        assert_eq!(format!("{}{}", first.text, second.text), coalescer.text());
    }

    #[test]
    fn empty_pieces_do_not_arm_the_window() {
        let mut coalescer = Coalescer::new(Duration::from_millis(40), 1024);
        coalescer.push("", Instant::now());
        assert_eq!(coalescer.deadline(), None);
        assert_eq!(coalescer.flush(), None);
    }

    #[test]
    fn size_cap_asks_for_an_early_flush() {
        let mut coalescer = Coalescer::new(Duration::from_secs(10), 8);
        assert!(!coalescer.push("1234", Instant::now()));
        assert!(coalescer.push("5678", Instant::now()));
    }
}
