//! What every handler may use: the server key, the store, the configuration and the port map.

pub(crate) mod budget;
mod links;

pub(crate) use budget::Budget;
pub(crate) use links::LinkHealth;
pub use links::LinkState;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::can::CanApi;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::crypto::ServerKey;
use crate::hub::relay::RelayTimeouts;
use crate::hub::{AddressLimits, Addresses, Outbox, PeerHealth, Registry, Relays};
use crate::metrics::Metrics;
use crate::role::Role;
use crate::store::Store;

/// Shared server state, one per running server: the [`View`] handlers see, and the server's
/// task tracker and shutdown signal, which only the server's own long-lived parts (listeners,
/// peers, jobs, the observation and metrics servers) use.
pub(crate) struct Ctx {
    view: View,
    /// Every task of the server; shutdown waits for them before the database closes.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the server stops.
    pub(crate) shutdown: CancellationToken,
}

impl std::ops::Deref for Ctx {
    type Target = View;

    fn deref(&self) -> &View {
        &self.view
    }
}

/// What a request's handler may use: the server's key, data and configuration, the state
/// connections share, the budgets, the signals between the peer links, the catalog, CAN and
/// the metrics. It cannot start a task.
pub(crate) struct View {
    /// The server's identity.
    pub(crate) key: ServerKey,
    /// The database.
    pub(crate) store: Store,
    /// The checked configuration.
    pub(crate) config: Config,
    /// Every served role with the port it is actually bound to, for ListRoles.
    pub(crate) role_ports: Vec<(Role, u16)>,
    /// The address announced to LOC and to other servers.
    pub(crate) external_address: std::net::IpAddr,
    /// What connections share.
    pub(crate) hub: Hub,
    /// What may be held at once.
    pub(crate) budgets: Budgets,
    /// What the peer links and the handlers tell each other.
    pub(crate) peers: PeerSignals,
    /// The CAN node, when `[can]` is configured.
    pub(crate) can: Option<ClientCan>,
    /// Counters and histograms for `[metrics]`.
    pub(crate) metrics: Metrics,
    /// Profile changes and the search index (the only writer of both index and delivery).
    pub(crate) catalog: Catalog,
    /// Source of connection numbers.
    next_connection: AtomicU64,
    /// When the server started.
    pub(crate) started: tokio::time::Instant,
}

/// The state connections share.
pub(crate) struct Hub {
    /// Checked-in identities and their services.
    pub(crate) registry: Registry,
    /// Calls and their relays.
    pub(crate) relays: Relays,
    /// What each IP address holds (`limits.max_connections_per_address`, registrations).
    pub(crate) addresses: Arc<Addresses>,
}

/// What the server may hold at once.
pub(crate) struct Budgets {
    /// Permits for open connections (`limits.max_connections`).
    pub(crate) connections: Arc<Semaphore>,
    /// Incoming frame bytes held in memory (`limits.max_inflight_bytes`).
    pub(crate) inflight: Budget,
    /// Permits for bytes of cached search results, over all connections
    /// (`limits.search_cache_bytes`).
    pub(crate) search_cache_bytes: Arc<Semaphore>,
    /// Searches allowed to run at once on the blocking pool (one per runtime worker).
    pub(crate) search_slots: Arc<Semaphore>,
}

/// What the peer links (LOC, CAN, neighbours, followers) and the handlers tell each other.
pub(crate) struct PeerSignals {
    /// Which neighbours and followers do not answer, and the signs of life they gave.
    pub(crate) health: PeerHealth,
    /// Followers whose initialisation was accepted, handed to `peers` to stream the snapshot.
    pub(crate) new_followers: tokio::sync::mpsc::Sender<NewFollower>,
    /// Whether LOC and CAN answer, for the operator's status line.
    pub(crate) links: LinkHealth,
}

/// A follower whose StartNeighborhoodInitialization was accepted: the snapshot it receives on
/// its own connection (spec §5.7 A.3).
pub(crate) struct NewFollower {
    /// Its network id.
    pub id: [u8; 32],
    /// Its connection, on which the snapshot goes.
    pub outbox: Outbox,
    /// The hosted profiles as they were when it was recorded.
    pub snapshot: crate::store::followers::Snapshot,
}

/// CAN as client requests use it.
pub(crate) struct ClientCan {
    /// The node's API.
    pub api: CanApi,
    /// Permits for client CAN requests in progress (`can.max_concurrent_requests`).
    pub slots: Arc<Semaphore>,
    /// Woken when a client's object was queued for unpinning.
    pub unpins_queued: Notify,
}

