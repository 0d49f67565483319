//! When to add, unpin and publish the server's contact record (spec §8): sans-I/O, driven by
//! `now` and by the outcome of each call, so the schedule is tested without a CAN node or a
//! clock.
//!
//! The rules: the object must carry the current external address and primary port (otherwise
//! add a new one; the old one goes to the unpin queue, which never holds the publication up);
//! the IPNS record is published at start-up, after every new object and whenever the node comes
//! back after being unreachable, refreshed 2 h after the first publication and every 7 h after
//! that; a failed call is retried 10 s later. A sequence number is reserved (and saved) before
//! its first try and reused until a publication with it succeeds, so numbers advance only with
//! publications and never repeat, across restarts too.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::records::CanContact;

/// Wait after a failed call.
pub(super) const RETRY: Duration = Duration::from_secs(10);
/// First refresh after the start-up publication.
pub(super) const FIRST_REFRESH: Duration = Duration::from_secs(2 * 3600);
/// Refresh interval after the first.
pub(super) const REFRESH: Duration = Duration::from_secs(7 * 3600);

/// What the keeper wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Add the current contact object (the stored one carries an old address or port, or
    /// there is none).
    Add,
    /// Publish the record for the stored object with this sequence number; the state to save
    /// first is in [`Keeper::stored`] (the number is reserved, so it is never used twice).
    Publish(u64),
    /// Nothing until then.
    Wait(Instant),
}

/// The state of the server's contact record.
#[derive(Debug)]
pub(super) struct Keeper {
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
    /// The sequence number reserved for the publication under way, until one succeeds.
    reserved: Option<u64>,
}

impl Keeper {
    /// Starts from what was saved; the record is due at once.
    pub(super) fn new(stored: CanContact, address: Vec<u8>, port: u16, now: Instant) -> Keeper {
        Keeper {
            stored,
            address,
            port: u32::from(port),
            publish_due: now,
            published: 0,
            retry_at: None,
            reserved: None,
        }
    }

    /// What to persist.
    pub(super) fn stored(&self) -> &CanContact {
        &self.stored
    }

    /// The external address the object must carry (4 or 16 bytes).
    pub(super) fn address(&self) -> &[u8] {
        &self.address
    }

    /// Whether the stored object is the one to publish.
    fn object_current(&self) -> bool {
        self.stored.ip_address == self.address && self.stored.primary_port == self.port
    }

    /// The next action at `now`. A [`Action::Publish`] reserves its sequence number.
    pub(super) fn next(&mut self, now: Instant) -> Action {
        if let Some(at) = self.retry_at.filter(|&at| now < at) {
            return Action::Wait(at);
        }
        self.retry_at = None;
        if self.stored.object_hash.is_empty() || !self.object_current() {
            return Action::Add;
        }
        if now < self.publish_due {
            return Action::Wait(self.publish_due);
        }
        let sequence = self.reserved.unwrap_or_else(|| {
            self.stored.ipns_sequence = self.stored.ipns_sequence.saturating_add(1);
            self.stored.ipns_sequence
        });
        self.reserved = Some(sequence);
        Action::Publish(sequence)
    }

    /// The current object was added as `hash`; its record is due at once. Returns the object
    /// it replaces (empty when none), which is to be unpinned.
    pub(super) fn added(&mut self, hash: Vec<u8>, now: Instant) -> Vec<u8> {
        let old = std::mem::replace(&mut self.stored.object_hash, hash);
        self.stored.ip_address.clone_from(&self.address);
        self.stored.primary_port = self.port;
        self.publish_due = now;
        if old == self.stored.object_hash {
            return Vec::new();
        }
        old
    }

    /// The node came back after being unreachable: it may have lost the record, so it is due
    /// again at once.
    pub(super) fn node_back(&mut self, now: Instant) {
        self.publish_due = self.publish_due.min(now);
    }

    /// The record was published.
    pub(super) fn published(&mut self, now: Instant) {
        self.reserved = None;
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
    pub(super) fn sequence_taken(&mut self, at_least: u64) {
        self.stored.ipns_sequence = self.stored.ipns_sequence.max(at_least);
        if self.reserved.is_some_and(|reserved| reserved <= at_least) {
            self.reserved = None;
        }
    }

    /// A call failed; try again after [`RETRY`].
    pub(super) fn failed(&mut self, now: Instant) {
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
    fn a_new_port_adds_the_new_object_at_once_and_hands_the_old_one_to_unpinning() {
        let start = Instant::now();
        let mut keeper = restarted(16000, 5, start);
        assert_eq!(keeper.next(start), Action::Add);
        let old = keeper.added(vec![0x12, 0x20, 10], start);
        assert_eq!(old, vec![0x12, 0x20, 9]);
        assert_eq!(keeper.stored().primary_port, 16987);
        assert_eq!(keeper.next(start), Action::Publish(6));
    }

    #[test]
    fn a_failed_publication_is_retried_with_the_same_number_after_10_seconds() {
        let start = Instant::now();
        let mut keeper = fresh(start);
        assert_eq!(keeper.next(start), Action::Add);
        keeper.failed(start);
        assert_eq!(keeper.next(start + RETRY / 2), Action::Wait(start + RETRY));
        assert_eq!(keeper.next(start + RETRY), Action::Add);
        keeper.added(vec![0x12, 0x20, 1], start + RETRY);
        assert_eq!(keeper.next(start + RETRY), Action::Publish(1));
        for attempt in 1..20 {
            keeper.failed(start + RETRY * attempt);
            assert_eq!(
                keeper.next(start + RETRY * (attempt + 1)),
                Action::Publish(1)
            );
        }
        keeper.sequence_taken(7);
        assert_eq!(keeper.next(start + 30 * RETRY), Action::Publish(8));
        keeper.published(start + 30 * RETRY);
        assert_eq!(keeper.stored().ipns_sequence, 8);
    }

    #[test]
    fn a_node_back_after_an_outage_gets_the_record_again() {
        let start = Instant::now();
        let mut keeper = restarted(16987, 1, start);
        assert_eq!(keeper.next(start), Action::Publish(2));
        keeper.published(start);
        assert_eq!(keeper.next(start + RETRY), Action::Wait(start + 2 * HOUR));
        keeper.node_back(start + RETRY);
        assert_eq!(keeper.next(start + RETRY), Action::Publish(3));
    }
}
