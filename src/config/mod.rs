//! The operator's configuration file: TOML text → [`RawConfig`] → checked [`Config`].
//!
//! Every key, its default and its bounds live here (see `spec/operator-interface.md`). Parsing
//! collects every problem together with the key it belongs to; nothing here touches the network
//! or the data directory.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::role::{Role, RoleSet};

/// Spec §6: `max_hosted_identities` can never exceed this.
pub const MAX_HOSTED_IDENTITIES_CAP: u32 = 20_000;
/// Spec §4.20: relationship cards per identity are capped by the message size.
pub const MAX_IDENTITY_RELATIONS_CAP: u32 = 2_000;
/// Spec §5.7: neighbour profiles must be kept at least a day after their last refresh.
const MIN_NEIGHBOR_EXPIRATION_SECS: u64 = 86_400;
/// Spec §5.7: followers must be refreshed more often than once a day.
const MAX_FOLLOWER_REFRESH_SECS: u64 = 86_399;
/// Data directory used by `run` and `init` when no `--config` is given.
pub const DEFAULT_DATA_DIR_WITHOUT_FILE: &str = "./iop-data";

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key the problem belongs to, as a dotted path (`limits.max_connections`).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The file as written, with serde defaults filled in; not yet checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "defaults::data_dir")]
    data_dir: PathBuf,
    #[serde(default = "defaults::bind_address")]
    bind_address: String,
    #[serde(default)]
    external_address: Option<String>,
    #[serde(default)]
    test_mode: bool,
    #[serde(default)]
    location: RawLocation,
    #[serde(default = "defaults::listeners", rename = "listener")]
    listeners: Vec<RawListener>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    loc: Option<RawLoc>,
    #[serde(default)]
    can: Option<CanConfig>,
    #[serde(default)]
    neighborhood: RawNeighborhood,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    storage: StorageConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    #[serde(default)]
    latitude: f64,
    #[serde(default)]
    longitude: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    port: u16,
    roles: Vec<String>,
}

/// Resource limits (`[limits]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open TCP connections over all ports.
    pub max_connections: u32,
    /// Hosted identities, at most [`MAX_HOSTED_IDENTITIES_CAP`].
    pub max_hosted_identities: u32,
    /// Relationship cards per identity, at most [`MAX_IDENTITY_RELATIONS_CAP`].
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimeouts {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoc {
    #[serde(default = "defaults::loc_address")]
    address: String,
    #[serde(default = "defaults::loc_reconnect_secs")]
    reconnect_secs: u64,
    #[serde(default = "defaults::loc_service_type")]
    service_type: String,
}

/// How LOC's `ServiceInfo.type` is encoded (spec §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocServiceType {
    /// LOC 2.x: the string `"Profile"`.
    String,
    /// LOC 1.x: the enum value 11.
    Enum,
}

/// The local LOC server (`[loc]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocConfig {
    /// Where LOC's local-service port listens.
    pub address: SocketAddr,
    /// Wait before reconnecting to a LOC that went away.
    pub reconnect: Duration,
    /// Service-type encoding of the deployed LOC.
    pub service_type: LocServiceType,
}

/// The local CAN server (`[can]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanConfig {
    /// Base URL of CAN's HTTP API.
    #[serde(default = "defaults::can_api_url")]
    pub api_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNeighborhood {
    action_interval_secs: u64,
    action_retry_secs: u64,
    init_delay_max_secs: u64,
    follower_refresh_secs: u64,
    neighbor_expiration_secs: u64,
}

impl Default for RawNeighborhood {
    fn default() -> RawNeighborhood {
        RawNeighborhood {
            action_interval_secs: 20,
            action_retry_secs: 600,
            init_delay_max_secs: 60,
            follower_refresh_secs: 43_200,
            neighbor_expiration_secs: 86_400,
        }
    }
}

/// Neighbourhood sharing timing (`[neighborhood]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborhoodConfig {
    /// Longest delay before a queued update is sent to a follower.
    pub action_interval: Duration,
    /// Wait before a failed action is tried again.
    pub action_retry: Duration,
    /// Longest random delay before initialising with a new neighbour.
    pub init_delay_max: Duration,
    /// How often followers are told our profiles are alive.
    pub follower_refresh: Duration,
    /// Neighbour profiles not refreshed for this long are dropped.
    pub neighbor_expiration: Duration,
}

