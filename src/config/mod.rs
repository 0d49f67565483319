//! The operator's configuration file: TOML text → `RawConfig` → checked [`Config`].
//!
//! Every key, its default and its bounds live in this module (see `spec/operator-interface.md`),
//! one file per section: `listeners`, `limits`, `timeouts`, `peers` (`[location]`, `[loc]`,
//! `[can]`, `[neighborhood]`) and `runtime` (`[runtime]`, `[storage]`); `toml_error` names
//! syntax and type errors by their dotted key. This file holds the top-level keys and the
//! orchestration. Parsing collects every problem together with the key it belongs to; nothing
//! here touches the network or the data directory (the machine's own address, when
//! `external_address` is absent, is found at start by `runtime::address`).

mod limits;
mod listeners;
mod peers;
mod runtime;
mod timeouts;
mod toml_error;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) use self::limits::Limits;
pub(crate) use self::listeners::ListenerConfig;
use self::listeners::RawListener;
pub(crate) use self::peers::{CanConfig, LocConfig, LocServiceType, Location, NeighborhoodConfig};
use self::peers::{RawLoc, RawLocation, RawNeighborhood};
pub(crate) use self::runtime::{MetricsConfig, RuntimeConfig, StatusConfig, StorageConfig};
use self::timeouts::RawTimeouts;
pub(crate) use self::timeouts::Timeouts;
#[cfg(test)]
use crate::role::RoleSet;

/// Spec §6: `max_hosted_identities` can never exceed this.
pub(crate) const MAX_HOSTED_IDENTITIES_CAP: u32 = 20_000;
/// Spec §4.20: relationship cards per identity are capped by the message size.
pub(crate) const MAX_IDENTITY_RELATIONS_CAP: u32 = 2_000;
/// Data directory used by `run` and `init` when no `--config` is given.
pub(crate) const DEFAULT_DATA_DIR_WITHOUT_FILE: &str = "./iop-data";

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

    /// The problem with the file's line of its key, when known, at the end of the message.
    fn at_line(mut self, line: Option<usize>) -> Problem {
        if let Some(line) = line {
            self.message = format!("{} (line {line})", self.message);
        }
        self
    }
}

/// The inclusive bounds of one numeric key, and where they come from when not plain sense.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// Smallest accepted value.
    min: u64,
    /// Largest accepted value.
    max: u64,
    /// Why, appended to the message ("spec §6"); empty when the bounds are only sanity limits.
    why: &'static str,
}

impl Bounds {
    /// Sanity limits: no spec behind them, only what makes sense for a daemon on a small board.
    const fn new(min: u64, max: u64) -> Bounds {
        Bounds { min, max, why: "" }
    }

    /// The same bounds, with the reason the operator sees when a value falls outside them.
    const fn because(self, why: &'static str) -> Bounds {
        Bounds {
            min: self.min,
            max: self.max,
            why,
        }
    }

    /// Records a problem under the dotted `key` unless `value` lies within the bounds.
    fn check(self, key: &str, value: u64, problems: &mut Vec<Problem>) {
        if (self.min..=self.max).contains(&value) {
            return;
        }
        let why = if self.why.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.why)
        };
        let (min, max) = (self.min, self.max);
        problems.push(Problem::new(
            key,
            format!("must be {min} to {max}, not {value}{why}"),
        ));
    }
}

/// The file as written, with serde defaults filled in; not yet checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_bind_address")]
    bind_address: String,
    #[serde(default)]
    external_address: Option<String>,
    #[serde(default)]
    test_mode: bool,
    #[serde(default)]
    location: RawLocation,
    #[serde(default = "listeners::default_listeners", rename = "listener")]
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
    #[serde(default)]
    status: StatusConfig,
    #[serde(default)]
    metrics: runtime::RawMetrics,
}

/// Most lines with a wrong type left out while looking for further problems.
const MAX_TYPE_ERRORS: usize = 32;

/// Where a configuration file without `data_dir` keeps the data: the service's state directory.
pub const SERVICE_DATA_DIR: &str = "/var/lib/iop-profile-server";

fn default_data_dir() -> PathBuf {
    PathBuf::from(SERVICE_DATA_DIR)
}

fn default_bind_address() -> String {
    "0.0.0.0".into()
}

