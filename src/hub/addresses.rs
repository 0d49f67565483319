//! What one IP address may take from the server: open connections, its share of the in-flight
//! budget for frames still arriving, and hourly quotas: hosting registrations and neighbourhood
//! initialisations started by followers.
//!
//! The table holds an entry per address with an open connection or a quota counted in the last
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

/// The span over which quotas are counted.
pub(crate) const QUOTA_WINDOW: Duration = Duration::from_secs(3600);

/// What an address may do only so often per [`QUOTA_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    /// RegisterHosting that reached the database.
    Registration,
    /// StartNeighborhoodInitialization that was accepted.
    FollowerStart,
}

/// The per-address limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddressLimits {
    /// Open connections per address.
    pub connections: u32,
    /// Registrations per address per [`QUOTA_WINDOW`].
    pub registrations: u32,
    /// Follower initialisations per address per [`QUOTA_WINDOW`].
    pub follower_starts: u32,
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
    /// Per [`Quota`]: when its current window started, and how many it counted.
    windows: [Option<(Instant, u32)>; 2],
}

impl Entry {
    /// Whether no window of this address counts anything any more.
    fn windows_are_over(&self, now: Instant) -> bool {
        self.windows
            .iter()
            .all(|window| window_is_over(*window, now))
    }

    fn earliest_window(&self) -> Option<Instant> {
        self.windows.iter().flatten().map(|(start, _)| *start).min()
    }
}

fn window_is_over(window: Option<(Instant, u32)>, now: Instant) -> bool {
    window.is_none_or(|(start, _)| now.duration_since(start) >= QUOTA_WINDOW)
}

/// The table of addresses.
#[derive(Debug)]
pub(crate) struct Addresses {
    limits: AddressLimits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// An open connection's share of its address; dropping it frees the share.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
    share: Arc<Semaphore>,
}

impl AddressSlot {
    /// The address's permits for bytes of frames still arriving, shared by its connections.
    pub(crate) fn inflight_share(&self) -> &Arc<Semaphore> {
        &self.share
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.addresses.table();
        if let Some(entry) = table.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 && entry.windows.iter().all(Option::is_none) {
                table.remove(&self.ip);
            }
        }
    }
}

impl Addresses {
    /// An empty table.
    pub(crate) fn new(limits: AddressLimits) -> Arc<Addresses> {
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
    pub(crate) fn connect(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<AddressSlot> {
        let mut table = self.table();
        if !table.contains_key(&ip) && table.len() >= self.limits.capacity {
            make_room(&mut table, now);
        }
        let share = self.limits.inflight_share;
        let entry = table.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            share: Arc::new(Semaphore::new(share)),
            windows: [None; 2],
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

    /// Counts one use of `quota` by the connection holding `slot`; `false` when its address
    /// had its share of the current hour (nothing is counted then).
    pub(crate) fn take(&self, slot: &AddressSlot, quota: Quota, now: Instant) -> bool {
        let limit = match quota {
            Quota::Registration => self.limits.registrations,
            Quota::FollowerStart => self.limits.follower_starts,
        };
        let mut table = self.table();
        let Some(entry) = table.get_mut(&slot.ip) else {
            // A slot's entry lives as long as the slot.
            return false;
        };
        let window = &mut entry.windows[quota as usize];
        if window_is_over(*window, now) {
            *window = Some((now, 0));
        }
        match window {
            Some((_, count)) if *count < limit => {
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

/// Drops addresses without connections whose windows are over; if none is, the one whose
/// window started first.
fn make_room(table: &mut HashMap<IpAddr, Entry>, now: Instant) {
    table.retain(|_, entry| entry.connections > 0 || !entry.windows_are_over(now));
    let oldest = table
        .iter()
        .filter(|(_, entry)| entry.connections == 0)
        .filter_map(|(ip, entry)| Some((entry.earliest_window()?, *ip)))
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
            follower_starts: 3,
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
        assert!(addresses.take(&slot, Quota::Registration, start));
        assert!(addresses.take(&slot, Quota::Registration, start + Duration::from_secs(60)));
        assert!(!addresses.take(&slot, Quota::Registration, start + Duration::from_secs(120)));
        assert!(
            addresses.take(&other, Quota::Registration, start),
            "others unaffected"
        );
        let next_hour = start + QUOTA_WINDOW;
        assert!(addresses.take(&slot, Quota::Registration, next_hour));
    }

    #[test]
    fn each_quota_counts_apart() {
        let addresses = table(10, 1, 100);
        let now = Instant::now();
        let slot = addresses.connect(ip(1), now).expect("slot");
        assert!(addresses.take(&slot, Quota::Registration, now));
        assert!(!addresses.take(&slot, Quota::Registration, now));
        for _ in 0..3 {
            assert!(addresses.take(&slot, Quota::FollowerStart, now));
        }
        assert!(!addresses.take(&slot, Quota::FollowerStart, now));
        assert!(addresses.take(&slot, Quota::FollowerStart, now + QUOTA_WINDOW));
    }

    #[test]
    fn a_closed_connection_leaves_its_count_for_the_hour() {
        let addresses = table(10, 1, 100);
        let now = Instant::now();
        let slot = addresses.connect(ip(1), now).expect("slot");
        assert!(addresses.take(&slot, Quota::Registration, now));
        drop(slot);
        let again = addresses.connect(ip(1), now).expect("slot");
        assert!(
            !addresses.take(&again, Quota::Registration, now),
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
            assert!(addresses.take(&slot, Quota::Registration, now));
            drop(slot);
            assert!(addresses.len() <= 4);
        }
    }
}
