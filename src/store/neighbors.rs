//! The receiving side of the neighbourhood (spec §5.7 B): the servers that share their profiles
//! with us, and the profiles they share.
//!
//! An initialisation writes the neighbour's profiles batch by batch while its row says
//! "uninitialised", so a neighbour streaming 20,000 profiles never holds them in memory; nothing
//! of an uninitialised neighbour is searchable (the index loads a neighbour only once
//! [`Store::finish_neighbor`] committed), and a failed initialisation is wiped with
//! [`Store::clear_neighbor`].

use prost::Message as _;
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::records::{NeighborIdentity, PeerServer};
use super::servers::decode as decode_server;
use super::tables::{NEIGHBOR_IDENTITIES, NEIGHBORS};
use super::{Durability, Store, StoreError};
use crate::wire::ps::ProfileInformation;

/// Profiles deleted per transaction when a neighbour goes, so one removal never builds a huge
/// transaction in memory.
const DELETE_CHUNK: usize = 500;

fn decode_identity(bytes: &[u8]) -> Result<NeighborIdentity, StoreError> {
    NeighborIdentity::decode(bytes).map_err(|_| StoreError::Record("neighbour identity"))
}

/// The profiles one neighbour shares, open for changes inside a write transaction, with the
/// neighbour's profile count kept as they happen: whoever checks a change against the count or
/// the stored rows sees every change committed before and made earlier in this transaction, so
/// no interleaving of the neighbour's connections can pass a limit (spec §4.19).
pub(crate) struct SharedEditor<'txn> {
    server: [u8; 32],
    table: Table<'txn, ([u8; 32], [u8; 32]), &'static [u8]>,
    count: u32,
    refreshed: bool,
}