/// A checked configuration: every value is within its bounds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Everything the server keeps on disk.
    pub data_dir: PathBuf,
    /// Address the listeners bind to.
    pub bind_address: IpAddr,
    /// Public address announced to LOC, CAN and neighbours, as configured. `None` means the key
    /// is absent outside test mode: the machine's address is discovered at start (see
    /// `runtime::address`), never while parsing. With `test_mode = true` and no key this is
    /// `Some(127.0.0.1)`, the documented default, so `None` always means "discover".
    pub external_address: Option<IpAddr>,
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
    /// `[status]`.
    pub status: StatusConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
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
    ///
    /// Every problem is reported in one go: a `key = value` line whose value has the wrong type
    /// is reported and left out (commented, so line numbers stay), and the rest of the file is
    /// read and checked again, up to [`MAX_TYPE_ERRORS`] such lines.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut text = text.to_owned();
        for _ in 0..MAX_TYPE_ERRORS {
            match toml::from_str::<RawConfig>(&text) {
                Ok(raw) => {
                    return match raw.check() {
                        Ok(config) if problems.is_empty() => Ok(config),
                        Ok(_) => Err(problems),
                        Err(more) => {
                            problems.extend(more.into_iter().map(|problem| {
                                let line = toml_error::line_of_key(&text, &problem.key);
                                problem.at_line(line)
                            }));
                            Err(problems)
                        }
                    };
                }
                Err(error) => {
                    let problem = toml_error::problem(&text, &error);
                    // A key left out may be missing now: that is the problem already told.
                    if problems
                        .iter()
                        .any(|told: &Problem| told.key == problem.key)
                    {
                        return Err(problems);
                    }
                    problems.push(problem);
                    match error
                        .span()
                        .and_then(|span| toml_error::without_line(&text, span.start))
                    {
                        Some(rest) => text = rest,
                        None => return Err(problems),
                    }
                }
            }
        }
        Err(problems)
    }

    /// Where the observation socket is: `status.socket` when set, else `status.sock` in the
    /// service manager's runtime directory when there is one, else in `data_dir`.
    pub fn status_socket(&self, runtime_directory: Option<&std::path::Path>) -> PathBuf {
        let dir = runtime_directory.unwrap_or(&self.data_dir);
        self.status
            .socket
            .clone()
            .unwrap_or_else(|| dir.join("status.sock"))
    }

    /// The roles of every configured port, for the role-per-port map.
    #[cfg(test)]
    pub(crate) fn roles_on_port(&self, port: u16) -> RoleSet {
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
    pub(crate) fn check(self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let bind_address = parse_ip(&self.bind_address, "bind_address", &mut problems);
        let external_address = self.external_address(&mut problems);
        let location = peers::check_location(&self.location, &mut problems);
        let listeners = listeners::check(&self.listeners, &mut problems);
        limits::check(&self.limits, &mut problems);
        let timeouts = timeouts::check(&self.timeouts, &mut problems);
        let loc = self
            .loc
            .as_ref()
            .and_then(|loc| peers::check_loc(loc, &listeners, &mut problems));
        if let Some(can) = &self.can {
            peers::check_can(can, &listeners, loc.as_ref(), &mut problems);
        }
        let neighborhood =
            peers::check_neighborhood(&self.neighborhood, self.test_mode, &mut problems);
        runtime::check(self.runtime, self.storage, &mut problems);
        let metrics = runtime::check_metrics(&self.metrics, &mut problems);
        if let Some(address) = metrics.address
            && listeners
                .iter()
                .any(|listener| listener.port == address.port())
        {
            problems.push(Problem::new(
                "metrics.address",
                format!(
                    "port {} is a protocol listener's port too: give the metrics another",
                    address.port()
                ),
            ));
        }
        if self
            .status
            .socket
            .as_ref()
            .is_some_and(|socket| socket.as_os_str().is_empty())
        {
            problems.push(Problem::new(
                "status.socket",
                "must not be empty: leave the key out for the default place",
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
            external_address,
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
            status: self.status,
            metrics,
        })
    }

    /// An explicit address must be public unless in test mode. Without the key: 127.0.0.1 in
    /// test mode, otherwise `None` (discovered at start).
    fn external_address(&self, problems: &mut Vec<Problem>) -> Option<IpAddr> {
        let Some(text) = &self.external_address else {
            return self.test_mode.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
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
pub(crate) fn is_public(address: IpAddr) -> bool {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Every key the code accepts, as `section.key` (`key` at the top level), read from the
    /// list of expected fields serde gives for a key no section has.
    pub(super) fn every_key() -> Vec<String> {
        let sections = [
            ("", ""),
            ("location", "[location]\n"),
            (
                "listener",
                "[[listener]]\nport = 1\nroles = [\"primary\"]\n",
            ),
            ("limits", "[limits]\n"),
            ("timeouts", "[timeouts]\n"),
            ("loc", "[loc]\n"),
            ("can", "[can]\n"),
            ("neighborhood", "[neighborhood]\n"),
            ("runtime", "[runtime]\n"),
            ("storage", "[storage]\n"),
            ("status", "[status]\n"),
            ("metrics", "[metrics]\n"),
        ];
        let tables: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
        let mut keys = Vec::new();
        for (section, header) in sections {
            let text = format!("{header}no_such_key_anywhere = 1\n");
            let error = toml::from_str::<RawConfig>(&text)
                .expect_err("unknown key")
                .to_string();
            // "…unknown field `no_such_key_anywhere`, expected `a` or `b`" (or "one of …").
            let list = error
                .split_once("no_such_key_anywhere`, expected")
                .unwrap_or_else(|| panic!("no key list in {error}"))
                .1;
            for name in list.split('`').skip(1).step_by(2) {
                if section.is_empty() && tables.contains(&name) {
                    continue;
                }
                keys.push(if section.is_empty() {
                    name.to_owned()
                } else {
                    format!("{section}.{name}")
                });
            }
        }
        keys
    }

    fn docs_file(name: &str) -> String {
        let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_key_is_documented() {
        let keys = every_key();
        assert!(keys.len() > 40, "{keys:?}");
        let reference = docs_file("configuration.md");
        let missing: Vec<_> = keys
            .iter()
            .filter(|key| !reference.contains(&format!("| `{key}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
    }

    #[test]
    fn the_example_config_is_valid_and_names_every_key() {
        let example = docs_file("example-config.toml");
        let with_external = example.replace("# external_address", "external_address");
        let problems = Config::parse(&with_external).expect_err("documentation address");
        assert_eq!(problems[0].key, "external_address");
        let config = Config::parse(&example).expect("the example is valid");
        // Used as it is, the example is the built-in defaults: no LOC, no CAN.
        assert!(config.loc.is_none() && config.can.is_none());
        let switched_on = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\nexternal_address", "\n# external_address");
        let all = Config::parse(&switched_on).expect("the example's commented keys are valid");
        assert!(all.loc.is_some() && all.can.is_some());
        for key in every_key() {
            let name = key.rsplit('.').next().unwrap_or(&key);
            let set = example.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.split('=').next().is_some_and(|k| k.trim() == name)
            });
            assert!(set, "{key} is not in docs/example-config.toml");
        }
    }

    /// The problems of a file that must be rejected.
    pub(super) fn problems(text: &str) -> Vec<Problem> {
        Config::parse(text).expect_err("config should be rejected")
    }

    /// Checks, in test mode, that the dotted `key` accepts both of its bounds and that the
    /// values just outside them are rejected under that key (below 0 is a TOML type error).
    pub(super) fn assert_bounds(key: &str, bounds: Bounds) {
        assert_bounds_beside(key, bounds, "");
    }

    /// [`assert_bounds`] with `beside` (keys of the same table) set too.
    pub(super) fn assert_bounds_beside(key: &str, bounds: Bounds, beside: &str) {
        let (section, field) = key.rsplit_once('.').expect("a dotted key");
        let file =
            |value: i128| format!("test_mode = true\n[{section}]\n{beside}{field} = {value}\n");
        for value in [bounds.min, bounds.max] {
            if let Err(found) = Config::parse(&file(value.into())) {
                panic!("{key} = {value} must be accepted: {found:?}");
            }
        }
        for value in [i128::from(bounds.min) - 1, i128::from(bounds.max) + 1] {
            let found = problems(&file(value));
            assert!(
                found.iter().any(|p| p.key == key),
                "{key} = {value}: {found:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_type_errors_included() {
        let found = problems(
            "test_mode = true\n[limits]\nmax_connections = \"lots\"\nmax_relays = 0\n\
             [timeouts]\nclient_idle_secs = \"soon\"\n[location]\nlatitude = 91\n",
        );
        let mut keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "limits.max_connections",
                "limits.max_relays",
                "location.latitude",
                "timeouts.client_idle_secs"
            ],
            "{found:?}"
        );
        // Type errors keep their line numbers.
        assert!(found[0].message.contains("(line 3)"), "{found:?}");
        assert!(found[1].message.contains("(line 6)"), "{found:?}");
    }

    #[test]
    fn a_value_out_of_bounds_names_its_line() {
        let found = problems("test_mode = true\n\n[location]\nlongitude = 19.0\nlatitude = 91\n");
        assert_eq!(found[0].key, "location.latitude");
        assert!(found[0].message.ends_with("(line 5)"), "{found:?}");
    }

    #[test]
    fn a_left_out_key_that_is_required_is_told_once() {
        let found = problems("[[listener]]\nport = \"x\"\nroles = [\"primary\"]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "listener[0].port");
    }

    #[test]
    fn metrics_on_a_listener_port_and_an_empty_status_socket_are_refused() {
        let found = problems("[metrics]\naddress = \"127.0.0.1:16988\"\n[status]\nsocket = \"\"\n");
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["metrics.address", "status.socket"], "{found:?}");
        assert!(found[0].message.contains("16988"), "{found:?}");
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(
            config.data_dir,
            PathBuf::from("/var/lib/iop-profile-server")
        );
        assert_eq!(config.bind_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(config.limits.max_connections, 1000);
        assert_eq!(
            config.external_address,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert!(config.loc.is_none() && config.can.is_none());
    }

    #[test]
    fn builtin_uses_local_data_dir() {
        let config = Config::builtin().expect("built-in defaults are valid");
        assert_eq!(config.data_dir, PathBuf::from("./iop-data"));
    }

    #[test]
    fn absent_external_address_is_left_to_discovery() {
        let config = Config::parse("").expect("defaults are valid");
        assert_eq!(config.external_address, None);
        let config = Config::parse("external_address = \"8.8.8.8\"").expect("public address");
        assert_eq!(config.external_address, Some(IpAddr::from([8, 8, 8, 8])));
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
