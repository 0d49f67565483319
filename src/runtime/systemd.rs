//! Service-manager notifications for `Type=notify` units: `READY=1` once every listener is bound
//! and the store is open, `WATCHDOG=1` at half the unit's `WatchdogSec` together with a fresh
//! `STATUS=` line, `STOPPING=1` when shutdown begins.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is unset, so the same binary runs from a shell, a
//! container or a test. Only the runtime calls in here; the journal side of systemd lives in
//! [`super::logging`].

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::status::StatusSource;

/// Tells the service manager that the server is up; `status` shows in `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager that the server is shutting down.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often the status line is refreshed when the unit has no watchdog.
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// Pings the watchdog (when the unit has one) and refreshes the status line from `status` on
/// every tick until the process ends, and sends `STOPPING=1` as soon as `shutdown` is cancelled.
///
/// The pings come from a task on the server's own runtime, so a runtime that stops making
/// progress stops pinging, and systemd restarts the service.
pub async fn supervise(shutdown: CancellationToken, status: StatusSource) {
    let watchdog = ping_interval(sd_notify::watchdog_enabled());
    if let Some(period) = watchdog {
        tracing::debug!(?period, "pinging the systemd watchdog");
    }
    let mut ticker = tokio::time::interval(watchdog.unwrap_or(STATUS_REFRESH));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is at once; READY=1 carries the first status line.
    ticker.tick().await;
    let mut stopping_sent = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let line = if stopping_sent { None } else { status.line().await };
                let mut states = Vec::with_capacity(2);
                if watchdog.is_some() {
                    states.push(NotifyState::Watchdog);
                }
                if let Some(line) = &line {
                    states.push(NotifyState::Status(line));
                }
                send(&states);
            }
            () = shutdown.cancelled(), if !stopping_sent => {
                stopping();
                stopping_sent = true;
            }
        }
    }
}

/// How often to ping: half of the watchdog timeout systemd gave us (its own advice), or `None`
/// when there is no watchdog.
fn ping_interval(watchdog: Option<Duration>) -> Option<Duration> {
    watchdog
        .map(|timeout| timeout / 2)
        .filter(|period| !period.is_zero())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_watchdog_timeout() {
        assert_eq!(
            ping_interval(Some(Duration::from_secs(30))),
            Some(Duration::from_secs(15))
        );
        assert_eq!(ping_interval(None), None);
        // WATCHDOG_USEC=0 would otherwise give a zero period, which tokio's interval rejects.
        assert_eq!(ping_interval(Some(Duration::ZERO)), None);
    }
}
