//! The receiving side of the neighbourhood (spec §5.7 B): the servers that share their profiles
//! with us, and the profiles they share.
//!
//! An initialisation writes the neighbour's profiles batch by batch while its row says
//! "uninitialised", so a neighbour streaming 20,000 profiles never holds them in memory; nothing
//! of an uninitialised neighbour is searchable (the index loads a neighbour only once
//! [`Store::finish_neighbor`] committed), and a failed initialisation is wiped with
//! [`Store::clear_neighbor`].

use std::collections::HashMap;

use prost::Message as _;
use redb::{ReadableTable, ReadableTableMetadata};

use super::index_load::IndexRecord;
use super::records::{NeighborIdentity, PeerServer};
use super::servers::decode as decode_server;
use super::tables::{NEIGHBOR_IDENTITIES, NEIGHBORS};
use super::{Store, StoreError};
use crate::wire::ps::ProfileInformation;

/// Profiles deleted per transaction when a neighbour goes, so one removal never builds a huge
/// transaction in memory.
const DELETE_CHUNK: usize = 500;

/// One validated change a neighbour shares (spec §4.19).
#[derive(Debug, Clone)]
pub enum SharedChange {
    /// An `add` or `change` item: the profile with its thumbnail (in the record).
    Upsert {
        /// The identity's network id.
        id: [u8; 32],
        /// The profile as signed by its owner, with the checked thumbnail bytes.
        record: NeighborIdentity,
    },
    /// A `delete` item.
    Delete {
        /// The identity's network id.
        id: [u8; 32],
    },
    /// A `refresh` item: every profile of the neighbour is still alive.
    Refresh,
}

fn decode_identity(bytes: &[u8]) -> Result<NeighborIdentity, StoreError> {
    NeighborIdentity::decode(bytes).map_err(|_| StoreError::Record("neighbour identity"))
}

impl Store {
    /// The neighbour with network id `id`.
    pub async fn neighbor(&self, id: [u8; 32]) -> Result<Option<PeerServer>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(NEIGHBORS)?;
            let value = table.get(id)?;
            value.map(|v| decode_server(v.value())).transpose()
        })
        .await
    }

    /// Every neighbour, initialised or not.
    pub async fn neighbors(&self) -> Result<Vec<([u8; 32], PeerServer)>, StoreError> {
        self.servers(NEIGHBORS).await
    }

    /// Records a neighbour LOC reported, uninitialised, unless it is known already or `max`
    /// neighbours are; a known one gets its new address. True when it is new.
    pub async fn add_neighbor(
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
    pub async fn update_neighbor(
        &self,
        id: [u8; 32],
        change: impl FnOnce(&mut PeerServer) + Clone + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.update_server(NEIGHBORS, id, change).await
    }

    /// The stored type of each of `ids` that neighbour `server` shares already.
    pub async fn shared_types(
        &self,
        server: [u8; 32],
        ids: Vec<[u8; 32]>,
    ) -> Result<HashMap<[u8; 32], String>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let mut known = HashMap::new();
            for id in ids {
                if let Some(value) = table.get((server, id))? {
                    let profile = decode_identity(value.value())?.profile;
                    let kind = ProfileInformation::decode(profile.as_slice())
                        .map(|p| p.r#type)
                        .unwrap_or_default();
                    known.insert(id, kind);
                }
            }
            Ok(known)
        })
        .await
    }

    /// Applies validated changes from neighbour `server` in one transaction and keeps its
    /// profile count (spec §4.19). Staged changes of an initialisation need no fsync: they count
    /// only once [`Store::finish_neighbor`] commits durably, and start-up drops them otherwise.
    pub async fn apply_shared(
        &self,
        server: [u8; 32],
        changes: Vec<SharedChange>,
        now_ms: i64,
        durability: super::Durability,
    ) -> Result<(), StoreError> {
        self.write_with(durability, move |txn| {
            let mut shared = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let mut count_change = 0_i64;
            let mut refreshed = false;
            for change in changes {
                match change {
                    SharedChange::Upsert { id, record } => {
                        let old = shared.insert((server, id), record.encode_to_vec().as_slice())?;
                        count_change += i64::from(old.is_none());
                    }
                    SharedChange::Delete { id } => {
                        count_change -= i64::from(shared.remove((server, id))?.is_some());
                    }
                    SharedChange::Refresh => refreshed = true,
                }
            }
            drop(shared);
            let mut table = txn.open_table(NEIGHBORS)?;
            let mut record = table
                .get(server)?
                .map(|v| decode_server(v.value()))
                .transpose()?
                .unwrap_or_default();
            let count = i64::from(record.shared_profiles).saturating_add(count_change);
            record.shared_profiles = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
            if refreshed {
                record.refreshed_at_ms = now_ms;
            }
            table.insert(server, record.encode_to_vec().as_slice())?;
            Ok(())
        })
        .await
    }

    /// The initialisation of `server` completed: it becomes an initialised neighbour, refreshed
    /// now. False when the neighbour was dropped meanwhile.
    pub async fn finish_neighbor(&self, server: [u8; 32], now_ms: i64) -> Result<bool, StoreError> {
        self.update_neighbor(server, move |record| {
            record.initialized = true;
            record.refreshed_at_ms = now_ms;
        })
        .await
    }

    /// Deletes every profile `server` shares with us, in chunks, and with `forget` its row too.
    /// Returns the ids of the deleted profiles (for the search index).
    pub async fn clear_neighbor(
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

    /// Up to `limit` profiles of neighbour `server` after identity `after`, for the index.
    pub async fn neighbor_profiles(
        &self,
        server: [u8; 32],
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<IndexRecord>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let range = table.range((server, after.unwrap_or([0; 32]))..=(server, [0xff; 32]))?;
            let mut records = Vec::new();
            for entry in range {
                let (key, value) = entry?;
                let id = key.value().1;
                if Some(id) == after {
                    continue;
                }
                records.push(IndexRecord {
                    id,
                    server: Some(server),
                    profile: decode_identity(value.value())?.profile,
                });
                if records.len() == limit {
                    break;
                }
            }
            Ok(records)
        })
        .await
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
        let change = SharedChange::Upsert { id, record };
        self.apply_shared(server, vec![change], now, super::Durability::Immediate)
            .await
    }

    /// The profile neighbour `server` shares for identity `id`.
    pub async fn neighbor_identity(
        &self,
        server: [u8; 32],
        id: [u8; 32],
    ) -> Result<Option<NeighborIdentity>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let value = table.get((server, id))?;
            value.map(|v| decode_identity(v.value())).transpose()
        })
        .await
    }
}
