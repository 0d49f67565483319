//! The sharing side of the neighbourhood (spec §5.7 A): the servers that follow our hosted
//! profiles, the snapshot an initialisation streams, and each follower's action queue.
//!
//! A follower is inserted uninitialised by [`Store::start_follower`], in the same write
//! transaction that pins the snapshot: every profile change committed later queues an action for
//! it (the queue is filled in the change's own transaction), every one before is in the
//! snapshot, so each identity reaches the follower exactly once.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::actions::next_seq;
use super::images::{ImagePin, image_path};
use super::records::{ActionKind, HostedIdentity, NeighborhoodAction, PeerServer};
use super::servers::decode as decode_server;
use super::tables::{ACTIONS, FOLLOWERS, HOSTED_IDENTITIES};
use super::{Store, StoreError};

/// Spec §5.7 A.10: a follower with this many refreshes still queued is dropped.
const MAX_QUEUED_REFRESHES: usize = 3;

/// What [`Store::start_follower`] decided (spec §4.19 checks 4–6).
pub(crate) enum StartOutcome {
    /// The follower is recorded; stream this snapshot to it.
    Started(Snapshot),
    /// `max_follower_servers` reached.
    Rejected,
    /// `neighborhood_init_parallelism` initialisations are under way (sending their snapshot;
    /// one that only awaits the answer to Finish no longer counts).
    Busy,
    /// It is a follower already, or its initialisation is under way.
    AlreadyExists,
}

/// The hosted identities as they were when a follower was recorded, with their image files
/// kept until the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Snapshot(Arc<(ReadTransaction, ImagePin)>);

/// One hosted profile as committed: what an `add` or `change` item carries, every field from
/// the same committed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedProfile {
    /// The identity's network id.
    pub id: [u8; 32],
    /// The `ProfileInformation` bytes its owner signed.
    pub profile: Vec<u8>,
    /// The owner's signature over `profile`.
    pub signature: Vec<u8>,
    /// The thumbnail bytes (empty when the profile has none); `None` when its file is missing
    /// or damaged on disk.
    pub thumbnail: Option<Vec<u8>>,
}

/// A follower's next queued actions and, read in the same transaction, the current profile of
/// every live identity they name: a consistent state to deliver from.
#[derive(Debug, Default)]
pub(crate) struct DeliveryWindow {
    /// The actions, in queue order.
    pub actions: Vec<QueuedAction>,
    /// The initialised, non-cancelled identities among those the actions name.
    pub profiles: std::collections::HashMap<[u8; 32], SharedProfile>,
}

/// One queued action for a follower, with its place in the queue.
#[derive(Debug, Clone)]
pub(crate) struct QueuedAction {
    /// Queue position: actions are delivered in this order.
    pub seq: u64,
    /// What happened.
    pub kind: ActionKind,
    /// The identity it happened to (empty for refreshes).
    pub identity: Vec<u8>,
}

