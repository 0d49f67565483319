//! `[timeouts]`: how long the server waits for its clients, in whole seconds in the file and as
//! [`Duration`]s once checked.
//!
//! Only the values live here; the timers that enforce them belong to `net` and the handlers.

use std::time::Duration;

use serde::Deserialize;

use super::{Bounds, Problem};
use crate::role::RoleSet;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;

/// The `[timeouts]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTimeouts {
    client_idle_secs: u64,
    server_idle_secs: u64,
    session_max_secs: u64,
    tls_handshake_secs: u64,
    write_secs: u64,
    call_answer_secs: u64,
    relay_join_secs: u64,
    search_cache_secs: u64,
}

impl Default for RawTimeouts {
    fn default() -> RawTimeouts {
        RawTimeouts {
            client_idle_secs: 60,
            server_idle_secs: 300,
            session_max_secs: 86_400,
            tls_handshake_secs: 10,
            write_secs: 30,
            call_answer_secs: 10,
            relay_join_secs: 30,
            search_cache_secs: 180,
        }
    }
}

/// Connection timeouts (`[timeouts]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Idle limit on ports that serve only client roles.
    pub client_idle: Duration,
    /// Idle limit on ports that serve primary or sr_neighbor.
    pub server_idle: Duration,
    /// No connection lives longer than this.
    pub session_max: Duration,
    /// Longest TLS handshake.
    pub tls_handshake: Duration,
    /// Longest wait for a peer to take one outgoing frame.
    pub write: Duration,
    /// How long a callee has to answer an IncomingCallNotification (spec: 10 s).
    pub call_answer: Duration,
    /// How long each relay party has to send its init message (spec: 30 s).
    pub relay_join: Duration,
    /// How long a connection's search results stay available to ProfileSearchPart (≥ 60 s).
    pub search_cache: Duration,
}

impl Timeouts {
    /// The idle timeout of a port: the larger one when it serves a server role (spec §6).
    pub(crate) fn idle_for(&self, roles: RoleSet) -> Duration {
        if roles.has_server_role() {
            self.server_idle
        } else {
            self.client_idle
        }
    }
}

/// Bounds of every `[timeouts]` key, in the order of [`RawTimeouts::values`].
const BOUNDS: [(&str, Bounds); 8] = [
    ("client_idle_secs", Bounds::new(1, DAY)),
    ("server_idle_secs", Bounds::new(1, DAY)),
    ("session_max_secs", Bounds::new(1, YEAR)),
    ("tls_handshake_secs", Bounds::new(1, 300)),
    ("write_secs", Bounds::new(1, 3600)),
    ("call_answer_secs", Bounds::new(1, 300)),
    ("relay_join_secs", Bounds::new(1, 300)),
    (
        "search_cache_secs",
        Bounds::new(60, DAY).because("spec §4.18: at least 60"),
    ),
];

impl RawTimeouts {
    /// Every value, in the order of [`BOUNDS`].
    fn values(&self) -> [u64; 8] {
        [
            self.client_idle_secs,
            self.server_idle_secs,
            self.session_max_secs,
            self.tls_handshake_secs,
            self.write_secs,
            self.call_answer_secs,
            self.relay_join_secs,
            self.search_cache_secs,
        ]
    }
}

/// Checks every `[timeouts]` key and converts the seconds to durations.
pub(super) fn check(raw: &RawTimeouts, problems: &mut Vec<Problem>) -> Timeouts {
    for ((key, bounds), value) in BOUNDS.iter().zip(raw.values()) {
        bounds.check(&format!("timeouts.{key}"), value, problems);
    }
    Timeouts {
        client_idle: Duration::from_secs(raw.client_idle_secs),
        server_idle: Duration::from_secs(raw.server_idle_secs),
        session_max: Duration::from_secs(raw.session_max_secs),
        tls_handshake: Duration::from_secs(raw.tls_handshake_secs),
        write: Duration::from_secs(raw.write_secs),
        call_answer: Duration::from_secs(raw.call_answer_secs),
        relay_join: Duration::from_secs(raw.relay_join_secs),
        search_cache: Duration::from_secs(raw.search_cache_secs),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
    use super::super::tests::{assert_bounds, problems};
    use super::BOUNDS;
    use crate::role::{Role, RoleSet};

    #[test]
    fn defaults_and_idle_per_port() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        let timeouts = config.timeouts;
        assert_eq!(timeouts.client_idle, Duration::from_secs(60));
        assert_eq!(timeouts.server_idle, Duration::from_secs(300));
        assert_eq!(timeouts.call_answer, Duration::from_secs(10));
        assert_eq!(timeouts.relay_join, Duration::from_secs(30));
        let client = RoleSet::of(&[Role::ClCustomer]);
        assert_eq!(timeouts.idle_for(client), timeouts.client_idle);
        let server = RoleSet::of(&[Role::SrNeighbor, Role::ClCustomer]);
        assert_eq!(timeouts.idle_for(server), timeouts.server_idle);
    }

    #[test]
    fn every_key_is_bounded() {
        for (key, bounds) in BOUNDS {
            assert_bounds(&format!("timeouts.{key}"), bounds);
        }
    }

    #[test]
    fn search_cache_floor_cites_the_spec() {
        let found = problems("[timeouts]\nsearch_cache_secs = 59\n");
        assert_eq!(found[0].key, "timeouts.search_cache_secs");
        assert_eq!(
            found[0].message,
            "must be 60 to 86400, not 59 (spec §4.18: at least 60) (line 2)"
        );
    }
}