/// Tokio runtime shape (`[runtime]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 1 runs everything on one thread (the small-board default).
    pub worker_threads: u16,
    /// Threads that run database transactions and file work (tokio's blocking pool; tokio's
    /// own default of 512 is far too many for a board). Work beyond them waits its turn.
    pub max_blocking_threads: u16,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            worker_threads: 1,
            max_blocking_threads: 8,
        }
    }
}

/// Database tuning (`[storage]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// redb page cache in bytes (redb's own default is 1 GiB, far too much for a board).
    pub cache_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            cache_bytes: 4 * 1024 * 1024,
        }
    }
}

/// One listening port and the roles it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port; 0 lets the system choose (used by tests).
    pub port: u16,
    /// Roles served on the port.
    pub roles: RoleSet,
}

/// Where this node stands, in the protocol's micro-degree units (spec §1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// Latitude × 1,000,000, truncated.
    pub latitude: i32,
    /// Longitude × 1,000,000, truncated.
    pub longitude: i32,
}

/// A checked configuration: every value is within its bounds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Everything the server keeps on disk.
    pub data_dir: PathBuf,
    /// Address the listeners bind to.
    pub bind_address: IpAddr,
    /// Public address announced to LOC, CAN and neighbours.
    pub external_address: IpAddr,
    /// Accept loopback and private addresses (tests and labs).
    pub test_mode: bool,
    /// Node location.
    pub location: Location,
    /// Listening ports.
    pub listeners: Vec<ListenerConfig>,
    /// Resource limits.
    pub limits: Limits,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// LOC server, if any.
    pub loc: Option<LocConfig>,
    /// CAN server, if any.
    pub can: Option<CanConfig>,
    /// Neighbourhood timing.
    pub neighborhood: NeighborhoodConfig,
    /// Runtime shape.
    pub runtime: RuntimeConfig,
    /// Database tuning.
    pub storage: StorageConfig,
}

impl Config {
    /// The built-in defaults, used when `run` gets no `--config`.
    pub fn builtin() -> Result<Config, Vec<Problem>> {
        let mut raw: RawConfig =
            toml::from_str("").map_err(|e| vec![Problem::new("", e.to_string())])?;
        raw.data_dir = PathBuf::from(DEFAULT_DATA_DIR_WITHOUT_FILE);
        raw.check()
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Problem::new("--config", format!("{}: {e}", path.display()))])?;
        Config::parse(&text)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| vec![toml_problem(text, &e)])?;
        raw.check()
    }

    /// The roles of every configured port, for the role-per-port map.
    pub fn roles_on_port(&self, port: u16) -> RoleSet {
        self.listeners
            .iter()
            .filter(|l| l.port == port)
            .fold(RoleSet::EMPTY, |set, l| {
                l.roles.iter().fold(set, RoleSet::with)
            })
    }
}