impl Store {
    /// Records `id` as an uninitialised follower unless a check of spec §4.19 refuses it, and
    /// pins the snapshot of hosted identities its initialisation sends.
    pub(crate) async fn start_follower(
        &self,
        id: [u8; 32],
        record: PeerServer,
        max_followers: u32,
        parallelism: u32,
    ) -> Result<StartOutcome, StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let started = std::time::Instant::now();
            // The pin first: it takes the images lock, which a batch of writes holds while it
            // waits for the write transaction; taken inside the transaction, it would deadlock.
            let pin = store.pin_images();
            let db = store.db()?;
            let txn = db.begin_write()?;
            // No other writer can commit before `txn` does, so this read sees exactly the state
            // the follower is inserted into.
            let snapshot = db.begin_read()?;
            let mut table = txn.open_table(FOLLOWERS)?;
            if table.len()? >= u64::from(max_followers) {
                return Ok(StartOutcome::Rejected);
            }
            let mut starting = 0_u32;
            for entry in table.iter()? {
                let (_, value) = entry?;
                let follower = decode_server(value.value())?;
                starting += u32::from(!follower.initialized && !follower.finishing);
            }
            if starting >= parallelism {
                return Ok(StartOutcome::Busy);
            }
            if table.get(id)?.is_some() {
                return Ok(StartOutcome::AlreadyExists);
            }
            table.insert(id, record.encode_to_vec().as_slice())?;
            drop(table);
            store.commit_timed(txn, started)?;
            Ok(StartOutcome::Started(Snapshot(Arc::new((snapshot, pin)))))
        })
        .await
    }

    /// Up to `limit` initialised, non-cancelled profiles of the snapshot after identity `after`.
    pub(crate) async fn snapshot_page(
        &self,
        snapshot: &Snapshot,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<SharedProfile>, StoreError> {
        let snapshot = snapshot.clone();
        let dir = self.dir().to_path_buf();
        super::run_blocking(move || {
            let table = snapshot.0.0.open_table(HOSTED_IDENTITIES)?;
            let mut page = Vec::new();
            for entry in table.range(after.unwrap_or([0; 32])..)? {
                let (key, value) = entry?;
                let id = key.value();
                if Some(id) == after {
                    continue;
                }
                let Ok(record) = HostedIdentity::decode(value.value()) else {
                    continue;
                };
                if record.initialized && !record.cancelled {
                    page.push(shared(&dir, id, record));
                    if page.len() == limit {
                        break;
                    }
                }
            }
            Ok(page)
        })
        .await
    }

    /// The first `limit` actions queued for follower `id` with the current profiles they name,
    /// all from one committed state (see [`DeliveryWindow`]).
    pub(crate) async fn delivery_window(
        &self,
        id: [u8; 32],
        limit: usize,
    ) -> Result<DeliveryWindow, StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let _pin = store.pin_images();
            let txn = store.db()?.begin_read()?;
            let actions = queued_actions(&txn, id, limit)?;
            let hosted = txn.open_table(HOSTED_IDENTITIES)?;
            let mut profiles = std::collections::HashMap::new();
            for action in &actions {
                let Ok(identity) = <[u8; 32]>::try_from(action.identity.as_slice()) else {
                    continue;
                };
                if profiles.contains_key(&identity) {
                    continue;
                }
                let Some(value) = hosted.get(identity)? else {
                    continue;
                };
                let Ok(record) = HostedIdentity::decode(value.value()) else {
                    continue;
                };
                if record.initialized && !record.cancelled {
                    profiles.insert(identity, shared(store.dir(), identity, record));
                }
            }
            Ok(DeliveryWindow { actions, profiles })
        })
        .await
    }

    /// Every follower, initialised or not.
    pub(crate) async fn followers(&self) -> Result<Vec<([u8; 32], PeerServer)>, StoreError> {
        self.servers(FOLLOWERS).await
    }

    /// Changes a follower's row with `change`; false when it is not a follower.
    pub(crate) async fn update_follower(
        &self,
        id: [u8; 32],
        change: impl FnOnce(&mut PeerServer) + Clone + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.update_server(FOLLOWERS, id, change).await
    }

    /// Deletes a follower and every action queued for it; false when it was not one.
    pub(crate) async fn remove_follower(&self, id: [u8; 32]) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let existed = txn.open_table(FOLLOWERS)?.remove(id)?.is_some();
            let mut actions = txn.open_table(ACTIONS)?;
            actions.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
            Ok(existed)
        })
        .await
    }

    /// The first `limit` actions queued for follower `id`, in order.
    #[cfg(test)]
    pub(crate) async fn follower_actions(
        &self,
        id: [u8; 32],
        limit: usize,
    ) -> Result<Vec<QueuedAction>, StoreError> {
        self.read(move |txn| queued_actions(txn, id, limit)).await
    }

    /// Deletes follower `id`'s actions up to and including `seq`: they were delivered. For each
    /// identity of `unsent`, whose `add` was not sent because the identity had gone by then, the
    /// actions queued for it after `seq` up to and including its first removal go too: the
    /// follower never had that version (a later registration's actions stay).
    pub(crate) async fn complete_actions(
        &self,
        id: [u8; 32],
        seq: u64,
        unsent: Vec<[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(ACTIONS)?;
            table.retain_in((id, 0)..=(id, seq), |_, _| false)?;
            let mut unsent = unsent.clone();
            let mut removals = Vec::new();
            for entry in table.range((id, seq.saturating_add(1))..=(id, u64::MAX))? {
                if unsent.is_empty() {
                    break;
                }
                let (key, value) = entry?;
                let Ok(action) = NeighborhoodAction::decode(value.value()) else {
                    continue;
                };
                // The follower never got the add: the changes of that version and its
                // removal go too; what follows the removal (a registration again) stays.
                let Some(at) = unsent.iter().position(|u| *u == action.identity_id[..]) else {
                    continue;
                };
                removals.push(key.value());
                if action.kind() == ActionKind::RemoveProfile {
                    unsent.swap_remove(at);
                }
            }
            for key in removals {
                table.remove(key)?;
            }
            Ok(())
        })
        .await
    }

    /// Queues a refresh for every initialised follower last refreshed `interval_ms` or more ago
    /// (spec §5.7 A.10) and drops followers that left [`MAX_QUEUED_REFRESHES`] unprocessed.
    /// Returns the dropped followers.
    pub(crate) async fn queue_refreshes(
        &self,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        self.write(move |txn| {
            let due: Vec<([u8; 32], PeerServer)> = {
                let table = txn.open_table(FOLLOWERS)?;
                let mut due = Vec::new();
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let record = decode_server(value.value())?;
                    if record.initialized && now_ms - record.refreshed_at_ms >= interval_ms {
                        due.push((key.value(), record));
                    }
                }
                due
            };
            let mut dropped = Vec::new();
            let mut seq = next_seq(txn)?;
            let refresh = NeighborhoodAction {
                kind: ActionKind::RefreshNeighborStatus as i32,
                execute_after_ms: now_ms,
                ..NeighborhoodAction::default()
            }
            .encode_to_vec();
            for (id, mut record) in due {
                let mut actions = txn.open_table(ACTIONS)?;
                let mut queued = 0;
                for entry in actions.range((id, 0)..=(id, u64::MAX))? {
                    let (_, value) = entry?;
                    let kind = NeighborhoodAction::decode(value.value()).map(|a| a.kind());
                    queued += usize::from(kind == Ok(ActionKind::RefreshNeighborStatus));
                }
                if queued >= MAX_QUEUED_REFRESHES {
                    actions.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                    txn.open_table(FOLLOWERS)?.remove(id)?;
                    dropped.push(id);
                    continue;
                }
                actions.insert((id, seq.take()), refresh.as_slice())?;
                record.refreshed_at_ms = now_ms;
                drop(actions);
                txn.open_table(FOLLOWERS)?
                    .insert(id, record.encode_to_vec().as_slice())?;
            }
            seq.save(txn)?;
            Ok(dropped)
        })
        .await
    }

    /// Start-up cleanup (spec §5.7 B.7): initialisations a stop interrupted are forgotten, so
    /// their servers start afresh. Returns (followers, neighbours) removed.
    pub(crate) async fn drop_unfinished(&self) -> Result<(usize, usize), StoreError> {
        let followers = self.followers().await?;
        let mut dropped_followers = 0;
        for (id, record) in followers {
            if !record.initialized {
                dropped_followers += usize::from(self.remove_follower(id).await?);
            }
        }
        let mut dropped_neighbors = 0;
        for (id, record) in self.neighbors().await? {
            if !record.initialized {
                self.clear_neighbor(id, true).await?;
                dropped_neighbors += 1;
            }
        }
        Ok((dropped_followers, dropped_neighbors))
    }
}

