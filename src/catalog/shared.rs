//! Profiles neighbours share with us (spec §4.19, §5.7 B): their updates, checked item by item
//! in order inside the transactions that store them, the end of an initialisation, and a
//! neighbour's removal.

use std::sync::Arc;

use super::Catalog;
use crate::clock::Now;
use crate::neighborhood::receiving::{self as items, Action, Applier, Phase, Prepared, Progress};
use crate::store::neighbors::SharedEditor;
use crate::store::{Durability, StoreError};
use crate::wire::ps;

/// Live changes are applied in transactions of at most this many items that change a profile
/// (refreshes do not count). An initialisation's batch is staged in one transaction: nothing of
/// it counts before Finish.
const APPLY_CHUNK: usize = 100;

/// How stale a neighbour's stored refresh time may get before a refresh writes it again:
/// profiles expire after a day without one (`neighbor_expiration_secs`), so a minute is
/// nothing, and a neighbour sending refreshes without pause costs one commit a minute.
const REFRESH_RESOLUTION_MS: i64 = 60_000;

/// What became of a neighbour's update.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Every item was applied.
    Applied,
    /// The items before the first bad one were applied; this is its `"$i.$field"`.
    Failed(String),
    /// The server is not (any more) a neighbour: nothing was applied.
    NotNeighbor,
}

impl Catalog {
    /// Checks and applies the items neighbour `server` sent, in order (see
    /// [`crate::neighborhood::receiving`]); live changes become searchable as they commit.
    pub(crate) async fn receive_shared(
        &self,
        server: [u8; 32],
        items: Vec<ps::SharedProfileUpdateItem>,
        phase: Phase,
        now: Now,
    ) -> Result<Received, StoreError> {
        let threads = self.check_threads;
        let prepared: Arc<[Prepared]> =
            tokio::task::spawn_blocking(move || items::prepare(items, phase, threads))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
                .into();
        if phase == Phase::Live && prepared.iter().all(Prepared::is_refresh) {
            return self.refresh_only(server, now).await;
        }
        let (budget, durability) = match phase {
            Phase::Initialization => (usize::MAX, Durability::None),
            Phase::Live => (APPLY_CHUNK, Durability::Immediate),
        };
        let _serial = self.serialise(&server).await;
        let mut applier = Applier::new(prepared, self.max_shared);
        loop {
            let from = applier.position().1;
            let work = {
                let mut applier = applier.clone();
                move |editor: &mut SharedEditor<'_>| {
                    let progress = applier.apply(editor, budget);
                    progress.map(|progress| (applier, progress))
                }
            };
            let edited = self
                .store
                .edit_shared(server, now.unix_ms, durability, work)
                .await?;
            let Some(step) = edited else {
                return Ok(Received::NotNeighbor);
            };
            let progress;
            (applier, progress) = step?;
            let (items, to) = applier.position();
            // Profiles of a neighbour still initialising are indexed now, but found only once
            // it finishes (`finish_neighbor`).
            self.index_applied(server, &items[from..to]);
            match progress {
                Progress::Paused => {}
                Progress::Done => return Ok(Received::Applied),
                Progress::Failed(details) => return Ok(Received::Failed(details)),
            }
        }
    }

    /// An update of nothing but `refresh` items (or none): the neighbour's refresh time is
    /// written only when the stored one is older than [`REFRESH_RESOLUTION_MS`], so a flood of
    /// them costs reads, never a commit each.
    async fn refresh_only(&self, server: [u8; 32], now: Now) -> Result<Received, StoreError> {
        let Some(neighbor) = self.store.neighbor(server).await? else {
            return Ok(Received::NotNeighbor);
        };
        if now.unix_ms.saturating_sub(neighbor.refreshed_at_ms) < REFRESH_RESOLUTION_MS {
            return Ok(Received::Applied);
        }
        let _serial = self.serialise(&server).await;
        let edited = self
            .store
            .edit_shared(server, now.unix_ms, Durability::Immediate, |editor| {
                editor.refresh();
            })
            .await?;
        Ok(edited.map_or(Received::NotNeighbor, |()| Received::Applied))
    }

    fn index_applied(&self, server: [u8; 32], applied: &[Prepared]) {
        self.search.update(|index| {
            for item in applied {
                match item.action() {
                    Action::Upsert { id, profile, .. } => {
                        index.upsert_neighbor(server, *id, profile);
                    }
                    Action::Delete(id) => index.remove_neighbor(id),
                    Action::Refresh | Action::Invalid => {}
                }
            }
        });
    }

    /// Neighbour `server` sent Finish: it becomes initialised and its profiles, indexed as they
    /// arrived, searchable.
    /// False when it was dropped meanwhile.
    pub(crate) async fn finish_neighbor(
        &self,
        server: [u8; 32],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _serial = self.serialise(&server).await;
        if !self.store.finish_neighbor(server, now_ms).await? {
            return Ok(false);
        }
        self.search.update(|index| index.add_server(server));
        Ok(true)
    }

    /// Deletes every profile `server` shares with us and takes them out of search; with
    /// `forget`, the neighbour itself goes too.
    pub(crate) async fn clear_neighbor(
        &self,
        server: [u8; 32],
        forget: bool,
    ) -> Result<(), StoreError> {
        let _serial = self.serialise(&server).await;
        self.store.clear_neighbor(server, forget).await?;
        self.search.update(|index| index.remove_server(&server));
        Ok(())
    }
}
