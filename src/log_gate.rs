//! A gate for log lines that a remote peer can cause: at most a fixed number per minute pass,
//! and the next one to pass says how many were held back. Nothing a peer sends can then write
//! the journal (often on an SD card) faster than that rate.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// One kind of log line and its rate.
#[derive(Debug)]
pub struct LogGate {
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
    pub const fn new(per_minute: u32) -> LogGate {
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
    pub fn pass(&self, now: Instant) -> Option<u64> {
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
}
