//! The node's place among its peers: `[location]`, `[loc]`, `[can]` and `[neighborhood]`.
//!
//! Only what the file says lives here; talking to LOC, CAN or neighbour servers belongs to
//! `peers/` and `jobs`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::listeners::ListenerConfig;
use super::{Bounds, Problem};
use crate::wire::{is_valid_latitude, is_valid_longitude};

/// Spec §5.7: neighbour profiles must be kept at least a day after their last refresh.
const MIN_NEIGHBOR_EXPIRATION_SECS: u64 = 86_400;
/// Spec §5.7: followers must be refreshed more often than once a day.
const MAX_FOLLOWER_REFRESH_SECS: u64 = 86_399;
/// `loc.reconnect_secs`: LOC runs on the same machine, so an hour is the longest useful wait.
const LOC_RECONNECT_SECS: Bounds = Bounds::new(1, HOUR);
/// `loc.neighborhood_refresh_secs`: LOC notifies only the first session it ever accepted, so
/// reading the neighbourhood again is how a server that reconnected learns of changes.
const LOC_NEIGHBORHOOD_REFRESH_SECS: Bounds = Bounds::new(5, DAY);
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// The `[location]` table as written, in degrees.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocation {
    #[serde(default)]
    latitude: f64,
    #[serde(default)]
    longitude: f64,
}

/// Where this node stands, in the protocol's micro-degree units (spec §1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// Latitude × 1,000,000, truncated.
    pub latitude: i32,
    /// Longitude × 1,000,000, truncated.
    pub longitude: i32,
}

/// The `[loc]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoc {
    #[serde(default = "default_loc_address")]
    address: String,
    #[serde(default = "default_loc_reconnect_secs")]
    reconnect_secs: u64,
    #[serde(default = "default_loc_service_type")]
    service_type: String,
    #[serde(default = "default_loc_neighborhood_refresh_secs")]
    neighborhood_refresh_secs: u64,
}

fn default_loc_address() -> String {
    "127.0.0.1:16982".into()
}

fn default_loc_reconnect_secs() -> u64 {
    10
}

fn default_loc_service_type() -> String {
    "string".into()
}

fn default_loc_neighborhood_refresh_secs() -> u64 {
    60
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
    /// How often the neighbourhood is read again on a connection.
    pub neighborhood_refresh: Duration,
}

/// The local CAN server (`[can]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanConfig {
    /// Base URL of CAN's HTTP API.
    #[serde(default = "default_can_api_url")]
    pub api_url: String,
    /// Longest wait for one CAN call (spec §8: 20 s).
    #[serde(default = "default_can_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Client CAN requests (CanStoreData, CanPublishIpnsRecord) handled at once; more are
    /// answered ERROR_BUSY.
    #[serde(default = "default_can_max_concurrent_requests")]
    pub max_concurrent_requests: u64,
    /// How often the node is asked whether it answers when no other call did so (its health in
    /// `status`, and the contact record republished when it comes back).
    #[serde(default = "default_can_health_check_secs")]
    pub health_check_secs: u64,
}

fn default_can_api_url() -> String {
    "http://127.0.0.1:15001".into()
}

fn default_can_request_timeout_secs() -> u64 {
    20
}

fn default_can_max_concurrent_requests() -> u64 {
    8
}

fn default_can_health_check_secs() -> u64 {
    60
}

impl CanConfig {
    /// `request_timeout_secs` as a duration.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `health_check_secs` as a duration.
    pub(crate) fn health_check(&self) -> Duration {
        Duration::from_secs(self.health_check_secs)
    }
}

/// `can.request_timeout_secs`: CAN runs on this machine; five minutes is the longest useful wait.
const CAN_REQUEST_TIMEOUT_SECS: Bounds = Bounds::new(1, 300);
/// `can.max_concurrent_requests`.
const CAN_MAX_CONCURRENT_REQUESTS: Bounds = Bounds::new(1, 64);
/// `can.health_check_secs`: from every second (tests) to once an hour.
const CAN_HEALTH_CHECK_SECS: Bounds = Bounds::new(1, 3600);

/// The `[neighborhood]` table as written, in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNeighborhood {
    action_interval_secs: u64,
    action_retry_secs: u64,
    init_delay_max_secs: u64,
    follower_refresh_secs: u64,
    neighbor_expiration_secs: u64,
    follower_init_timeout_secs: u64,
}

