//! IP addresses as the protocol carries them: 4 bytes for IPv4, 16 for IPv6 (spec §1.3).

use std::net::IpAddr;

/// The address in 4 or 16 bytes; `None` for any other length.
pub(crate) fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The wire form of an address: 4 bytes for IPv4, 16 for IPv6.
pub(crate) fn ip_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_and_other_lengths_are_refused() {
        for text in ["192.0.2.7", "2001:db8::1"] {
            let address: IpAddr = text.parse().expect("address");
            assert_eq!(ip_address(&ip_bytes(address)), Some(address));
        }
        assert_eq!(ip_address(&[1, 2, 3]), None);
        assert_eq!(ip_address(&[]), None);
    }
}