impl SharedEditor<'_> {
    /// How many profiles the neighbour shares now.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The type of the profile the neighbour shares for `id`, `None` when it shares none.
    pub(crate) fn stored_type(&self, id: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let Some(value) = self.table.get((self.server, *id))? else {
            return Ok(None);
        };
        let record = decode_identity(value.value())?;
        if !record.identity_type.is_empty() {
            return Ok(Some(record.identity_type));
        }
        // Rows written before the type was kept.
        let profile = ProfileInformation::decode(record.profile.as_slice());
        Ok(Some(profile.map(|p| p.r#type).unwrap_or_default()))
    }

    /// Stores (or replaces) the profile for `id`.
    pub(crate) fn upsert(
        &mut self,
        id: [u8; 32],
        record: &NeighborIdentity,
    ) -> Result<(), StoreError> {
        let old = self
            .table
            .insert((self.server, id), record.encode_to_vec().as_slice())?;
        if old.is_none() {
            self.count = self.count.saturating_add(1);
        }
        Ok(())
    }

    /// Deletes the profile for `id`; false when there was none.
    pub(crate) fn delete(&mut self, id: &[u8; 32]) -> Result<bool, StoreError> {
        let existed = self.table.remove((self.server, *id))?.is_some();
        if existed {
            self.count = self.count.saturating_sub(1);
        }
        Ok(existed)
    }

    /// Records that the neighbour refreshed all its profiles (a `refresh` item).
    pub(crate) fn refresh(&mut self) {
        self.refreshed = true;
    }
}

/// Runs `work` on the shared profiles of `server` in `txn` and stores the new count (and the
/// refresh time); `None` when `server` is not a neighbour.
fn edit<T>(
    txn: &WriteTransaction,
    server: [u8; 32],
    now_ms: i64,
    work: impl FnOnce(&mut SharedEditor<'_>) -> T,
) -> Result<Option<T>, StoreError> {
    let mut neighbors = txn.open_table(NEIGHBORS)?;
    let Some(mut record) = neighbors
        .get(server)?
        .map(|v| decode_server(v.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    let mut editor = SharedEditor {
        server,
        table: txn.open_table(NEIGHBOR_IDENTITIES)?,
        count: record.shared_profiles,
        refreshed: false,
    };
    let value = work(&mut editor);
    let changed = editor.count != record.shared_profiles || editor.refreshed;
    record.shared_profiles = editor.count;
    if editor.refreshed {
        record.refreshed_at_ms = now_ms;
    }
    drop(editor);
    if changed {
        neighbors.insert(server, record.encode_to_vec().as_slice())?;
    }
    Ok(Some(value))
}

impl Store {
    /// The neighbour with network id `id`.
    pub(crate) async fn neighbor(&self, id: [u8; 32]) -> Result<Option<PeerServer>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(NEIGHBORS)?;
            let value = table.get(id)?;
            value.map(|v| decode_server(v.value())).transpose()
        })
        .await
    }

    /// Every neighbour, initialised or not.
    pub(crate) async fn neighbors(&self) -> Result<Vec<([u8; 32], PeerServer)>, StoreError> {
        self.servers(NEIGHBORS).await
    }

    /// Records a neighbour LOC reported, uninitialised, unless it is known already or `max`
    /// neighbours are; a known one gets its new address. True when it is new.
    pub(crate) async fn add_neighbor(
        &self,
        id: [u8; 32],
        record: PeerServer,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(NEIGHBORS)?;
            let known = table
                .get(id)?
                .map(|v| decode_server(v.value()))
                .transpose()?;
            if let Some(mut known) = known {
                if known.ip_address != record.ip_address
                    || known.primary_port != record.primary_port
                {
                    known.ip_address = record.ip_address;
                    known.primary_port = record.primary_port;
                    known.sr_neighbor_port = 0;
                    table.insert(id, known.encode_to_vec().as_slice())?;
                }
                return Ok(false);
            }
            if table.len()? >= u64::from(max) {
                return Ok(false);
            }
            table.insert(id, record.encode_to_vec().as_slice())?;
            Ok(true)
        })
        .await
    }

    /// Changes a neighbour's row with `change`; false when it is not a neighbour.
    pub(crate) async fn update_neighbor(
        &self,
        id: [u8; 32],
        change: impl FnOnce(&mut PeerServer) + Clone + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.update_server(NEIGHBORS, id, change).await
    }

    /// Runs `work` on the profiles neighbour `server` shares, in one write transaction that also
    /// stores its new profile count; `None` when `server` is not (any more) a neighbour. Staged
    /// changes of an initialisation take `Durability::None`: they count only once
    /// [`Store::finish_neighbor`] commits durably, and start-up drops them otherwise. `work` may
    /// run twice (see [`super::group_commit`]), so it must not change anything outside.
    pub(crate) async fn edit_shared<T, F>(
        &self,
        server: [u8; 32],
        now_ms: i64,
        durability: Durability,
        work: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SharedEditor<'_>) -> T + Clone + Send + 'static,
    {
        self.write_with(durability, move |txn| edit(txn, server, now_ms, work))
            .await
    }

    /// The initialisation of `server` completed: it becomes an initialised neighbour, refreshed
    /// now. False when the neighbour was dropped meanwhile.
    pub(crate) async fn finish_neighbor(
        &self,
        server: [u8; 32],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.update_neighbor(server, move |record| {
            record.initialized = true;
            record.refreshed_at_ms = now_ms;
        })
        .await
    }

    /// Deletes every profile `server` shares with us, in chunks, and with `forget` its row too.
    /// Returns the ids of the deleted profiles (for the search index).
    pub(crate) async fn clear_neighbor(
        &self,
        server: [u8; 32],
        forget: bool,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut removed = Vec::new();
        loop {
            let chunk = self
                .write(move |txn| {
                    let mut shared = txn.open_table(NEIGHBOR_IDENTITIES)?;
                    let ids: Vec<[u8; 32]> = {
                        let range = shared.range((server, [0; 32])..=(server, [0xff; 32]))?;
                        let keys = range
                            .take(DELETE_CHUNK)
                            .map(|e| e.map(|(k, _)| k.value().1));
                        keys.collect::<Result<_, _>>()?
                    };
                    for id in &ids {
                        shared.remove((server, *id))?;
                    }
                    drop(shared);
                    let mut table = txn.open_table(NEIGHBORS)?;
                    let record = table
                        .get(server)?
                        .map(|v| decode_server(v.value()))
                        .transpose()?;
                    if ids.is_empty() && forget {
                        table.remove(server)?;
                    } else if let Some(mut record) = record {
                        record.shared_profiles = 0;
                        table.insert(server, record.encode_to_vec().as_slice())?;
                    }
                    Ok(ids)
                })
                .await?;
            if chunk.is_empty() {
                return Ok(removed);
            }
            removed.extend(chunk);
        }
    }

    /// Stores (or replaces) a profile that neighbour `server` shares, making `server` an
    /// initialised neighbour if it is not one yet: for seeding a database in tests and tools.
    pub async fn put_neighbor_identity(
        &self,
        server: [u8; 32],
        id: [u8; 32],
        record: NeighborIdentity,
    ) -> Result<(), StoreError> {
        let now = record.refreshed_at_ms;
        self.write(move |txn| {
            let mut table = txn.open_table(NEIGHBORS)?;
            if table.get(server)?.is_none() {
                let seeded = PeerServer {
                    initialized: true,
                    refreshed_at_ms: now,
                    ..PeerServer::default()
                };
                table.insert(server, seeded.encode_to_vec().as_slice())?;
            }
            Ok(())
        })
        .await?;
        let edited = self.edit_shared(server, now, Durability::Immediate, move |editor| {
            editor.upsert(id, &record)
        });
        edited.await?.unwrap_or(Ok(()))
    }
}
