//! The address this node announces to LOC, CAN and neighbour servers.
//!
//! When the configuration does not name one, the machine's own address is found here, at start:
//! parsing the configuration stays pure. Nothing else about the network belongs here.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use crate::config::Config;

/// The address to announce: `external_address` when the configuration has one (with
/// `test_mode = true` and no key the configuration already holds 127.0.0.1), otherwise the
/// machine's first non-loopback address, or 127.0.0.1 when the machine has no route at all.
pub(crate) fn external_address(config: &Config) -> IpAddr {
    config.external_address.unwrap_or_else(machine_address)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_address_wins() {
        let config = Config::parse("external_address = \"8.8.8.8\"").expect("valid");
        assert_eq!(external_address(&config), IpAddr::from([8, 8, 8, 8]));
    }

    #[test]
    fn test_mode_without_key_announces_loopback() {
        let config = Config::parse("test_mode = true").expect("valid");
        assert_eq!(external_address(&config), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn absent_key_is_discovered() {
        let config = Config::parse("").expect("valid");
        assert_eq!(config.external_address, None);
        assert!(!external_address(&config).is_unspecified());
    }
}
