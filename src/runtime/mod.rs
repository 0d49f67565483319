//! Wires the server together: binds ports, opens the data directory, starts the listeners,
//! and tears everything down in order on shutdown.

pub(crate) mod address;
pub mod logging;
pub(crate) mod metrics;
pub mod observe;
pub mod shutdown;
pub mod status;
pub mod systemd;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::can::CanApi;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::context::{ClientCan, Ctx, LinkHealth, Parts};
use crate::crypto::{NetworkId, ServerKey};
use crate::metrics::Metrics;
use crate::net::connection::End;
use crate::net::listener::{self, Port};
use crate::net::tls;
use crate::peers;
use crate::role::{Role, RoleSet};
use crate::search::Search;
use crate::search::index::SearchIndex;
use crate::session::gate::RequestKind;
use crate::store::data_dir::{self, Opening};
use crate::store::index_load::IndexRecord;
use crate::store::keys::{self, TlsMaterial};
use crate::store::{Store, StoreError};
use crate::wire::MAX_SHARED_PROFILES;

/// Longest wait for connections to finish after shutdown was requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start. Each names the config key or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind its port.
    #[error("{key}: cannot listen on {address}: {source}")]
    Bind {
        /// The listener's config key.
        key: String,
        /// The address tried.
        address: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The data directory, a key file or the database is unusable.
    #[error("data_dir: {0}")]
    Store(#[from] StoreError),
    /// The TLS certificate in the data directory is unusable.
    #[error("data_dir: TLS certificate: {0}")]
    Tls(#[from] rustls::Error),
}

/// Creates the data directory, the server identity and the TLS certificate when missing, unless
/// that would orphan or replace data already there ([`data_dir::check`]).
pub(crate) fn prepare_data_dir(
    config: &Config,
    opening: Opening,
) -> Result<(ServerKey, TlsMaterial), StoreError> {
    data_dir::check(&config.data_dir, opening)?;
    keys::ensure_dir(&config.data_dir)?;
    let key = keys::load_or_create_identity(&config.data_dir)?;
    let tls = keys::load_or_create_tls(&config.data_dir)?;
    Ok((key, tls))
}

/// `init`: creates whatever the data directory lacks, the database included, and returns the
/// server key. Blocking.
pub fn init_data_dir(config: &Config) -> Result<ServerKey, StoreError> {
    let (key, _) = prepare_data_dir(config, Opening::Init)?;
    Store::open(&config.data_dir, config.storage.cache_bytes)?;
    Ok(key)
}

/// A started server.
pub struct RunningServer {
    network_id: NetworkId,
    role_ports: Vec<(Role, u16)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    ctx: Arc<Ctx>,
}

impl fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningServer")
            .field("network_id", &self.network_id)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The server's network id.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// The bound port serving `role`.
    pub fn port_of(&self, role: Role) -> Option<u16> {
        self.role_ports
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| *p)
    }

    /// Runs `task` under the server's tracker: shutdown waits for it before the database
    /// closes, so it must end when the shutdown token is cancelled.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// The source of the operator's status line.
    pub fn status(&self) -> status::StatusSource {
        status::StatusSource(Arc::downgrade(&self.ctx))
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested, then stops: no new connections, open ones closed,
    /// tasks awaited, database closed last.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish in time; closing the database anyway");
        }
        drop(self.ctx);
        tracing::info!("stopped");
    }

    /// Requests shutdown and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Binds every listener, prepares the data directory and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let bound = bind_all(&config).await?;
    let metrics_listener = bind_metrics(&config).await?;
    let (key, tls_material) = prepare_data_dir(&config, Opening::Run)?;
    let acceptor = TlsAcceptor::from(tls::server_config(&tls_material)?);
    let dir = config.data_dir.clone();
    let cache = config.storage.cache_bytes;
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, cache))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;

    let mut role_ports = Vec::new();
    let mut ports = Vec::new();
    for (listener, roles) in bound {
        let port = listener.local_addr().map_or(0, |a| a.port());
        role_ports.extend(roles.iter().map(|role| (role, port)));
        let tls = roles.is_tls().then(|| acceptor.clone());
        ports.push(Port {
            listener,
            roles,
            tls,
        });
    }
    let catalog = open_catalog(&store, &config).await?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let can = client_can(&config);
    let links = link_health(&config, can.as_ref());
    let (ctx, followers_to_share) = Ctx::new(Parts {
        key,
        store,
        role_ports: role_ports.clone(),
        external_address: address::external_address(&config),
        config,
        catalog,
        can,
        links,
        metrics: Metrics::new(&RequestKind::NAMES, &End::LABELS),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    });
    let ctx = Arc::new(ctx);
    for port in ports {
        tasks.spawn(listener::accept_loop(
            port,
            Arc::clone(&ctx),
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    tasks.spawn(crate::jobs::maintenance(Arc::clone(&ctx), shutdown.clone()));
    tasks.spawn(crate::jobs::relay_deadlines(
        Arc::clone(&ctx),
        shutdown.clone(),
    ));
    tasks.spawn(crate::peers::sharing::followers::run(Arc::clone(&ctx)));
    tasks.spawn(crate::peers::sharing::snapshot::run(
        Arc::clone(&ctx),
        followers_to_share,
    ));
    let (reports, neighborhood) = tokio::sync::mpsc::channel(LOC_EVENTS);
    tasks.spawn(crate::peers::receiving::run(Arc::clone(&ctx), neighborhood));
    start_loc(&ctx, &tasks, &shutdown, reports);
    start_can_and_observers(&ctx, &tasks, metrics_listener);
    let network_id = ctx.key.network_id();
    tracing::info!(%network_id, ports = %ports_text(&role_ports), "serving");
    Ok(RunningServer {
        network_id,
        role_ports,
        shutdown,
        tasks,
        ctx,
    })
}

/// The LOC and CAN links' health as `status` shows it: CAN's from every call to the node.
fn link_health(config: &Config, can: Option<&ClientCan>) -> LinkHealth {
    let can_health = can.map(|can| Arc::clone(can.api.health()));
    let loc_refresh = config.loc.as_ref().map(|loc| loc.neighborhood_refresh);
    LinkHealth::new(loc_refresh, can_health)
}

/// The catalog of profile changes over `store`, with its search index built from it.
async fn open_catalog(store: &Store, config: &Config) -> Result<Catalog, StoreError> {
    let search = recover_and_index(store).await?;
    // Signature checks of shared profiles run on every core the blocking pool may use.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let check_threads = cores.min(usize::from(config.runtime.max_blocking_threads));
    Ok(Catalog::new(
        store.clone(),
        search,
        MAX_SHARED_PROFILES,
        check_threads,
    ))
}

/// Drops neighbourhood initialisations a stop interrupted, then builds the search index with
/// every known neighbour server in it.
async fn recover_and_index(store: &Store) -> Result<Search, StoreError> {
    let (followers, neighbors) = store.drop_unfinished().await?;
    if followers + neighbors > 0 {
        tracing::info!(
            followers,
            neighbors,
            "dropped initialisations a stop interrupted"
        );
    }
    let search = build_search_index(store).await?;
    let neighbor_ids = store.neighbors().await?.into_iter().map(|(id, _)| id);
    search.update(|index| neighbor_ids.for_each(|id| index.add_server(id)));
    Ok(search)
}

/// Room for LOC events the consumer has not taken yet; the LOC task waits when it is full.
const LOC_EVENTS: usize = 64;

/// Binds `metrics.address` when it is set; a busy address stops the start like a busy port.
async fn bind_metrics(config: &Config) -> Result<Option<TcpListener>, StartError> {
    let Some(address) = config.metrics.address else {
        return Ok(None);
    };
    TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|source| StartError::Bind {
            key: "metrics.address".to_owned(),
            address,
            source,
        })
}

/// Starts the CAN contact-record task, the observation socket (in systemd's runtime
/// directory when the service has one) and the metrics endpoint when it is bound.
fn start_can_and_observers(ctx: &Arc<Ctx>, tasks: &TaskTracker, metrics: Option<TcpListener>) {
    tasks.spawn(crate::peers::can::run(Arc::clone(ctx)));
    let runtime_directory = std::env::var_os("RUNTIME_DIRECTORY").map(std::path::PathBuf::from);
    let socket = ctx.config.status_socket(runtime_directory.as_deref());
    tasks.spawn(observe::serve(Arc::clone(ctx), socket));
    if let Some(listener) = metrics {
        tasks.spawn(metrics::serve(Arc::clone(ctx), listener));
    }
}

/// The CAN client of the handlers, when `[can]` is configured.
fn client_can(config: &Config) -> Option<ClientCan> {
    config.can.as_ref().map(|can| ClientCan {
        api: CanApi::new(&can.api_url, can.request_timeout()),
        slots: Arc::new(Semaphore::new(
            usize::try_from(can.max_concurrent_requests).unwrap_or(1),
        )),
        unpins_queued: Notify::new(),
    })
}

/// Starts the LOC task when `[loc]` is configured (loc-can.md §1); it feeds `reports`.
fn start_loc(
    ctx: &Ctx,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    reports: tokio::sync::mpsc::Sender<peers::loc::LocEvent>,
) {
    let Some(loc) = &ctx.config.loc else {
        tracing::info!("no [loc] configured: running without LOC, so without a neighbourhood");
        return;
    };
    let settings = peers::loc::LocSettings {
        address: loc.address,
        reconnect: loc.reconnect,
        refresh: loc.neighborhood_refresh,
        service_type: loc.service_type,
        primary_port: ctx.port_of(Role::Primary),
        network_id: ctx.key.network_id(),
        configured_location: ctx.config.location,
    };
    tasks.spawn(peers::loc::run(settings, reports, shutdown.clone()));
}

async fn bind_all(config: &Config) -> Result<Vec<(TcpListener, RoleSet)>, StartError> {
    let mut bound = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let address = SocketAddr::new(config.bind_address, listener.port);
        let socket = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind {
                key: format!("listener[{index}].port"),
                address,
                source,
            })?;
        bound.push((socket, listener.roles));
    }
    Ok(bound)
}

