//! Reads everything the search index needs at start-up, in one read transaction.

use prost::Message as _;
use redb::ReadableTable;

use super::records::{HostedIdentity, NeighborIdentity, PeerServer};
use super::tables::{HOSTED_IDENTITIES, NEIGHBOR_IDENTITIES, NEIGHBORS};
use super::{Store, StoreError};

/// A profile to index: its owner's id, the hosting neighbour (if shared) and the profile bytes.
pub struct IndexRecord {
    /// Identity network id.
    pub id: [u8; 32],
    /// The neighbour that shares it; `None` for our own customers.
    pub server: Option<[u8; 32]>,
    /// Canonical `ProfileInformation` bytes.
    pub profile: Vec<u8>,
}

impl Store {
    /// Initialised, non-cancelled hosted profiles, then every profile of an initialised
    /// neighbour. Corrupt rows are skipped with a warning rather than keeping the server from
    /// starting.
    pub fn index_records(&self) -> Result<Vec<IndexRecord>, StoreError> {
        let txn = redb::ReadableDatabase::begin_read(&*self.db()?)?;
        let mut records = Vec::new();
        for entry in txn.open_table(HOSTED_IDENTITIES)?.iter()? {
            let (key, value) = entry?;
            match HostedIdentity::decode(value.value()) {
                Ok(hosted) if hosted.initialized && !hosted.cancelled => {
                    records.push(IndexRecord {
                        id: key.value(),
                        server: None,
                        profile: hosted.profile,
                    });
                }
                Ok(_) => {}
                Err(_) => tracing::warn!("skipping a corrupt hosted identity while indexing"),
            }
        }
        let mut initialized = std::collections::HashSet::new();
        for entry in txn.open_table(NEIGHBORS)?.iter()? {
            let (key, value) = entry?;
            if PeerServer::decode(value.value()).is_ok_and(|n| n.initialized) {
                initialized.insert(key.value());
            }
        }
        for entry in txn.open_table(NEIGHBOR_IDENTITIES)?.iter()? {
            let (key, value) = entry?;
            let (server, id) = key.value();
            if !initialized.contains(&server) {
                continue;
            }
            if let Ok(shared) = NeighborIdentity::decode(value.value()) {
                records.push(IndexRecord {
                    id,
                    server: Some(server),
                    profile: shared.profile,
                });
            } else {
                tracing::warn!("skipping a corrupt neighbour identity while indexing");
            }
        }
        Ok(records)
    }
}

/// Where a result's thumbnail is: a hosted identity's in an image file named by its hash, a
/// neighbour's in its row.
enum Thumbnail {
    File(Vec<u8>),
    Inline(Vec<u8>),
}

/// A search result as stored: the signed profile and, when asked for, the thumbnail bytes.
pub(crate) struct StoredResult {
    /// Canonical `ProfileInformation` bytes.
    pub profile: Vec<u8>,
    /// The owner's signature.
    pub signature: Vec<u8>,
    /// Thumbnail bytes, empty when none or not asked for.
    pub thumbnail: Vec<u8>,
}

impl Store {
    /// Loads search results in one read transaction; `None` for a profile that went away since
    /// the search (it is left out of the answer).
    pub(crate) async fn load_results(
        &self,
        hits: Vec<([u8; 32], Option<[u8; 32]>)>,
        thumbnails: bool,
    ) -> Result<Vec<Option<StoredResult>>, StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let txn = redb::ReadableDatabase::begin_read(&*store.db()?)?;
            let hosted = txn.open_table(HOSTED_IDENTITIES)?;
            let shared = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let mut results = Vec::with_capacity(hits.len());
            for (id, server) in hits {
                let found = match server {
                    None => hosted
                        .get(id)?
                        .and_then(|v| HostedIdentity::decode(v.value()).ok())
                        .and_then(|r| {
                            (r.initialized && !r.cancelled).then_some((
                                r.profile,
                                r.signature,
                                Thumbnail::File(r.thumbnail_image_hash),
                            ))
                        }),
                    Some(server) => shared
                        .get((server, id))?
                        .and_then(|v| NeighborIdentity::decode(v.value()).ok())
                        .map(|r| (r.profile, r.signature, Thumbnail::Inline(r.thumbnail))),
                };
                results.push(found.map(|(profile, signature, thumbnail)| {
                    let thumbnail = match thumbnail {
                        _ if !thumbnails => Vec::new(),
                        Thumbnail::Inline(bytes) => bytes,
                        Thumbnail::File(hash) => <[u8; 32]>::try_from(hash.as_slice())
                            .map(|hash| {
                                std::fs::read(super::images::image_path(store.dir(), &hash))
                            })
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default(),
                    };
                    StoredResult {
                        profile,
                        signature,
                        thumbnail,
                    }
                }));
            }
            Ok(results)
        })
        .await
    }
}
