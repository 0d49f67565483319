//! A gate for log lines that a remote peer can cause: at most a fixed number per minute pass,
//! and the next one to pass says how many were held back. Nothing a peer sends can then write
//! the journal (often on an SD card) faster than that rate. [`peer_text`] makes text a peer
//! chose safe to log or to pass on: bounded, and without control characters that could forge a
//! log line or colour a terminal.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// `text` from a peer, with every control character written as an escape (`\n`, `\u{1b}`),
/// shortened to at most `max_chars` characters of that (an ellipsis marks a cut, the one
/// character more).
pub(crate) fn peer_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 8));
    let mut count = 0;
    for c in text.chars() {
        let escaped = c.is_control().then(|| c.escape_default());
        let len = escaped.clone().map_or(1, Iterator::count);
        if count + len > max_chars {
            out.push('…');
            break;
        }
        count += len;
        match escaped {
            Some(escape) => out.extend(escape),
            None => out.push(c),
        }
    }
    out
}

/// One kind of log line and its rate.
#[derive(Debug)]
pub(crate) struct LogGate {
    per_minute: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: Option<Instant>,
    passed: u32,
    held_back: u64,
}

impl LogGate {
    /// A gate letting `per_minute` lines through per minute.
    pub(crate) const fn new(per_minute: u32) -> LogGate {
        LogGate {
            per_minute,
            state: Mutex::new(State {
                window: None,
                passed: 0,
                held_back: 0,
            }),
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` when it may, `n` being the lines held
    /// back since the last one that passed.
    pub(crate) fn pass(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .window
            .is_none_or(|start| now.duration_since(start) >= MINUTE)
        {
            state.window = Some(now);
            state.passed = 0;
        }
        if state.passed >= self.per_minute {
            state.held_back = state.held_back.saturating_add(1);
            return None;
        }
        state.passed += 1;
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_the_rate_and_reports_what_it_held_back() {
        let gate = LogGate::new(3);
        let start = Instant::now();
        let passed: Vec<_> = (0..1000).filter_map(|_| gate.pass(start)).collect();
        assert_eq!(passed, vec![0, 0, 0]);
        assert_eq!(gate.pass(start + Duration::from_secs(30)), None);
        assert_eq!(gate.pass(start + MINUTE), Some(998));
    }

    #[test]
    fn peer_text_is_bounded_and_cannot_forge_a_line() {
        let forged = "ok\n2026-12-07T00:00:00Z ERROR forged\u{1b}[31m";
        let safe = peer_text(forged, 200);
        assert!(!safe.chars().any(char::is_control), "{safe}");
        assert!(safe.starts_with("ok\\n2026"));
        assert_eq!(
            peer_text(&"x".repeat(60_000), 10),
            format!("{}…", "x".repeat(10))
        );
        // Escapes count too: a text of control characters stays as short.
        let escapes = peer_text(&"\u{1b}".repeat(1_000), 20);
        assert_eq!(escapes, format!("{}…", "\\u{1b}".repeat(3)));
    }
}