/// The first `limit` actions queued for follower `id`, in order.
fn queued_actions(
    txn: &ReadTransaction,
    id: [u8; 32],
    limit: usize,
) -> Result<Vec<QueuedAction>, StoreError> {
    let table = txn.open_table(ACTIONS)?;
    let mut queued = Vec::new();
    for entry in table.range((id, 0)..=(id, u64::MAX))?.take(limit) {
        let (key, value) = entry?;
        let action = NeighborhoodAction::decode(value.value())
            .map_err(|_| StoreError::Record("neighbourhood action"))?;
        queued.push(QueuedAction {
            seq: key.value().1,
            kind: action.kind(),
            identity: action.identity_id,
        });
    }
    Ok(queued)
}

/// A hosted record as shared, with its thumbnail read from its file (checked against its hash).
fn shared(dir: &Path, id: [u8; 32], record: HostedIdentity) -> SharedProfile {
    let thumbnail = match <[u8; 32]>::try_from(record.thumbnail_image_hash.as_slice()) {
        Ok(hash) => std::fs::read(image_path(dir, &hash))
            .ok()
            .filter(|data| crate::crypto::sha256(data) == hash),
        Err(_) => Some(Vec::new()),
    };
    SharedProfile {
        id,
        profile: record.profile,
        signature: record.signature,
        thumbnail,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A follower recorded while durable writes run (a batch holds the images lock while it
    /// waits for the write transaction) must not deadlock with them.
    #[test]
    fn recording_followers_among_writes_never_deadlocks() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (_dir, store) = Store::open_temporary();
        let work = async move {
            for round in 0..200_u8 {
                let writer = store.clone();
                let writes = tokio::spawn(async move {
                    for i in 0..4_u8 {
                        let mut id = [0xaa; 32];
                        (id[0], id[1]) = (round, i);
                        let added = writer.add_neighbor(id, PeerServer::default(), 10_000);
                        added.await.expect("write");
                    }
                });
                let started =
                    store.start_follower([round; 32], PeerServer::default(), 1_000, 1_000);
                assert!(matches!(started.await, Ok(StartOutcome::Started(_))));
                writes.await.expect("writer");
            }
        };
        let outcome =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), work).await });
        // Deadlocked blocking threads must not keep the test from ending.
        runtime.shutdown_timeout(Duration::from_secs(1));
        assert!(
            outcome.is_ok(),
            "start_follower and batched writes deadlocked"
        );
    }
}
