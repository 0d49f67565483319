//! What one IP address may take from the server: open connections, its share of the in-flight
//! budget for frames still arriving, and hosting registrations per hour.
//!
//! The table holds an entry per address with an open connection or a registration in the last
//! hour. Entries are created only by connections, so it never holds more than
//! `max_connections` addresses with connections; addresses whose connections closed are dropped
//! once their hour is over, or earlier, oldest first, when the table reaches its capacity.
//! Sans-I/O: callers pass the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The span over which registrations are counted.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

/// The per-address limits.
#[derive(Debug, Clone, Copy)]
pub struct AddressLimits {
    /// Open connections per address.
    pub connections: u32,
    /// Registrations per address per [`REGISTRATION_WINDOW`].
    pub registrations: u32,
    /// Bytes of frames still arriving that one address may hold.
    pub inflight_share: usize,
    /// Most addresses remembered; at least the server's `max_connections`.
    pub capacity: usize,
}

#[derive(Debug)]
struct Entry {
    connections: u32,
    /// Permits for the bytes of frames its connections are receiving.
    share: Arc<Semaphore>,
    /// When the current registration window started, and how many it counted.
    registrations: Option<(Instant, u32)>,
}

impl Entry {
    fn window_is_over(&self, now: Instant) -> bool {
        self.registrations
            .is_none_or(|(start, _)| now.duration_since(start) >= REGISTRATION_WINDOW)
    }
}

/// The table of addresses.
#[derive(Debug)]
pub struct Addresses {
    limits: AddressLimits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// An open connection's share of its address; dropping it frees the share.
#[derive(Debug)]
pub struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
    share: Arc<Semaphore>,
}

impl AddressSlot {
    /// The address's permits for bytes of frames still arriving, shared by its connections.
    pub fn inflight_share(&self) -> &Arc<Semaphore> {
        &self.share
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.addresses.table();
        if let Some(entry) = table.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 && entry.registrations.is_none() {
                table.remove(&self.ip);
            }
        }
    }
}

impl Addresses {
    /// An empty table.
    pub fn new(limits: AddressLimits) -> Arc<Addresses> {
        Arc::new(Addresses {
            limits,
            table: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // The table stays consistent between statements, so a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection from `ip`, or `None` when the address already holds its share.
    pub fn connect(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<AddressSlot> {
        let mut table = self.table();
        if !table.contains_key(&ip) && table.len() >= self.limits.capacity {
            make_room(&mut table, now);
        }
        let share = self.limits.inflight_share;
        let entry = table.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            share: Arc::new(Semaphore::new(share)),
            registrations: None,
        });
        if entry.connections >= self.limits.connections {
            return None;
        }
        entry.connections += 1;
        Some(AddressSlot {
            addresses: Arc::clone(self),
            ip,
            share: Arc::clone(&entry.share),
        })
    }

    /// Counts one registration from the connection holding `slot`; `false` when its address
    /// had its share of the current hour (nothing is counted then).
    pub fn take_registration(&self, slot: &AddressSlot, now: Instant) -> bool {
        let mut table = self.table();
        let Some(entry) = table.get_mut(&slot.ip) else {
            // A slot's entry lives as long as the slot.
            return false;
        };
        if entry.window_is_over(now) {
            entry.registrations = Some((now, 0));
        }
        match &mut entry.registrations {
            Some((_, count)) if *count < self.limits.registrations => {
                *count += 1;
                true
            }
            _ => false,
        }
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

/// Drops addresses without connections whose hour is over; if none is, the one whose window
/// started first.
fn make_room(table: &mut HashMap<IpAddr, Entry>, now: Instant) {
    table.retain(|_, entry| entry.connections > 0 || !entry.window_is_over(now));
    let oldest = table
        .iter()
        .filter(|(_, entry)| entry.connections == 0)
        .filter_map(|(ip, entry)| entry.registrations.map(|(start, _)| (start, *ip)))
        .min();
    if let Some((_, ip)) = oldest {
        table.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn table(connections: u32, registrations: u32, capacity: usize) -> Arc<Addresses> {
        Addresses::new(AddressLimits {
            connections,
            registrations,
            inflight_share: 1 << 20,
            capacity,
        })
    }

    #[test]
    fn each_address_gets_its_share_of_connections() {
        let addresses = table(2, 10, 100);
        let now = Instant::now();
        let first = addresses.connect(ip(1), now).expect("first");
        let _second = addresses.connect(ip(1), now).expect("second");
        assert!(addresses.connect(ip(1), now).is_none(), "third refused");
        assert!(addresses.connect(ip(2), now).is_some(), "others unaffected");
        drop(first);
        assert!(
            addresses.connect(ip(1), now).is_some(),
            "a closed one frees its share"
        );
    }

    #[test]
    fn registrations_are_counted_per_address_per_hour() {
        let addresses = table(10, 2, 100);
        let start = Instant::now();
        let slot = addresses.connect(ip(1), start).expect("slot");
        let other = addresses.connect(ip(2), start).expect("slot");
        assert!(addresses.take_registration(&slot, start));
        assert!(addresses.take_registration(&slot, start + Duration::from_secs(60)));
        assert!(!addresses.take_registration(&slot, start + Duration::from_secs(120)));
        assert!(
            addresses.take_registration(&other, start),
            "others unaffected"
        );
        let next_hour = start + REGISTRATION_WINDOW;
        assert!(addresses.take_registration(&slot, next_hour));
    }

    #[test]
    fn a_closed_connection_leaves_its_count_for_the_hour() {
        let addresses = table(10, 1, 100);
        let now = Instant::now();
        let slot = addresses.connect(ip(1), now).expect("slot");
        assert!(addresses.take_registration(&slot, now));
        drop(slot);
        let again = addresses.connect(ip(1), now).expect("slot");
        assert!(
            !addresses.take_registration(&again, now),
            "reconnecting resets nothing"
        );
        drop(again);
        let idle = table(10, 1, 100);
        drop(idle.connect(ip(3), now));
        assert_eq!(
            idle.len(),
            0,
            "an address without registrations is forgotten at once"
        );
    }

    #[test]
    fn the_table_never_outgrows_its_capacity() {
        let addresses = table(10, 1, 4);
        let now = Instant::now();
        for last in 0..50 {
            let slot = addresses.connect(ip(last), now).expect("room is made");
            assert!(addresses.take_registration(&slot, now));
            drop(slot);
            assert!(addresses.len() <= 4);
        }
    }
}
