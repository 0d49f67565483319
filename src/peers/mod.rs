//! The server's outgoing side: the local LOC and CAN daemons, neighbour profile servers and
//! followers.
//!
//! Each peer runs as a task started by `runtime` under the server's tracker, reconnects with a
//! pause after failures, and puts a timeout on every wait. Nothing here serves a client socket.

pub(crate) mod can;
pub(crate) mod client;
pub(crate) mod loc;
pub(crate) mod receiving;
pub(crate) mod sharing;

use std::time::Duration;

/// The first wait after a failed initialisation or delivery; it doubles with each failure in a
/// row up to `action_retry_secs`.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The wait after `failures` failures in a row: [`FIRST_RETRY`] doubled each time, at most
/// `longest`.
pub(crate) fn retry_delay(failures: u32, longest: Duration) -> Duration {
    FIRST_RETRY
        .checked_mul(2_u32.saturating_pow(failures.min(20)))
        .map_or(longest, |delay| delay.min(longest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_five_seconds_up_to_the_longest_wait() {
        let longest = Duration::from_secs(600);
        let waits: Vec<u64> = (0..9).map(|n| retry_delay(n, longest).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(retry_delay(u32::MAX, longest), longest);
    }
}
