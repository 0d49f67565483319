//! Whether the local LOC and CAN daemons work, and since when, for the operator's status.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use crate::can::health::{Health as CanHealth, LastError as CanLastError};

/// The state of a link to a local daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not configured.
    Off,
    /// Configured, not working (yet).
    Down,
    /// Working.
    Up,
}

/// The states of the LOC and CAN links and when they last changed: the LOC task sets LOC's,
/// every call to the CAN node records CAN's ([`crate::can::health`]). Times are Unix
/// milliseconds, 0 for "not since the server started".
#[derive(Debug)]
pub(crate) struct LinkHealth {
    loc: AtomicU8,
    loc_changed_ms: AtomicI64,
    /// When LOC last gave the neighbourhood (Unix ms).
    loc_read_ms: AtomicI64,
    /// How old that may be while LOC counts as working: two refresh periods and a reply's wait.
    loc_fresh_ms: i64,
    can: Option<Arc<CanHealth>>,
    can_published_ms: AtomicI64,
}

impl LinkHealth {
    /// LOC down, or off when not configured (`loc_refresh`: how often it gives the
    /// neighbourhood); CAN as the calls to `can` find it (off without).
    pub(crate) fn new(loc_refresh: Option<Duration>, can: Option<Arc<CanHealth>>) -> LinkHealth {
        let loc = if loc_refresh.is_some() {
            LinkState::Down
        } else {
            LinkState::Off
        };
        let fresh = loc_refresh.unwrap_or_default() * 2 + Duration::from_secs(30);
        LinkHealth {
            loc: AtomicU8::new(loc as u8),
            loc_changed_ms: AtomicI64::new(0),
            loc_read_ms: AtomicI64::new(0),
            loc_fresh_ms: i64::try_from(fresh.as_millis()).unwrap_or(i64::MAX),
            can,
            can_published_ms: AtomicI64::new(0),
        }
    }

    /// Records whether LOC works, at `now_ms`: up when it registered our service and gave the
    /// neighbourhood (on every refresh too).
    pub(crate) fn set_loc(&self, up: bool, now_ms: i64) {
        if up {
            self.loc_read_ms.store(now_ms, Ordering::Relaxed);
        }
        set(&self.loc, &self.loc_changed_ms, up, now_ms);
    }

    /// Records that the server's IPNS record was published at `now_ms`.
    pub(crate) fn can_published(&self, now_ms: i64) {
        self.can_published_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The LOC link's state at `now_ms`: up only while the neighbourhood was given recently
    /// (a connection that stays open but stops answering counts as down).
    pub(crate) fn loc(&self, now_ms: i64) -> LinkState {
        let state = decode_state(self.loc.load(Ordering::Relaxed));
        let read = self.loc_read_ms.load(Ordering::Relaxed);
        if state == LinkState::Up && now_ms.saturating_sub(read) > self.loc_fresh_ms {
            return LinkState::Down;
        }
        state
    }

    /// The CAN link's state: up while the node answered the last call.
    pub(crate) fn can(&self) -> LinkState {
        match self.can.as_ref().map(|can| can.answers()) {
            None => LinkState::Off,
            Some(Some(true)) => LinkState::Up,
            Some(_) => LinkState::Down,
        }
    }

    /// The last CAN call that failed.
    pub(crate) fn can_last_error(&self) -> Option<CanLastError> {
        self.can.as_ref()?.last_error()
    }

    /// When the LOC link last changed state.
    pub(crate) fn loc_changed_ms(&self) -> Option<i64> {
        positive(&self.loc_changed_ms)
    }

    /// When the CAN link last changed state.
    pub(crate) fn can_changed_ms(&self) -> Option<i64> {
        self.can.as_ref()?.changed_ms()
    }

    /// When the server's IPNS record was last published.
    pub(crate) fn can_published_ms(&self) -> Option<i64> {
        positive(&self.can_published_ms)
    }
}

fn set(state: &AtomicU8, changed_ms: &AtomicI64, up: bool, now_ms: i64) {
    let new = state_of(up) as u8;
    if state.swap(new, Ordering::Relaxed) != new {
        changed_ms.store(now_ms, Ordering::Relaxed);
    }
}

fn positive(value: &AtomicI64) -> Option<i64> {
    Some(value.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
}

fn state_of(up: bool) -> LinkState {
    if up { LinkState::Up } else { LinkState::Down }
}

fn decode_state(value: u8) -> LinkState {
    [LinkState::Off, LinkState::Down, LinkState::Up]
        .into_iter()
        .find(|state| *state as u8 == value)
        .unwrap_or(LinkState::Down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_is_ok_only_while_it_gave_the_neighborhood_recently() {
        let links = LinkHealth::new(Some(Duration::from_secs(60)), None);
        assert_eq!(links.loc(0), LinkState::Down);
        links.set_loc(true, 1_000);
        assert_eq!(links.loc(1_000 + 150_000), LinkState::Up);
        // Two refresh periods and half a minute without a list: the link is not working.
        assert_eq!(links.loc(1_000 + 150_001), LinkState::Down);
        links.set_loc(true, 200_000);
        assert_eq!(links.loc(200_000), LinkState::Up);
        assert_eq!(LinkHealth::new(None, None).loc(0), LinkState::Off);
    }
}
