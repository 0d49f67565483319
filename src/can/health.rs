//! What the calls to the CAN node say about the link: whether the node answers, since when, and
//! the last call that failed. Every call through [`super::CanApi`] records its outcome (the
//! contact record, clients' objects, unpins, health checks), so operators see the node as it
//! is, not as one task last saw it.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::log_gate::peer_text;

/// Longest error text kept from the node (characters).
pub(crate) const MAX_ERROR_CHARS: usize = 200;

// 0: no call yet (the default).
const ANSWERS: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The link to the CAN node as the calls found it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: AtomicU8,
    changed_ms: AtomicI64,
    last_error: Mutex<Option<LastError>>,
}

/// The last call that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LastError {
    /// The API command, e.g. `pin/rm`.
    pub command: &'static str,
    /// What went wrong, bounded and without control characters.
    pub message: String,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

impl Health {
    /// Records whether the node answered a call at `now_ms`; true when this changed the state
    /// from unreachable to answering (the node is back).
    pub(crate) fn reached(&self, answered: bool, now_ms: i64) -> bool {
        let new = if answered { ANSWERS } else { UNREACHABLE };
        let old = self.state.swap(new, Ordering::SeqCst);
        if old != new {
            self.changed_ms.store(now_ms, Ordering::SeqCst);
        }
        old == UNREACHABLE && new == ANSWERS
    }

    /// Records a failed call.
    pub(crate) fn failed(&self, command: &'static str, message: &str, now_ms: i64) {
        let error = LastError {
            command,
            message: peer_text(message, MAX_ERROR_CHARS),
            at_ms: now_ms,
        };
        *self.lock() = Some(error);
    }

    /// Whether the node answered the last call: `None` before any call.
    pub(crate) fn answers(&self) -> Option<bool> {
        match self.state.load(Ordering::SeqCst) {
            ANSWERS => Some(true),
            UNREACHABLE => Some(false),
            _ => None,
        }
    }

    /// When [`Health::answers`] last changed (Unix ms), `None` before any call.
    pub(crate) fn changed_ms(&self) -> Option<i64> {
        let at = self.changed_ms.load(Ordering::SeqCst);
        (self.answers().is_some() && at != 0).then_some(at)
    }

    /// The last failed call, if any.
    pub(crate) fn last_error(&self) -> Option<LastError> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LastError>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_calls_and_a_return_is_reported_once() {
        let health = Health::default();
        assert_eq!(health.answers(), None);
        assert!(!health.reached(false, 10));
        assert_eq!(
            (health.answers(), health.changed_ms()),
            (Some(false), Some(10))
        );
        assert!(health.reached(true, 20));
        assert!(!health.reached(true, 30));
        assert_eq!(health.changed_ms(), Some(20));
        health.failed("pin/rm", "bad\nline", 40);
        let error = health.last_error().expect("recorded");
        assert_eq!(
            (error.command, error.message.as_str()),
            ("pin/rm", "bad\\nline")
        );
    }
}
