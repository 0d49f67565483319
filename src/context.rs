//! What every handler may use: the server key, the store, the configuration and the port map.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::crypto::ServerKey;
use crate::role::Role;
use crate::store::Store;

/// Shared server state, one per running server.
pub struct Ctx {
    /// The server's identity.
    pub key: ServerKey,
    /// The database.
    pub store: Store,
    /// The checked configuration.
    pub config: Config,
    /// Every served role with the port it is actually bound to, for ListRoles.
    pub role_ports: Vec<(Role, u16)>,
    /// Permits for open connections (`limits.max_connections`).
    pub connections: Arc<Semaphore>,
    /// Permits for incoming frame bytes held in memory (`limits.max_inflight_bytes`).
    pub inflight_bytes: Arc<Semaphore>,
}

impl Ctx {
    /// The port serving `role`, if any.
    pub fn port_of(&self, role: Role) -> Option<u16> {
        self.role_ports
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, port)| *port)
    }
}