impl RawConfig {
    /// Turns the raw file into a [`Config`], or lists every problem with its key.
    pub fn check(self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let bind_address = parse_ip(&self.bind_address, "bind_address", &mut problems);
        let external_address = self.external_address(&mut problems);
        let location = check_location(&self.location, &mut problems);
        let listeners = check_listeners(&self.listeners, &mut problems);
        check_limits(&self.limits, &mut problems);
        let timeouts = check_timeouts(&self.timeouts, &mut problems);
        let loc = self
            .loc
            .as_ref()
            .and_then(|loc| check_loc(loc, &listeners, &mut problems));
        if let Some(can) = &self.can {
            check_can(can, &mut problems);
        }
        let neighborhood = check_neighborhood(&self.neighborhood, self.test_mode, &mut problems);
        if self.runtime.worker_threads == 0 {
            problems.push(Problem::new("runtime.worker_threads", "must be at least 1"));
        }
        if !(1..=512).contains(&self.runtime.max_blocking_threads) {
            problems.push(Problem::new(
                "runtime.max_blocking_threads",
                "must be 1 to 512",
            ));
        }
        if self.storage.cache_bytes < 64 * 1024 {
            problems.push(Problem::new(
                "storage.cache_bytes",
                "must be at least 65536",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push(Problem::new("data_dir", "must not be empty"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            data_dir: self.data_dir,
            bind_address: bind_address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            external_address: external_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            test_mode: self.test_mode,
            location,
            listeners,
            limits: self.limits,
            timeouts,
            loc,
            can: self.can,
            neighborhood,
            runtime: self.runtime,
            storage: self.storage,
        })
    }

    /// An explicit address must be public unless in test mode; the derived default is taken as is.
    fn external_address(&self, problems: &mut Vec<Problem>) -> Option<IpAddr> {
        let Some(text) = &self.external_address else {
            return Some(if self.test_mode {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                machine_address()
            });
        };
        let address = parse_ip(text, "external_address", problems)?;
        if !self.test_mode && !is_public(address) {
            problems.push(Problem::new(
                "external_address",
                format!("{address} is not a public address (allowed only with test_mode = true)"),
            ));
        }
        Some(address)
    }
}

mod defaults {
    use std::path::PathBuf;

    use super::RawListener;

    pub fn data_dir() -> PathBuf {
        PathBuf::from("/var/lib/iop-profile-server")
    }
    pub fn bind_address() -> String {
        "0.0.0.0".into()
    }
    pub fn listeners() -> Vec<RawListener> {
        vec![
            RawListener {
                port: 16987,
                roles: vec!["primary".into()],
            },
            RawListener {
                port: 16988,
                roles: [
                    "sr_neighbor",
                    "cl_non_customer",
                    "cl_customer",
                    "cl_app_service",
                ]
                .map(String::from)
                .to_vec(),
            },
        ]
    }
    pub fn loc_address() -> String {
        "127.0.0.1:16982".into()
    }
    pub fn loc_reconnect_secs() -> u64 {
        10
    }
    pub fn loc_service_type() -> String {
        "string".into()
    }
    pub fn can_api_url() -> String {
        "http://127.0.0.1:15001".into()
    }
}

fn parse_ip(text: &str, key: &str, problems: &mut Vec<Problem>) -> Option<IpAddr> {
    let parsed = text.parse().ok();
    if parsed.is_none() {
        problems.push(Problem::new(
            key,
            format!("'{text}' is not an IPv4 or IPv6 address"),
        ));
    }
    parsed
}

/// Whether a neighbour or client could reach this address over the internet.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The machine's first non-loopback address, found by asking the kernel for a route (no packet
/// is sent); loopback when there is no route at all.
fn machine_address() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:9")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn check_location(raw: &RawLocation, problems: &mut Vec<Problem>) -> Location {
    let latitude = to_micro_degrees(raw.latitude);
    let longitude = to_micro_degrees(raw.longitude);
    if !latitude.is_some_and(|v| (-90_000_000..=90_000_000).contains(&v)) {
        problems.push(Problem::new(
            "location.latitude",
            "must be within -90 and 90",
        ));
    }
    if !longitude.is_some_and(|v| (-179_999_999..=180_000_000).contains(&v)) {
        problems.push(Problem::new(
            "location.longitude",
            "must be above -180 and at most 180",
        ));
    }
    Location {
        latitude: latitude.unwrap_or(0),
        longitude: longitude.unwrap_or(0),
    }
}

/// Degrees to the protocol's micro-degrees, truncated (spec §1.3); `None` when out of `i32`.
fn to_micro_degrees(degrees: f64) -> Option<i32> {
    let scaled = (degrees * 1_000_000.0).trunc();
    #[expect(clippy::cast_possible_truncation, reason = "range checked just before")]
    (scaled.is_finite() && scaled.abs() <= f64::from(i32::MAX)).then_some(scaled as i32)
}

fn check_listeners(raw: &[RawListener], problems: &mut Vec<Problem>) -> Vec<ListenerConfig> {
    let mut listeners = Vec::new();
    let mut seen = RoleSet::EMPTY;
    if raw.is_empty() {
        problems.push(Problem::new("listener", "at least one listener is needed"));
    }
    for (index, listener) in raw.iter().enumerate() {
        let key = format!("listener[{index}]");
        let mut roles = RoleSet::EMPTY;
        for name in &listener.roles {
            match Role::from_config_name(name) {
                Some(role) if seen.contains(role) => problems.push(Problem::new(
                    format!("{key}.roles"),
                    format!("role '{name}' is already served by another listener"),
                )),
                Some(role) => roles = roles.with(role),
                None => problems.push(Problem::new(
                    format!("{key}.roles"),
                    format!("unknown role '{name}' (known: primary, sr_neighbor, cl_non_customer, cl_customer, cl_app_service)"),
                )),
            }
        }
        if listener.roles.is_empty() {
            problems.push(Problem::new(
                format!("{key}.roles"),
                "must name at least one role",
            ));
        }
        if roles.contains(Role::Primary) && roles.iter().any(Role::is_tls) {
            problems.push(Problem::new(
                format!("{key}.roles"),
                "primary is plain TCP and cannot share a port with TLS roles",
            ));
        }
        if listener.port != 0 && raw[..index].iter().any(|other| other.port == listener.port) {
            problems.push(Problem::new(
                format!("{key}.port"),
                format!("port {} is used by another listener", listener.port),
            ));
        }
        seen = roles.iter().fold(seen, RoleSet::with);
        listeners.push(ListenerConfig {
            port: listener.port,
            roles,
        });
    }
    if !raw.is_empty() && !seen.contains(Role::Primary) {
        problems.push(Problem::new(
            "listener",
            "one listener must serve the primary role",
        ));
    }
    listeners
}

fn check_limits(limits: &Limits, problems: &mut Vec<Problem>) {
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

fn check_timeouts(raw: &RawTimeouts, problems: &mut Vec<Problem>) -> Timeouts {
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

fn check_loc(
    raw: &RawLoc,
    listeners: &[ListenerConfig],
    problems: &mut Vec<Problem>,
) -> Option<LocConfig> {
    let address: Option<SocketAddr> = raw.address.parse().ok();
    if address.is_none() {
        problems.push(Problem::new(
            "loc.address",
            format!("'{}' is not an IP:port", raw.address),
        ));
    }
    if let Some(address) = address
        && address.ip().is_loopback()
        && listeners.iter().any(|l| l.port == address.port())
    {
        problems.push(Problem::new(
            "loc.address",
            "port collides with a listener port",
        ));
    }
    if raw.reconnect_secs == 0 {
        problems.push(Problem::new("loc.reconnect_secs", "must be at least 1"));
    }
    let service_type = match raw.service_type.as_str() {
        "string" => Some(LocServiceType::String),
        "enum" => Some(LocServiceType::Enum),
        other => {
            problems.push(Problem::new(
                "loc.service_type",
                format!("'{other}' is neither \"string\" nor \"enum\""),
            ));
            None
        }
    };
    Some(LocConfig {
        address: address?,
        reconnect: Duration::from_secs(raw.reconnect_secs),
        service_type: service_type?,
    })
}

fn check_can(can: &CanConfig, problems: &mut Vec<Problem>) {
    let rest = can.api_url.strip_prefix("http://");
    let host_port = rest.map(|r| r.trim_end_matches('/'));
    if !host_port.is_some_and(|hp| !hp.is_empty() && !hp.contains('/')) {
        problems.push(Problem::new(
            "can.api_url",
            "must look like http://HOST:PORT",
        ));
    }
}

fn check_neighborhood(
    raw: &RawNeighborhood,
    test_mode: bool,
    problems: &mut Vec<Problem>,
) -> NeighborhoodConfig {
    let mut positive = |key: &str, value: u64| {
        if value == 0 {
            problems.push(Problem::new(
                format!("neighborhood.{key}"),
                "must be at least 1",
            ));
        }
        Duration::from_secs(value)
    };
    let config = NeighborhoodConfig {
        action_interval: positive("action_interval_secs", raw.action_interval_secs),
        action_retry: positive("action_retry_secs", raw.action_retry_secs),
        init_delay_max: Duration::from_secs(raw.init_delay_max_secs),
        follower_refresh: positive("follower_refresh_secs", raw.follower_refresh_secs),
        neighbor_expiration: positive("neighbor_expiration_secs", raw.neighbor_expiration_secs),
    };
    if raw.follower_refresh_secs > MAX_FOLLOWER_REFRESH_SECS {
        problems.push(Problem::new(
            "neighborhood.follower_refresh_secs",
            "must be below 86400 so followers keep our profiles",
        ));
    }
    if !test_mode && raw.neighbor_expiration_secs < MIN_NEIGHBOR_EXPIRATION_SECS {
        problems.push(Problem::new(
            "neighborhood.neighbor_expiration_secs",
            "must be at least 86400 (lower values only with test_mode = true)",
        ));
    }
    config
}

/// A TOML syntax or type error as one problem, named by the key on the offending line.
fn toml_problem(text: &str, error: &toml::de::Error) -> Problem {
    let message = error.message().replace('\n', " ");
    let Some(span) = error.span() else {
        return Problem::new("(file)", message);
    };
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['[', ']']);
    let key = if key.is_empty() {
        "(file)".to_string()
    } else {
        key.to_string()
    };
    Problem::new(key, format!("{message} (line {line_no})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        Config::parse(text).expect_err("config should be rejected")
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(
            config.data_dir,
            PathBuf::from("/var/lib/iop-profile-server")
        );
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.roles_on_port(16987), RoleSet::of(&[Role::Primary]));
        assert!(config.roles_on_port(16988).contains(Role::ClAppService));
        assert_eq!(config.limits.max_connections, 1000);
        assert_eq!(config.timeouts.client_idle, Duration::from_secs(60));
        assert_eq!(config.timeouts.server_idle, Duration::from_secs(300));
        assert_eq!(config.external_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(config.loc.is_none() && config.can.is_none());
    }

    #[test]
    fn builtin_uses_local_data_dir() {
        let config = Config::builtin().expect("built-in defaults are valid");
        assert_eq!(config.data_dir, PathBuf::from("./iop-data"));
    }

    #[test]
    fn unknown_key_is_named() {
        let found = problems("[limits]\nmax_conections = 5\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("max_conections"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let found = problems("[limits]\nmax_connections = \"many\"\n");
        assert_eq!(found[0].key, "max_connections");
        assert!(found[0].message.contains("line 2"));
    }

    #[test]
    fn primary_mixed_with_tls_role_is_rejected() {
        let found = problems("[[listener]]\nport = 1\nroles = [\"primary\", \"cl_customer\"]\n");
        assert!(
            found.iter().any(|p| p.key == "listener[0].roles"),
            "{found:?}"
        );
    }

    #[test]
    fn duplicate_port_and_unknown_role_are_both_reported() {
        let text = "test_mode = true\n[[listener]]\nport = 5\nroles = [\"primary\"]\n\
                    [[listener]]\nport = 5\nroles = [\"cl_boss\"]\n";
        let keys: Vec<_> = problems(text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["listener[1].roles", "listener[1].port"]);
    }

    #[test]
    fn limits_outside_protocol_bounds() {
        let found =
            problems("[limits]\nmax_hosted_identities = 20001\nmax_identity_relations = 0\n");
        let keys: Vec<_> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"limits.max_hosted_identities"));
        assert!(keys.contains(&"limits.max_identity_relations"));
    }

    #[test]
    fn private_external_address_needs_test_mode() {
        let found = problems("external_address = \"192.168.1.2\"\n");
        assert_eq!(found[0].key, "external_address");
        assert!(Config::parse("external_address = \"192.168.1.2\"\ntest_mode = true").is_ok());
        assert!(Config::parse("external_address = \"198.51.100.7\"").is_err());
        assert!(Config::parse("external_address = \"8.8.8.8\"").is_ok());
    }

    #[test]
    fn location_is_truncated_to_micro_degrees() {
        let config = Config::parse(
            "test_mode = true\n[location]\nlatitude = 48.2082\nlongitude = -16.3738\n",
        )
        .expect("valid");
        assert_eq!(
            config.location,
            Location {
                latitude: 48_208_200,
                longitude: -16_373_800
            }
        );
        let found = problems("test_mode = true\n[location]\nlongitude = -180.0\n");
        assert_eq!(found[0].key, "location.longitude");
    }

    #[test]
    fn loc_and_can_sections() {
        let config = Config::parse("test_mode = true\n[loc]\n[can]\n").expect("valid");
        let loc = config.loc.expect("loc configured");
        assert_eq!(loc.address, "127.0.0.1:16982".parse().expect("addr"));
        assert_eq!(loc.service_type, LocServiceType::String);
        assert_eq!(config.can.expect("can").api_url, "http://127.0.0.1:15001");
        let found = problems("test_mode = true\n[loc]\nservice_type = \"number\"\n");
        assert_eq!(found[0].key, "loc.service_type");
    }

    #[test]
    fn neighbour_expiration_floor() {
        let text = "[neighborhood]\nneighbor_expiration_secs = 60\n";
        assert_eq!(
            problems(text)[0].key,
            "neighborhood.neighbor_expiration_secs"
        );
        assert!(Config::parse(&format!("test_mode = true\n{text}")).is_ok());
    }

    #[test]
    fn public_address_classification() {
        for private in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["8.8.8.8", "2a00:1450::1", "1.1.1.1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }
}
