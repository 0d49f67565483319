//! The server's one source of time.
//!
//! Decisions never read the clock themselves: the task that drives them reads [`Now`] once and
//! passes it down. Both readings follow tokio's clock, so a test that pauses or advances tokio's
//! time (`tokio::time::pause`, `start_paused`) moves every timer rule of an in-process server,
//! the wall-clock ones included, without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// One reading of the clock: monotonic for deadlines, wall time for timestamps on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic time, for deadlines and timeouts.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch, for timestamps that leave the process or are stored.
    pub unix_ms: i64,
}

impl Now {
    /// Reads the clock.
    pub(crate) fn read() -> Now {
        let instant = Instant::now();
        Now {
            instant,
            unix_ms: unix_ms_at(instant),
        }
    }
}

/// Milliseconds since the Unix epoch, as of the current tokio time.
pub fn unix_ms() -> i64 {
    unix_ms_at(Instant::now())
}

/// The wall clock, moved by however far tokio's clock is from the real monotonic one.
///
/// In production tokio's clock is the real one, so the skew is nil and the wall clock is read as
/// is (it may jump when NTP sets it after boot on a board without a real-time clock; that is
/// wanted). Under a paused test clock tokio's time stands still while real time runs on, so the
/// skew is what the test advanced minus the real time since the pause: the result follows the
/// test clock only.
fn unix_ms_at(tokio_now: Instant) -> i64 {
    let (tokio_now, real_now) = (tokio_now.into_std(), std::time::Instant::now());
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let moved = match tokio_now.checked_duration_since(real_now) {
        Some(ahead) => wall.saturating_add(ahead),
        None => wall.saturating_sub(real_now.saturating_duration_since(tokio_now)),
    };
    i64::try_from(moved.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_an_advanced_test_clock() {
        let before = Now::read();
        tokio::time::advance(Duration::from_secs(3_600)).await;
        let after = Now::read();
        assert_eq!(after.instant - before.instant, Duration::from_secs(3_600));
        // Real time passing while the test runs does not count (allowing for rounding to ms
        // and for the few microseconds between the clock readings, longer under emulation).
        let advanced = after.unix_ms - before.unix_ms;
        assert!((3_599_995..=3_600_005).contains(&advanced), "{advanced}");
    }

    #[test]
    fn unpaused_wall_time_is_the_system_clock() {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let ours = runtime.block_on(async { unix_ms() });
        assert!((ours - system).abs() < 5_000, "{ours} vs {system}");
    }
}
