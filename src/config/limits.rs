//! `[limits]`: every bound on connections, stored data and memory, with its defaults.
//!
//! Only the numbers and their bounds live here; the semaphores and caps built from them belong
//! to `runtime` and the handlers.

use serde::Deserialize;

use super::{Bounds, MAX_HOSTED_IDENTITIES_CAP, MAX_IDENTITY_RELATIONS_CAP, Problem};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const HOSTED_CAP: u64 = MAX_HOSTED_IDENTITIES_CAP as u64;
const RELATIONS_CAP: u64 = MAX_IDENTITY_RELATIONS_CAP as u64;

/// Resource limits (`[limits]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open TCP connections over all ports.
    pub max_connections: u32,
    /// Hosted identities, at most 20000 (spec §6).
    pub max_hosted_identities: u32,
    /// Relationship cards per identity, at most 2000 (spec §4.20).
    pub max_identity_relations: u32,
    /// Servers that may follow this one.
    pub max_follower_servers: u32,
    /// Neighbour servers this one follows.
    pub max_neighbors: u32,
    /// Neighbourhood initialisations served at the same time.
    pub neighborhood_init_parallelism: u32,
    /// Bytes of incoming frames held in memory at once, over all connections.
    pub max_inflight_bytes: u32,
    /// Frames waiting to be written on one connection. Relays need room for 20 deliveries and
    /// 20 acknowledgements (spec §5.5), so the default leaves margin above 40.
    pub connection_queue_frames: u32,
    /// Calls (relays) alive at the same time, from ringing to teardown; at least 1.
    pub max_relays: u32,
    /// Bytes of search results cached for ProfileSearchPart, over all connections; at least
    /// 64 KiB.
    pub search_cache_bytes: u32,
    /// Open connections from one IP address; a household behind one NAT shares it.
    pub max_connections_per_address: u32,
    /// RegisterHosting requests from one IP address in an hour that passed their checks and
    /// reached the database.
    pub registrations_per_address_per_hour: u32,
    /// Neighbourhood initialisations that followers from one IP address may start in an hour
    /// (a restarted follower starts again; one that starts without end is refused).
    pub follower_starts_per_address_per_hour: u32,
    /// ProfileSearch requests one connection may start in a second.
    pub searches_per_connection_per_sec: u32,
    /// Bytes of incoming frames one IP address may hold while they arrive, of
    /// `max_inflight_bytes`; at least one whole frame. Unset: 4 MiB, or the whole budget when
    /// that is smaller (see [`Limits::inflight_share`]).
    pub max_inflight_bytes_per_address: Option<u32>,
    /// Whether clients on loopback addresses (this machine, or a local proxy that makes every
    /// client look local) are exempt from the five per-client limits above.
    pub exempt_loopback: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1000,
            max_hosted_identities: 10_000,
            max_identity_relations: 100,
            max_follower_servers: 200,
            max_neighbors: 110,
            neighborhood_init_parallelism: 10,
            max_inflight_bytes: 16 * 1024 * 1024,
            connection_queue_frames: 64,
            max_relays: 100,
            search_cache_bytes: 4 * 1024 * 1024,
            max_connections_per_address: 100,
            registrations_per_address_per_hour: 60,
            follower_starts_per_address_per_hour: 20,
            searches_per_connection_per_sec: 10,
            max_inflight_bytes_per_address: None,
            exempt_loopback: true,
        }
    }
}

/// Bounds of every `[limits]` key, in the order of [`Limits::values`].
const BOUNDS: [(&str, Bounds); 15] = [
    ("max_connections", Bounds::new(1, 1_000_000)),
    (
        "max_hosted_identities",
        Bounds::new(1, HOSTED_CAP).because("spec §6"),
    ),
    (
        "max_identity_relations",
        Bounds::new(1, RELATIONS_CAP).because("spec §4.20"),
    ),
    ("max_follower_servers", Bounds::new(1, 100_000)),
    ("max_neighbors", Bounds::new(1, 100_000)),
    ("neighborhood_init_parallelism", Bounds::new(1, 1000)),
    // One whole frame must always fit, or a legal 1 MiB message could never be read.
    (
        "max_inflight_bytes",
        Bounds::new(MIB, GIB).because("one 1 MiB frame must fit"),
    ),
    ("connection_queue_frames", Bounds::new(4, 4096)),
    ("max_relays", Bounds::new(1, 10_000)),
    ("search_cache_bytes", Bounds::new(64 * 1024, GIB)),
    ("max_connections_per_address", Bounds::new(1, 1_000_000)),
    (
        "registrations_per_address_per_hour",
        Bounds::new(1, 1_000_000),
    ),
    (
        "follower_starts_per_address_per_hour",
        Bounds::new(1, 1_000_000),
    ),
    ("searches_per_connection_per_sec", Bounds::new(1, 100_000)),
    (
        "max_inflight_bytes_per_address",
        Bounds::new(MIB, GIB).because("one 1 MiB frame must fit"),
    ),
];

