//! What is known of the other profile servers' liveness: which neighbours and followers have
//! not answered, since when (for `status`), and the signs of life they gave (a connection of
//! theirs with a neighbourhood request), which cut a retry's wait short.
//!
//! Bounded: a failure is recorded only for a server that is a neighbour or follower (at most
//! `limits.max_neighbors` and `limits.max_follower_servers`), and at most [`MAX_SIGNS`] signs of
//! life wait per side; a sign beyond that is dropped (it only hastens a retry).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Signs of life kept per side until its task takes them.
pub(crate) const MAX_SIGNS: usize = 256;

/// A server that started following us: LOC neighbourhoods are mutual, so it is a neighbour
/// of ours too, even when our LOC has not learnt its Profile service yet (LOC 2.0 accepts and
/// renews a peer without its services).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its network id, proven by its signature.
    pub id: [u8; 32],
    /// The address it gave (its own source address outside test mode).
    pub address: IpAddr,
    /// The primary port it gave.
    pub primary_port: u16,
}

/// Which relation to us a server has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// It shares its profiles with us.
    Neighbor,
    /// We share ours with it.
    Follower,
}

/// Liveness of neighbours and followers (see the module notes).
#[derive(Debug, Default)]
pub(crate) struct PeerHealth {
    inner: Mutex<Inner>,
    neighbor_signs: Notify,
    follower_signs: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Since when (Unix ms) each failing server has not answered.
    failing: HashMap<(Side, [u8; 32]), i64>,
    /// Servers that showed life, per side, not yet taken.
    signs: HashMap<Side, HashSet<[u8; 32]>>,
    /// Followers to consider as neighbours, not yet taken (at most [`MAX_SIGNS`]).
    candidates: VecDeque<Candidate>,
}

/// The failing servers of one side: how many, and since when the oldest failure lasts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Failing {
    /// How many do not answer.
    pub count: u64,
    /// When the longest-lasting failure began (Unix ms).
    pub since_ms: Option<i64>,
}

impl PeerHealth {
    /// `id` did not answer at `now_ms`; a failure already recorded keeps its start.
    pub(crate) fn failed(&self, side: Side, id: [u8; 32], now_ms: i64) {
        self.lock().failing.entry((side, id)).or_insert(now_ms);
    }

    /// `id` answered (or is no longer ours to ask): its failure is over.
    pub(crate) fn answered(&self, side: Side, id: [u8; 32]) {
        self.lock().failing.remove(&(side, id));
    }

    /// Forgets the failures of `side`'s servers other than `current` (those that are no longer
    /// neighbours or followers).
    pub(crate) fn keep_only(&self, side: Side, current: &[[u8; 32]]) {
        self.lock()
            .failing
            .retain(|(of, id), _| *of != side || current.contains(id));
    }

    /// The failing servers of `side`.
    pub(crate) fn failing(&self, side: Side) -> Failing {
        let inner = self.lock();
        let mut failing = Failing::default();
        for ((of, _), since) in &inner.failing {
            if *of == side {
                failing.count += 1;
                failing.since_ms = Some(failing.since_ms.map_or(*since, |s| s.min(*since)));
            }
        }
        failing
    }

    /// `id` showed life (it sent us a neighbourhood request): the tasks of both sides may try
    /// it again at once.
    pub(crate) fn showed_life(&self, id: [u8; 32]) {
        let mut inner = self.lock();
        for side in [Side::Neighbor, Side::Follower] {
            let signs = inner.signs.entry(side).or_default();
            if signs.len() < MAX_SIGNS {
                signs.insert(id);
            }
        }
        drop(inner);
        self.neighbor_signs.notify_one();
        self.follower_signs.notify_one();
    }

    /// `candidate` started following us: the neighbour task may take it as a neighbour.
    pub(crate) fn follower_started(&self, candidate: Candidate) {
        let mut inner = self.lock();
        if inner.candidates.len() < MAX_SIGNS {
            inner.candidates.push_back(candidate);
        }
        drop(inner);
        self.neighbor_signs.notify_one();
    }

    /// The followers to consider as neighbours since the last call.
    pub(crate) fn take_candidates(&self) -> Vec<Candidate> {
        self.lock().candidates.drain(..).collect()
    }

    /// The servers that showed life since the last call, for `side`'s task.
    pub(crate) fn take_signs(&self, side: Side) -> Vec<[u8; 32]> {
        let mut inner = self.lock();
        inner
            .signs
            .get_mut(&side)
            .map(|signs| signs.drain().collect())
            .unwrap_or_default()
    }

    /// Waits until a server showed life for `side`.
    pub(crate) async fn signs_given(&self, side: Side) {
        match side {
            Side::Neighbor => self.neighbor_signs.notified().await,
            Side::Follower => self.follower_signs.notified().await,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_start_until_the_server_answers() {
        let health = PeerHealth::default();
        health.failed(Side::Follower, [1; 32], 100);
        health.failed(Side::Follower, [1; 32], 200);
        health.failed(Side::Follower, [2; 32], 150);
        health.failed(Side::Neighbor, [3; 32], 50);
        let failing = health.failing(Side::Follower);
        assert_eq!((failing.count, failing.since_ms), (2, Some(100)));
        health.answered(Side::Follower, [1; 32]);
        assert_eq!(health.failing(Side::Follower).since_ms, Some(150));
    }

    #[test]
    fn signs_of_life_reach_each_side_once_and_are_bounded() {
        let health = PeerHealth::default();
        for i in 0..=MAX_SIGNS {
            let mut id = [0; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            health.showed_life(id);
        }
        assert_eq!(health.take_signs(Side::Neighbor).len(), MAX_SIGNS);
        assert!(health.take_signs(Side::Neighbor).is_empty());
        assert_eq!(health.take_signs(Side::Follower).len(), MAX_SIGNS);
    }
}
