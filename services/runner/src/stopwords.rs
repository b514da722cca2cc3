//! Stop commands: a chat message that consists only of an abort trigger aborts the
//! session's active run instead of being sent to the model (as OpenClaw does).
//!
//! A message is a stop command when, trimmed, lower-cased and stripped of trailing
//! punctuation, it is `/stop` or one of the trigger words. Anything longer ("stop
//! the music") is an ordinary message.

const TRIGGERS: &[&str] = &[
    "/stop",
    "stop",
    "abort",
    "esc",
    "wait",
    "exit",
    "interrupt",
    // Common translations, as the reference gateway accepts them.
    "arrête",
    "arrete",
    "detén",
    "deten",
    "stopp",
    "停止",
];

/// Whether `message` is a stop command.
pub fn is_stop_command(message: &str) -> bool {
    let trimmed = message
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation() && c != '/' || "。！？…".contains(c))
        .trim_end();
    if trimmed.is_empty() || trimmed.len() > 16 {
        return false;
    }
    let lowered = trimmed.to_lowercase();
    TRIGGERS.contains(&lowered.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_match_case_insensitively_with_punctuation() {
        for message in [
            "stop",
            "STOP",
            " Stop! ",
            "/stop",
            "/STOP.",
            "abort",
            "esc",
            "wait...",
            "exit?",
            "interrupt",
            "Arrête!",
            "停止",
            "stop!!",
        ] {
            assert!(is_stop_command(message), "{message:?}");
        }
    }

    #[test]
    fn ordinary_messages_do_not_match() {
        for message in [
            "",
            "  ",
            "stop the music",
            "stopping",
            "please stop",
            "/stopp",
            "!",
            "wait for me",
        ] {
            assert!(!is_stop_command(message), "{message:?}");
        }
    }
}
