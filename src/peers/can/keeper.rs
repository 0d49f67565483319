//! When to add, unpin and publish the server's contact record (spec §8): sans-I/O, driven by
//! `now` and by the outcome of each call, so the schedule is tested without a CAN node or a
//! clock.
//!
//! The rules: the object must carry the current external address and primary port (otherwise
//! unpin the old one, then add a new one); the IPNS record is published at start-up and after
//! every new object, refreshed 2 h after the first publication and every 7 h after that; a
//! failed call is retried 10 s later.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::records::CanContact;

/// Wait after a failed call.
pub const RETRY: Duration = Duration::from_secs(10);
/// First refresh after the start-up publication.
pub const FIRST_REFRESH: Duration = Duration::from_secs(2 * 3600);
/// Refresh interval after the first.
pub const REFRESH: Duration = Duration::from_secs(7 * 3600);

/// What the keeper wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Unpin the object with this multihash: it carries an old address or port.
    Unpin(Vec<u8>),
    /// Add the current contact object.
    Add,
    /// Publish the record for the stored object with this sequence number; the state to save
    /// first is in [`Keeper::stored`] (the number is reserved, so it is never used twice).
    Publish(u64),
    /// Nothing until then.
    Wait(Instant),
}

/// The state of the server's contact record.
#[derive(Debug)]
pub struct Keeper {
    /// As it must be persisted.
    stored: CanContact,
    /// The address and port the object must carry.
    address: Vec<u8>,
    port: u32,
    /// When the record is due next.
    publish_due: Instant,
    /// Records published in this run.
    published: u32,
    /// After a failure: no call before this.
    retry_at: Option<Instant>,
}

impl Keeper {
    /// Starts from what was saved; the record is due at once.
    pub fn new(stored: CanContact, address: Vec<u8>, port: u16, now: Instant) -> Keeper {
        Keeper {
            stored,
            address,
            port: u32::from(port),
            publish_due: now,
            published: 0,
            retry_at: None,
        }
    }

    /// What to persist.
    pub fn stored(&self) -> &CanContact {
        &self.stored
    }

    /// The external address the object must carry (4 or 16 bytes).
    pub fn address(&self) -> &[u8] {
        &self.address
    }

    /// Whether the stored object is the one to publish.
    fn object_current(&self) -> bool {
        self.stored.ip_address == self.address && self.stored.primary_port == self.port
    }

    /// The next action at `now`. A [`Action::Publish`] reserves its sequence number.
    pub fn next(&mut self, now: Instant) -> Action {
        if let Some(at) = self.retry_at.filter(|&at| now < at) {
            return Action::Wait(at);
        }
        self.retry_at = None;
        if !self.stored.object_hash.is_empty() && !self.object_current() {
            return Action::Unpin(self.stored.object_hash.clone());
        }
        if self.stored.object_hash.is_empty() {
            return Action::Add;
        }
        if now < self.publish_due {
            return Action::Wait(self.publish_due);
        }
        self.stored.ipns_sequence = self.stored.ipns_sequence.saturating_add(1);
        Action::Publish(self.stored.ipns_sequence)
    }

    /// The old object is unpinned.
    pub fn unpinned(&mut self) {
        self.stored.object_hash.clear();
    }

    /// The current object was added as `hash`; its record is due at once.
    pub fn added(&mut self, hash: Vec<u8>, now: Instant) {
        self.stored.object_hash = hash;
        self.stored.ip_address.clone_from(&self.address);
        self.stored.primary_port = self.port;
        self.publish_due = now;
    }

    /// The record was published.
    pub fn published(&mut self, now: Instant) {
        self.published += 1;
        let wait = if self.published == 1 {
            FIRST_REFRESH
        } else {
            REFRESH
        };
        self.publish_due = now + wait;
    }

    /// The node holds a record with sequence `at_least` already (e.g. the database was
    /// restored from a backup): the next number goes above it.
    pub fn sequence_taken(&mut self, at_least: u64) {
        self.stored.ipns_sequence = self.stored.ipns_sequence.max(at_least);
    }

    /// A call failed; try again after [`RETRY`].
    pub fn failed(&mut self, now: Instant) {
        self.retry_at = Some(now + RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn fresh(now: Instant) -> Keeper {
        Keeper::new(CanContact::default(), vec![203, 0, 113, 7], 16987, now)
    }

    #[test]
    fn first_start_adds_then_publishes_and_refreshes_after_2_then_every_7_hours() {
        let start = Instant::now();
        let mut keeper = fresh(start);
        assert_eq!(keeper.next(start), Action::Add);
        keeper.added(vec![0x12, 0x20, 1], start);
        assert_eq!(keeper.next(start), Action::Publish(1));
        keeper.published(start);
        assert_eq!(keeper.next(start + HOUR), Action::Wait(start + 2 * HOUR));
        assert_eq!(keeper.next(start + 2 * HOUR), Action::Publish(2));
        keeper.published(start + 2 * HOUR);
        assert_eq!(
            keeper.next(start + 3 * HOUR),
            Action::Wait(start + 9 * HOUR)
        );
        assert_eq!(keeper.next(start + 9 * HOUR), Action::Publish(3));
        keeper.published(start + 9 * HOUR);
        assert_eq!(
            keeper.next(start + 9 * HOUR),
            Action::Wait(start + 16 * HOUR)
        );
        assert_eq!(keeper.stored().ipns_sequence, 3);
    }

    /// A keeper for port 16987 restarted on what an earlier run saved for `saved_port`.
    fn restarted(saved_port: u32, sequence: u64, start: Instant) -> Keeper {
        let stored = CanContact {
            object_hash: vec![0x12, 0x20, 9],
            ip_address: vec![203, 0, 113, 7],
            primary_port: saved_port,
            ipns_sequence: sequence,
        };
        Keeper::new(stored, vec![203, 0, 113, 7], 16987, start)
    }

    #[test]
    fn an_unchanged_address_reuses_the_object_and_continues_the_sequence() {
        let start = Instant::now();
        let mut keeper = restarted(16987, 41, start);
        assert_eq!(keeper.next(start), Action::Publish(42));
    }

    #[test]
    fn a_new_port_unpins_the_old_object_before_adding_the_new_one() {
        let start = Instant::now();
        let mut keeper = restarted(16000, 5, start);
        assert_eq!(keeper.next(start), Action::Unpin(vec![0x12, 0x20, 9]));
        keeper.unpinned();
        assert_eq!(keeper.next(start), Action::Add);
        keeper.added(vec![0x12, 0x20, 10], start);
        assert_eq!(keeper.stored().primary_port, 16987);
        assert_eq!(keeper.next(start), Action::Publish(6));
    }

    #[test]
    fn failures_retry_after_10_seconds_without_reusing_a_sequence_number() {
        let start = Instant::now();
        let mut keeper = fresh(start);
        assert_eq!(keeper.next(start), Action::Add);
        keeper.failed(start);
        assert_eq!(keeper.next(start + RETRY / 2), Action::Wait(start + RETRY));
        assert_eq!(keeper.next(start + RETRY), Action::Add);
        keeper.added(vec![0x12, 0x20, 1], start + RETRY);
        assert_eq!(keeper.next(start + RETRY), Action::Publish(1));
        keeper.failed(start + RETRY);
        assert_eq!(keeper.next(start + 2 * RETRY), Action::Publish(2));
        keeper.sequence_taken(7);
        keeper.failed(start + 2 * RETRY);
        assert_eq!(keeper.next(start + 3 * RETRY), Action::Publish(8));
    }
}
