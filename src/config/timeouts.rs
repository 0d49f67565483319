//! `[timeouts]`: how long the server waits for its clients, in whole seconds in the file and as
//! [`Duration`]s once checked.
//!
//! Only the values live here; the timers that enforce them belong to `net` and the handlers.

use std::time::Duration;

use serde::Deserialize;

use super::Problem;
use crate::role::RoleSet;

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
    pub fn idle_for(&self, roles: RoleSet) -> Duration {
        if roles.has_server_role() {
            self.server_idle
        } else {
            self.client_idle
        }
    }
}

/// Checks every `[timeouts]` key and converts the seconds to durations.
pub(super) fn check(raw: &RawTimeouts, problems: &mut Vec<Problem>) -> Timeouts {
    let mut secs = |key: &str, value: u64| {
        if value == 0 || value > 365 * 86_400 {
            problems.push(Problem::new(
                format!("timeouts.{key}"),
                "must be 1 to 31536000 seconds",
            ));
        }
        Duration::from_secs(value)
    };
    let timeouts = Timeouts {
        client_idle: secs("client_idle_secs", raw.client_idle_secs),
        server_idle: secs("server_idle_secs", raw.server_idle_secs),
        session_max: secs("session_max_secs", raw.session_max_secs),
        tls_handshake: secs("tls_handshake_secs", raw.tls_handshake_secs),
        write: secs("write_secs", raw.write_secs),
        call_answer: secs("call_answer_secs", raw.call_answer_secs),
        relay_join: secs("relay_join_secs", raw.relay_join_secs),
        search_cache: secs("search_cache_secs", raw.search_cache_secs),
    };
    if raw.search_cache_secs < 60 {
        problems.push(Problem::new(
            "timeouts.search_cache_secs",
            "must be at least 60 (spec §4.18)",
        ));
    }
    timeouts
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
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
}