/// What a server is made of before it serves: everything [`Ctx::new`] does not derive from
/// the configuration itself.
pub(crate) struct Parts {
    /// The server's identity.
    pub key: ServerKey,
    /// The open database.
    pub store: Store,
    /// The checked configuration.
    pub config: Config,
    /// Every served role with its bound port.
    pub role_ports: Vec<(Role, u16)>,
    /// The address announced to LOC and to other servers.
    pub external_address: std::net::IpAddr,
    /// The catalog over `store`, its index built.
    pub catalog: Catalog,
    /// The CAN node, when configured.
    pub can: Option<ClientCan>,
    /// The LOC and CAN links' health.
    pub links: LinkHealth,
    /// The metrics, with their label sets.
    pub metrics: Metrics,
    /// The server's task tracker.
    pub tasks: TaskTracker,
    /// Cancelled when the server stops.
    pub shutdown: CancellationToken,
}

impl Ctx {
    /// The shared state of a server made of `parts`, with the limits of its configuration;
    /// also the receiving end of [`Ctx::new_followers`], for the task that streams snapshots.
    pub(crate) fn new(parts: Parts) -> (Ctx, tokio::sync::mpsc::Receiver<NewFollower>) {
        let Parts {
            key,
            store,
            config,
            role_ports,
            external_address,
            catalog,
            can,
            links,
            metrics,
            tasks,
            shutdown,
        } = parts;
        let limits = &config.limits;
        let init_parallelism = limits.neighborhood_init_parallelism as usize;
        let (new_followers, followers_to_share) =
            tokio::sync::mpsc::channel(init_parallelism.max(1));
        let relay_timeouts = RelayTimeouts {
            answer: config.timeouts.call_answer,
            join: config.timeouts.relay_join,
        };
        let search_slots = usize::from(config.runtime.worker_threads.max(1));
        let view = View {
            hub: Hub {
                registry: Registry::default(),
                relays: Relays::new(limits.max_relays as usize, relay_timeouts),
                addresses: Addresses::new(AddressLimits {
                    connections: limits.max_connections_per_address,
                    registrations: limits.registrations_per_address_per_hour,
                    follower_starts: limits.follower_starts_per_address_per_hour,
                    inflight_share: limits.inflight_share() as usize,
                    // Every address with a connection, plus room for recent registrants.
                    capacity: limits.max_connections as usize + 4096,
                }),
            },
            budgets: Budgets {
                connections: Arc::new(Semaphore::new(limits.max_connections as usize)),
                inflight: Budget::new(limits.max_inflight_bytes as usize),
                search_cache_bytes: Arc::new(Semaphore::new(limits.search_cache_bytes as usize)),
                search_slots: Arc::new(Semaphore::new(search_slots)),
            },
            peers: PeerSignals {
                health: PeerHealth::default(),
                new_followers,
                links,
            },
            key,
            store,
            role_ports,
            external_address,
            config,
            can,
            metrics,
            catalog,
            next_connection: AtomicU64::new(1),
            started: tokio::time::Instant::now(),
        };
        let ctx = Ctx {
            view,
            tasks,
            shutdown,
        };
        (ctx, followers_to_share)
    }

    /// Runs `task` under the server's tracker. It must end soon after [`Ctx::shutdown`] is
    /// cancelled, because the database closes only after every task ended.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }
}

impl View {
    /// The port serving `role` (0 when no port serves it).
    pub(crate) fn port_of(&self, role: Role) -> u16 {
        self.role_ports
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(0, |(_, port)| *port)
    }

    /// Tells the CAN task that objects were queued for unpinning.
    pub(crate) fn unpins_queued(&self) {
        if let Some(can) = &self.can {
            can.unpins_queued.notify_one();
        }
    }

    /// A number no other connection of this run has.
    pub(crate) fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

/// A server's shared state for unit tests: test mode, a temporary database, no LOC or CAN.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::search::Search;
    use crate::session::End;
    use crate::session::gate::RequestKind;
    use crate::wire::MAX_SHARED_PROFILES;

    /// The state, and the directory its database lives in (deleted when dropped).
    pub(crate) fn ctx() -> (tempfile::TempDir, Arc<Ctx>) {
        let (dir, store) = Store::open_temporary();
        let config = Config::parse("test_mode = true\n").expect("test configuration");
        let (ctx, _followers) = Ctx::new(Parts {
            key: ServerKey::generate(),
            catalog: Catalog::new(store.clone(), Search::default(), MAX_SHARED_PROFILES, 1),
            store,
            config,
            role_ports: Vec::new(),
            external_address: std::net::Ipv4Addr::LOCALHOST.into(),
            can: None,
            links: LinkHealth::new(None, None),
            metrics: Metrics::new(&RequestKind::NAMES, &End::LABELS),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        (dir, Arc::new(ctx))
    }
}
