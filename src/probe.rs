//! `iop-profile-server probe HOST[:PORT]`: checks a profile server from the outside the way a
//! client finds it: ListRoles on the primary port, then on every port it lists a connection
//! (TLS where it says TLS), a Ping and a StartConversation whose signature proves the server's
//! key. Port forwarding, TLS and identity are checked in one go; every port must answer and
//! every port must be the same server.
//!
//! It is also the shortest complete example of talking to the protocol: see
//! [`crate::peers::client::PeerClient`] for the framing.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::{NetworkId, ServerKey};
use crate::peers::client::{PeerClient, PeerError, TlsInfo};
use crate::role::Role;
use crate::wire::ps::{self, single_request, single_response};

/// The primary port when the command line names none (spec §2.1).
pub(crate) const DEFAULT_PRIMARY_PORT: u16 = 16987;

/// One port's result.
#[derive(Clone, Debug)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// The roles the server says it serves there.
    pub roles: Vec<String>,
    /// Whether the server says it speaks TLS there.
    pub tls_expected: bool,
    /// What happened.
    pub outcome: Result<PortAnswer, String>,
}

/// A port that answered.
#[derive(Clone, Debug)]
pub struct PortAnswer {
    /// What TLS negotiated; `None` on a plain port.
    pub tls: Option<TlsInfo>,
    /// Connect (and TLS handshake) time.
    pub connect: Duration,
    /// Round trip of the Ping (ListRoles on the primary port).
    pub round_trip: Duration,
    /// The network id the port's StartConversation proved.
    pub network_id: NetworkId,
}

/// The whole probe.
#[derive(Clone, Debug)]
pub struct Report {
    /// The address probed.
    pub address: SocketAddr,
    /// The primary port first, then every other port ListRoles named.
    pub ports: Vec<PortReport>,
}

impl Report {
    /// Every port answered, and all with the same network id.
    pub fn ok(&self) -> bool {
        self.ports.iter().all(|p| p.outcome.is_ok()) && self.network_ids().len() == 1
    }

    fn network_ids(&self) -> Vec<NetworkId> {
        let mut ids: Vec<NetworkId> = self
            .ports
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok().map(|a| a.network_id))
            .collect();
        ids.dedup();
        ids
    }

    /// The report for people: a line per port, then the verdict.
    pub fn render(&self) -> String {
        let mut out = format!("probe {}\n", self.address);
        for port in &self.ports {
            let roles = port.roles.join(", ");
            let what = match &port.outcome {
                Ok(answer) => {
                    let tls = answer.tls.as_ref().map_or_else(
                        || "plain".to_owned(),
                        |t| format!("{} {}", t.version, t.cipher),
                    );
                    format!(
                        "ok  {tls}  connect {:.1} ms  round trip {:.1} ms  id {}",
                        millis(answer.connect),
                        millis(answer.round_trip),
                        answer.network_id
                    )
                }
                Err(why) => format!("FAILED: {why}"),
            };
            let _ = writeln!(out, "port {:<5} ({roles})  {what}", port.port);
        }
        let ids = self.network_ids();
        let verdict = match ids.as_slice() {
            _ if self.ports.iter().any(|p| p.outcome.is_err()) => {
                let failed = self.ports.iter().filter(|p| p.outcome.is_err()).count();
                format!("{failed} of {} ports failed", self.ports.len())
            }
            [id] => format!("network id {id}: every port answers"),
            _ => "the ports answer with different network ids: they are not one server".into(),
        };
        let _ = writeln!(out, "{verdict}");
        out
    }
}

