//! `[limits]`: every bound on connections, stored data and memory, with its defaults.
//!
//! Only the numbers and their bounds live here; the semaphores and caps built from them belong
//! to `runtime` and the handlers.

use serde::Deserialize;

use super::{MAX_HOSTED_IDENTITIES_CAP, MAX_IDENTITY_RELATIONS_CAP, Problem};

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
    /// Calls (relays) alive at the same time, from ringing to teardown.
    pub max_relays: u32,
    /// Bytes of search results cached for ProfileSearchPart, over all connections.
    pub search_cache_bytes: u32,
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
        }
    }
}

/// Checks every `[limits]` key against its bounds.
pub(super) fn check(limits: &Limits, problems: &mut Vec<Problem>) {
    let mut range = |key: &str, value: u32, min: u32, max: u32| {
        if !(min..=max).contains(&value) {
            problems.push(Problem::new(
                format!("limits.{key}"),
                format!("{value} is outside {min}..={max}"),
            ));
        }
    };
    range("max_connections", limits.max_connections, 1, 1_000_000);
    range(
        "max_hosted_identities",
        limits.max_hosted_identities,
        1,
        MAX_HOSTED_IDENTITIES_CAP,
    );
    range(
        "max_identity_relations",
        limits.max_identity_relations,
        1,
        MAX_IDENTITY_RELATIONS_CAP,
    );
    range(
        "max_follower_servers",
        limits.max_follower_servers,
        1,
        100_000,
    );
    range("max_neighbors", limits.max_neighbors, 1, 100_000);
    range(
        "neighborhood_init_parallelism",
        limits.neighborhood_init_parallelism,
        1,
        1000,
    );
    // One whole frame must always fit, or a legal 1 MiB message could never be read.
    range(
        "max_inflight_bytes",
        limits.max_inflight_bytes,
        1_048_576,
        1 << 30,
    );
    range(
        "connection_queue_frames",
        limits.connection_queue_frames,
        4,
        4096,
    );
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    #[test]
    fn limits_outside_protocol_bounds() {
        let found =
            problems("[limits]\nmax_hosted_identities = 20001\nmax_identity_relations = 0\n");
        let keys: Vec<_> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"limits.max_hosted_identities"));
        assert!(keys.contains(&"limits.max_identity_relations"));
    }
}