/// Loads every searchable profile into a fresh index (spec §4.18; searches never scan redb).
pub async fn build_search_index(store: &Store) -> Result<Search, StoreError> {
    let started = std::time::Instant::now();
    let loader = store.clone();
    let records = tokio::task::spawn_blocking(move || loader.index_records())
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
    let search = search_index_of(records);
    let (hosted, shared) = search.len();
    tracing::info!(
        hosted,
        shared,
        elapsed_ms = started.elapsed().as_millis(),
        "search index built"
    );
    Ok(search)
}

/// The search index of loaded records, with spare capacity trimmed: the one way an index is
/// built, at start-up and in the search benchmark.
pub fn search_index_of(records: Vec<IndexRecord>) -> Search {
    let search = Search::default();
    let mut unreadable = 0_usize;
    search.update(|index: &mut SearchIndex| {
        for record in records {
            let Some(profile) = crate::search::decode_profile(&record.profile) else {
                unreadable += 1;
                continue;
            };
            match record.server {
                None => index.upsert_hosted(record.id, &profile),
                Some(server) => {
                    index.upsert_neighbor(server, record.id, &profile);
                    index.add_server(server);
                }
            }
        }
        index.shrink();
    });
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            "stored profiles that do not decode are left out of search"
        );
    }
    search
}

/// The ports and their roles for the log: `16987 (primary), 16988 (sr_neighbor, cl_customer)`.
fn ports_text(role_ports: &[(Role, u16)]) -> String {
    let mut ports: Vec<(u16, Vec<String>)> = Vec::new();
    for &(role, port) in role_ports {
        match ports.iter_mut().find(|(p, _)| *p == port) {
            Some((_, roles)) => roles.push(role.to_string()),
            None => ports.push((port, vec![role.to_string()])),
        }
    }
    let described: Vec<String> = ports
        .into_iter()
        .map(|(port, roles)| format!("{port} ({})", roles.join(", ")))
        .collect();
    described.join(", ")
}