/// The first address of `HOST[:PORT]` (a name, an IPv4 address, or an IPv6 address in
/// brackets when a port follows); the port defaults to [`DEFAULT_PRIMARY_PORT`].
pub fn resolve(target: &str) -> Result<SocketAddr, String> {
    use std::net::{IpAddr, ToSocketAddrs as _};
    if let Ok(address) = target.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(ip) = target.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PRIMARY_PORT));
    }
    let with_port = match target.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => target.to_owned(),
        Some(_) => {
            return Err(format!(
                "'{target}': the port must be a number from 0 to 65535"
            ));
        }
        None => format!("{target}:{DEFAULT_PRIMARY_PORT}"),
    };
    with_port
        .to_socket_addrs()
        .map_err(|error| format!("'{target}': {error}"))?
        .next()
        .ok_or_else(|| format!("'{target}': no address"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Probes the server at `address`, giving each port at most `wait`.
pub async fn probe(address: SocketAddr, wait: Duration) -> Report {
    // A throwaway identity: StartConversation needs a key to sign the challenge for.
    let key = ServerKey::generate();
    let (mut primary, roles) = primary_port(address, &key, wait).await;
    // A plain request to a TLS port reads the TLS alert as a bad frame: say what it is.
    if primary.outcome.is_err()
        && let Ok(client) = within(wait, PeerClient::connect_with(address, true)).await
    {
        client.close().await;
        primary.outcome = Err(format!(
            "port {} speaks TLS, so it is not a primary port: probe the node's primary port \
             (plain TCP, 16987 by default), which lists the others",
            address.port()
        ));
    }
    let mut ports = vec![primary];
    for (port, tls_expected, names) in roles {
        let outcome = within(
            wait,
            other_port(SocketAddr::new(address.ip(), port), tls_expected, &key),
        )
        .await;
        ports.push(PortReport {
            port,
            roles: names,
            tls_expected,
            outcome,
        });
    }
    Report { address, ports }
}

/// A role list grouped by port: port, TLS, role names.
type PortRoles = Vec<(u16, bool, Vec<String>)>;

async fn within<T>(
    wait: Duration,
    work: impl Future<Output = Result<T, PeerError>>,
) -> Result<T, String> {
    match tokio::time::timeout(wait, work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", wait.as_secs())),
    }
}

/// ListRoles and StartConversation on the primary port; the other ports it names.
async fn primary_port(
    address: SocketAddr,
    key: &ServerKey,
    wait: Duration,
) -> (PortReport, PortRoles) {
    let mut others = PortRoles::new();
    let list_roles = single_request::RequestType::ListRoles(ps::ListRolesRequest {});
    let outcome = within(
        wait,
        check_port(address, false, key, list_roles, |answer| match answer {
            single_response::ResponseType::ListRoles(list) => {
                others = group_by_port(&list.roles, address.port());
                Ok(())
            }
            _ => Err(PeerError::Protocol("not a ListRoles response")),
        }),
    )
    .await;
    let report = PortReport {
        port: address.port(),
        roles: vec![Role::Primary.config_name().to_owned()],
        tls_expected: false,
        outcome,
    };
    (report, others)
}

/// Ping and StartConversation on one port.
async fn other_port(
    address: SocketAddr,
    tls: bool,
    key: &ServerKey,
) -> Result<PortAnswer, PeerError> {
    let payload = b"iop-profile-server probe".to_vec();
    let ping = single_request::RequestType::Ping(ps::PingRequest {
        payload: payload.clone(),
    });
    check_port(address, tls, key, ping, |answer| match answer {
        single_response::ResponseType::Ping(pong) if pong.payload == payload => Ok(()),
        _ => Err(PeerError::Protocol("Ping not answered with its payload")),
    })
    .await
}

/// Connects (over TLS when `tls`), sends `request` and hands its answer to `check`, timing the
/// connection and the round trip; then StartConversation proves the server's key.
async fn check_port(
    address: SocketAddr,
    tls: bool,
    key: &ServerKey,
    request: single_request::RequestType,
    check: impl FnOnce(single_response::ResponseType) -> Result<(), PeerError>,
) -> Result<PortAnswer, PeerError> {
    let started = Instant::now();
    let mut client = PeerClient::connect_with(address, tls).await?;
    let connect = started.elapsed();
    let sent = Instant::now();
    let answer = client.single(request).await?;
    let round_trip = sent.elapsed();
    check(answer)?;
    let (network_id, _) = client.start_conversation(key).await?;
    let tls = client.tls().cloned();
    client.close().await;
    Ok(PortAnswer {
        tls,
        connect,
        round_trip,
        network_id,
    })
}

/// The ports of `roles` other than `primary`, each with its TLS flag and role names, in the
/// order they were listed.
fn group_by_port(roles: &[ps::ServerRole], primary: u16) -> PortRoles {
    let mut ports = PortRoles::new();
    for role in roles {
        let Ok(port) = u16::try_from(role.port) else {
            continue;
        };
        if port == primary || port == 0 {
            continue;
        }
        let name = Role::ALL
            .iter()
            .find(|r| r.wire_value() == role.role)
            .map_or_else(
                || format!("role {}", role.role),
                |r| r.config_name().to_owned(),
            );
        match ports.iter_mut().find(|(p, _, _)| *p == port) {
            Some((_, tls, names)) => {
                *tls |= role.is_tls;
                names.push(name);
            }
            None => ports.push((port, role.is_tls, vec![name])),
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(role: Role, port: u32, is_tls: bool) -> ps::ServerRole {
        ps::ServerRole {
            role: role.wire_value(),
            port,
            is_tcp: true,
            is_tls,
        }
    }

    #[test]
    fn targets_take_the_default_port_unless_they_name_one() {
        let default = |ip: &str| format!("{ip}:{DEFAULT_PRIMARY_PORT}").parse().ok();
        assert_eq!(resolve("127.0.0.1").ok(), default("127.0.0.1"));
        assert_eq!(resolve("::1").ok(), default("[::1]"));
        assert_eq!(resolve("[::1]").ok(), default("[::1]"));
        assert_eq!(resolve("[::1]:5").ok(), "[::1]:5".parse().ok());
        assert_eq!(resolve("localhost:7").map(|a| a.port()), Ok(7));
        assert!(resolve("localhost:x").is_err());
    }

    #[test]
    fn roles_are_grouped_by_port_without_the_primary() {
        let roles = [
            role(Role::Primary, 16987, false),
            role(Role::SrNeighbor, 16988, true),
            role(Role::ClNonCustomer, 16988, true),
            role(Role::ClAppService, 16989, true),
        ];
        let grouped = group_by_port(&roles, 16987);
        assert_eq!(
            grouped,
            vec![
                (
                    16988,
                    true,
                    vec!["sr_neighbor".into(), "cl_non_customer".into()]
                ),
                (16989, true, vec!["cl_app_service".into()]),
            ]
        );
    }
}