/// An address's share of the in-flight budget when `max_inflight_bytes_per_address` is unset.
const DEFAULT_INFLIGHT_SHARE: u32 = 4 * 1024 * 1024;

impl Limits {
    /// Bytes of incoming frames one IP address may hold: `max_inflight_bytes_per_address`, or
    /// when unset 4 MiB, never more than the whole budget.
    pub(crate) fn inflight_share(&self) -> u32 {
        self.max_inflight_bytes_per_address
            .unwrap_or(DEFAULT_INFLIGHT_SHARE.min(self.max_inflight_bytes))
    }

    /// Every value, in the order of [`BOUNDS`].
    fn values(&self) -> [u32; 15] {
        [
            self.max_connections,
            self.max_hosted_identities,
            self.max_identity_relations,
            self.max_follower_servers,
            self.max_neighbors,
            self.neighborhood_init_parallelism,
            self.max_inflight_bytes,
            self.connection_queue_frames,
            self.max_relays,
            self.search_cache_bytes,
            self.max_connections_per_address,
            self.registrations_per_address_per_hour,
            self.follower_starts_per_address_per_hour,
            self.searches_per_connection_per_sec,
            self.inflight_share(),
        ]
    }
}

/// Checks every `[limits]` key against its bounds.
pub(super) fn check(limits: &Limits, problems: &mut Vec<Problem>) {
    for ((key, bounds), value) in BOUNDS.iter().zip(limits.values()) {
        bounds.check(&format!("limits.{key}"), value.into(), problems);
    }
    if let Some(share) = limits.max_inflight_bytes_per_address
        && share > limits.max_inflight_bytes
    {
        problems.push(Problem::new(
            "limits.max_inflight_bytes_per_address",
            format!(
                "{share} is more than limits.max_inflight_bytes ({}): one address's share \
                 cannot exceed the whole",
                limits.max_inflight_bytes
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::{assert_bounds_beside, problems};
    use super::*;

    #[test]
    fn limits_outside_protocol_bounds() {
        let found =
            problems("[limits]\nmax_hosted_identities = 20001\nmax_identity_relations = 0\n");
        let keys: Vec<_> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"limits.max_hosted_identities"));
        assert!(keys.contains(&"limits.max_identity_relations"));
    }

    #[test]
    fn an_unset_address_share_follows_a_smaller_budget() {
        let config = Config::parse("[limits]\nmax_inflight_bytes = 2097152\n").expect("valid");
        assert_eq!(config.limits.inflight_share(), 2_097_152);
        let default = Config::parse("").expect("valid");
        assert_eq!(default.limits.inflight_share(), 4 * 1024 * 1024);
    }

    #[test]
    fn an_address_share_larger_than_the_whole_is_refused() {
        let found = problems(
            "[limits]\nmax_inflight_bytes = 2097152\nmax_inflight_bytes_per_address = 4194304\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "limits.max_inflight_bytes_per_address");
    }

    #[test]
    fn every_key_is_bounded() {
        for (key, bounds) in BOUNDS {
            // The whole in-flight budget goes as low as one frame; an address's share with it.
            let beside = match key {
                "max_inflight_bytes_per_address" => "max_inflight_bytes = 1073741824\n",
                _ => "",
            };
            assert_bounds_beside(&format!("limits.{key}"), bounds, beside);
        }
    }

    #[test]
    fn zero_relays_and_zero_search_cache_are_refused() {
        let found = problems("[limits]\nmax_relays = 0\nsearch_cache_bytes = 0\n");
        let keys: Vec<_> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["limits.max_relays", "limits.search_cache_bytes"]);
        assert_eq!(found[0].message, "must be 1 to 10000, not 0 (line 2)");
        let found = problems("[limits]\nmax_hosted_identities = 20001\n");
        assert_eq!(
            found[0].message,
            "must be 1 to 20000, not 20001 (spec §6) (line 2)"
        );
    }
}
