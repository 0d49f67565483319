//! The link to the local LOC daemon (`iop-locnetd`, loc-can.md §1, spec §7): register our
//! profile service, read the neighbourhood, follow its changes, and report them as [`LocEvent`]s.
//!
//! `codec` builds and sorts LOC frames and `link` is one connection's conversation, both sans-I/O
//! (`link` takes `now`); `task` owns the socket, the timers and the reconnect loop. What the
//! neighbourhood means for the database belongs to the consumer of the events, not here.

mod codec;
mod link;
mod task;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::{LocServiceType, Location};
use crate::crypto::NetworkId;

pub(crate) use task::run;

/// What the LOC task needs from the configuration and the running server.
#[derive(Clone, Debug)]
pub(crate) struct LocSettings {
    /// LOC's local-service port (`loc.address`).
    pub address: SocketAddr,
    /// Wait before reconnecting after a failure (`loc.reconnect_secs`).
    pub reconnect: Duration,
    /// How often the neighbourhood is read again (`loc.neighborhood_refresh_secs`).
    pub refresh: Duration,
    /// How RegisterService names the profile service (`loc.service_type`).
    pub service_type: LocServiceType,
    /// Our primary port, registered as the service port.
    pub primary_port: u16,
    /// Our network id, registered as the service data.
    pub network_id: NetworkId,
    /// `[location]`, checked against the location LOC reports (0, 0 when not set).
    pub configured_location: Location,
}

/// A neighbour profile server as LOC reports it (spec §7: derived from a node's first `Profile`
/// service). Its srNeighbor port is learned later through ListRoles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NeighborNode {
    /// LOC's id of the node, which a removal names (LOC keeps it at most 1 KB per message).
    pub node_id: Vec<u8>,
    /// The neighbour's network id: the service data of its profile service.
    pub id: [u8; 32],
    /// The node's IP address (`contact.ip_address`).
    pub address: IpAddr,
    /// The neighbour's primary port (the profile service's port).
    pub primary_port: u16,
    /// Latitude in micro-degrees (valid).
    pub latitude: i32,
    /// Longitude in micro-degrees (valid).
    pub longitude: i32,
}

/// What the LOC task reports, in the order it learnt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LocEvent {
    /// Attached (again): the neighbourhood as LOC reports it now. A periodic refresh of the
    /// neighbourhood arrives the same way. It adds to what is known: LOC 2.0 may leave out a
    /// node it has not learnt the services of yet.
    Attached {
        /// The neighbours, at most [`MAX_NODES`].
        nodes: Vec<NeighborNode>,
    },
    /// A neighbour was added or updated (LOC sends `updated_node_info` for new nodes too).
    Upsert(NeighborNode),
    /// LOC removed a node; the id as LOC sent it.
    Removed(Vec<u8>),
    /// The link to LOC is down; a reconnect is scheduled. Sent once when an attached link
    /// fails, not again for every failed reconnect.
    Detached,
}

/// Most neighbours taken from one LOC message. LOC keeps at most a few hundred neighbours
/// (`max_neighbors`), so this only stops a broken LOC from making us allocate without bound.
pub(crate) const MAX_NODES: usize = 4096;