impl Default for RawNeighborhood {
    fn default() -> RawNeighborhood {
        RawNeighborhood {
            action_interval_secs: 20,
            action_retry_secs: 600,
            init_delay_max_secs: 60,
            follower_refresh_secs: 43_200,
            neighbor_expiration_secs: 86_400,
            follower_init_timeout_secs: 1_200,
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
    /// Longest a follower's initialisation may take: its slot and the database snapshot it
    /// reads are released then, however promptly it answers each batch.
    pub follower_init_timeout: Duration,
}

/// Checks `[location]` and converts it to micro-degrees.
pub(super) fn check_location(raw: &RawLocation, problems: &mut Vec<Problem>) -> Location {
    let latitude = to_micro_degrees(raw.latitude);
    let longitude = to_micro_degrees(raw.longitude);
    if !latitude.is_some_and(is_valid_latitude) {
        problems.push(Problem::new(
            "location.latitude",
            "must be within -90 and 90",
        ));
    }
    if !longitude.is_some_and(is_valid_longitude) {
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

/// Checks `[loc]`; its port must not be one of ours when LOC runs on this machine.
pub(super) fn check_loc(
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
    LOC_RECONNECT_SECS.check("loc.reconnect_secs", raw.reconnect_secs, problems);
    LOC_NEIGHBORHOOD_REFRESH_SECS.check(
        "loc.neighborhood_refresh_secs",
        raw.neighborhood_refresh_secs,
        problems,
    );
    let service_type = loc_service_type(&raw.service_type, problems);
    Some(LocConfig {
        address: address?,
        reconnect: Duration::from_secs(raw.reconnect_secs),
        service_type: service_type?,
        neighborhood_refresh: Duration::from_secs(raw.neighborhood_refresh_secs),
    })
}

fn loc_service_type(text: &str, problems: &mut Vec<Problem>) -> Option<LocServiceType> {
    match text {
        "string" => Some(LocServiceType::String),
        "enum" => Some(LocServiceType::Enum),
        other => {
            problems.push(Problem::new(
                "loc.service_type",
                format!("'{other}' is neither \"string\" nor \"enum\""),
            ));
            None
        }
    }
}

/// Checks `[can]`: a plain-HTTP `HOST:PORT` base URL whose port is neither one of ours nor
/// LOC's when CAN runs on this machine, and the bounded numbers.
pub(super) fn check_can(
    can: &CanConfig,
    listeners: &[ListenerConfig],
    loc: Option<&LocConfig>,
    problems: &mut Vec<Problem>,
) {
    let host_port = can
        .api_url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|hp| !hp.is_empty() && !hp.contains('/'));
    let port = host_port
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    match (host_port, port) {
        (Some(host_port), Some(port)) => {
            let local = host_port.starts_with("127.")
                || host_port.starts_with("localhost:")
                || host_port.starts_with("[::1]:");
            let ours = listeners.iter().any(|l| l.port == port);
            let locs = loc.is_some_and(|loc| loc.address.port() == port);
            if local && (ours || locs) {
                problems.push(Problem::new(
                    "can.api_url",
                    "port collides with a listener port or with loc.address",
                ));
            }
        }
        _ => problems.push(Problem::new(
            "can.api_url",
            "must look like http://HOST:PORT",
        )),
    }
    CAN_REQUEST_TIMEOUT_SECS.check(
        "can.request_timeout_secs",
        can.request_timeout_secs,
        problems,
    );
    CAN_MAX_CONCURRENT_REQUESTS.check(
        "can.max_concurrent_requests",
        can.max_concurrent_requests,
        problems,
    );
    CAN_HEALTH_CHECK_SECS.check("can.health_check_secs", can.health_check_secs, problems);
}

/// Bounds of every `[neighborhood]` key, in the order of [`RawNeighborhood::values`]; the
/// expiration floor of spec §5.7 only holds outside test mode.
fn neighborhood_bounds(test_mode: bool) -> [(&'static str, Bounds); 6] {
    let expiration = if test_mode {
        Bounds::new(1, 30 * DAY)
    } else {
        Bounds::new(MIN_NEIGHBOR_EXPIRATION_SECS, 30 * DAY)
            .because("spec §5.7: at least a day; lower only with test_mode = true")
    };
    let refresh = Bounds::new(1, MAX_FOLLOWER_REFRESH_SECS)
        .because("spec §5.7: below a day, so followers keep our profiles");
    [
        ("action_interval_secs", Bounds::new(1, HOUR)),
        ("action_retry_secs", Bounds::new(1, DAY)),
        ("init_delay_max_secs", Bounds::new(0, HOUR)),
        ("follower_refresh_secs", refresh),
        ("neighbor_expiration_secs", expiration),
        ("follower_init_timeout_secs", Bounds::new(1, DAY)),
    ]
}

impl RawNeighborhood {
    /// Every value, in the order of [`neighborhood_bounds`].
    fn values(&self) -> [u64; 6] {
        [
            self.action_interval_secs,
            self.action_retry_secs,
            self.init_delay_max_secs,
            self.follower_refresh_secs,
            self.neighbor_expiration_secs,
            self.follower_init_timeout_secs,
        ]
    }
}

/// Checks `[neighborhood]` and converts the seconds to durations.
pub(super) fn check_neighborhood(
    raw: &RawNeighborhood,
    test_mode: bool,
    problems: &mut Vec<Problem>,
) -> NeighborhoodConfig {
    for ((key, bounds), value) in neighborhood_bounds(test_mode).iter().zip(raw.values()) {
        bounds.check(&format!("neighborhood.{key}"), value, problems);
    }
    NeighborhoodConfig {
        action_interval: Duration::from_secs(raw.action_interval_secs),
        action_retry: Duration::from_secs(raw.action_retry_secs),
        init_delay_max: Duration::from_secs(raw.init_delay_max_secs),
        follower_refresh: Duration::from_secs(raw.follower_refresh_secs),
        neighbor_expiration: Duration::from_secs(raw.neighbor_expiration_secs),
        follower_init_timeout: Duration::from_secs(raw.follower_init_timeout_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::{assert_bounds, problems};
    use super::*;

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
    fn latitude_and_longitude_bounds() {
        for (key, good, bad) in [
            ("latitude", [-90.0, 90.0], [-90.000_001, 90.000_001]),
            ("longitude", [-179.999_999, 180.0], [-180.0, 180.000_001]),
        ] {
            for value in good {
                let text = format!("[location]\n{key} = {value}\n");
                assert!(Config::parse(&text).is_ok(), "{key} = {value}");
            }
            for value in bad {
                let found = problems(&format!("[location]\n{key} = {value}\n"));
                assert_eq!(found[0].key, format!("location.{key}"), "{value}");
            }
        }
    }

    #[test]
    fn neighbor_expiration_floor() {
        let text = "[neighborhood]\nneighbor_expiration_secs = 60\n";
        let found = problems(text);
        assert_eq!(found[0].key, "neighborhood.neighbor_expiration_secs");
        assert!(found[0].message.contains("test_mode"), "{found:?}");
        assert!(Config::parse(&format!("test_mode = true\n{text}")).is_ok());
        assert!(Config::parse("[neighborhood]\nneighbor_expiration_secs = 86400\n").is_ok());
    }

    #[test]
    fn every_neighborhood_key_and_loc_reconnect_are_bounded() {
        for (key, bounds) in neighborhood_bounds(true) {
            assert_bounds(&format!("neighborhood.{key}"), bounds);
        }
        assert_bounds("loc.reconnect_secs", LOC_RECONNECT_SECS);
        assert_bounds("can.request_timeout_secs", CAN_REQUEST_TIMEOUT_SECS);
        assert_bounds("can.max_concurrent_requests", CAN_MAX_CONCURRENT_REQUESTS);
        assert_bounds("can.health_check_secs", CAN_HEALTH_CHECK_SECS);
        assert_bounds(
            "loc.neighborhood_refresh_secs",
            LOC_NEIGHBORHOOD_REFRESH_SECS,
        );
    }

    #[test]
    fn can_url_must_be_host_and_port_apart_from_our_ports() {
        for bad in [
            "https://127.0.0.1:15001",
            "http://127.0.0.1",
            "http://127.0.0.1:15001/api",
        ] {
            let found = problems(&format!("test_mode = true\n[can]\napi_url = {bad:?}\n"));
            assert_eq!(found[0].key, "can.api_url", "{bad}");
        }
        let found = problems("test_mode = true\n[loc]\naddress = \"127.0.0.1:15001\"\n[can]\n");
        assert_eq!(found[0].key, "can.api_url");
        let config =
            Config::parse("test_mode = true\n[can]\napi_url = \"http://localhost:5001/\"\n");
        assert_eq!(
            config
                .expect("valid")
                .can
                .expect("can")
                .request_timeout_secs,
            20
        );
    }
}
