//! The one home of profile changes, hosted and shared: every change is committed here, queues
//! its follower actions in the same transaction (the store does that), updates the search index
//! from the profile it decoded, and wakes delivery to followers. Handlers and `peers` call it;
//! nothing else writes to the search index or wakes delivery.
//!
//! Changes to one hosted identity, and updates from one neighbour, are serialised (a striped
//! lock), so the index sees them in the order they were committed; changes of different
//! identities and neighbours still share their fsyncs (`store::group_commit`).
//!
//! No sockets: this room sits below handlers and `peers`, beside the session rules.

mod hosted;
mod shared;

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard, Notify};

pub(crate) use shared::Received;

use crate::search::Search;
use crate::store::Store;

/// Locks that serialise changes per identity or neighbour, picked by the id's first byte.
const STRIPES: usize = 64;

/// Profile changes and what follows from them (see the module notes).
pub(crate) struct Catalog {
    store: Store,
    search: Arc<Search>,
    deliveries: Notify,
    stripes: Box<[Mutex<()>]>,
    /// Most profiles one neighbour may share (spec §4.19: 20,000; smaller in tests).
    max_shared: u32,
    /// Threads that check a neighbour's signatures at once.
    check_threads: usize,
}

impl Catalog {
    /// A catalog over `store` whose search index is `search`, built from the same store.
    pub(crate) fn new(
        store: Store,
        search: Search,
        max_shared: u32,
        check_threads: usize,
    ) -> Catalog {
        Catalog {
            store,
            search: Arc::new(search),
            deliveries: Notify::new(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            max_shared,
            check_threads: check_threads.max(1),
        }
    }

    /// The search index, for queries.
    pub(crate) fn search(&self) -> &Arc<Search> {
        &self.search
    }

    /// Waits until follower actions were queued or a follower finished its initialisation.
    pub(crate) async fn deliveries_wanted(&self) {
        self.deliveries.notified().await;
    }

    /// Asks the follower delivery to run now (a follower became ready for its queue).
    pub(crate) fn wake_delivery(&self) {
        self.deliveries.notify_one();
    }

    /// Serialises changes about `id` (a hosted identity or a neighbour server).
    async fn serialise(&self, id: &[u8; 32]) -> MutexGuard<'_, ()> {
        // Invariant: `stripes` has STRIPES entries, so the index is in range.
        self.stripes[usize::from(id[0]) % STRIPES].lock().await
    }
}

#[cfg(test)]
mod tests;
