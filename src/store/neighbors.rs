//! Profiles shared with us by neighbour servers (filled by the neighbourhood feature; tests and
//! tools may seed them directly).

use prost::Message as _;
use redb::ReadableTable;

use super::identities::NewImage;
use super::images::{delete_image, release, retain, write_image};
use super::records::NeighborIdentity;
use super::tables::{NEIGHBOR_IDENTITIES, NEIGHBORS};
use super::{Store, StoreError};

impl Store {
    /// Stores (or replaces) a profile that neighbour `server` shares, with its thumbnail.
    pub async fn put_neighbor_identity(
        &self,
        server: [u8; 32],
        id: [u8; 32],
        record: NeighborIdentity,
        thumbnail: Option<NewImage>,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let _guard = store.lock_images();
            if let Some(image) = &thumbnail {
                write_image(store.dir(), &image.hash, &image.data)?;
            }
            let txn = store.db.begin_write()?;
            let mut table = txn.open_table(NEIGHBOR_IDENTITIES)?;
            let old = table
                .get((server, id))?
                .and_then(|v| NeighborIdentity::decode(v.value()).ok())
                .map(|r| r.thumbnail_image_hash)
                .unwrap_or_default();
            let mut freed = None;
            if old != record.thumbnail_image_hash {
                if let Some(image) = &thumbnail {
                    retain(&txn, &image.hash)?;
                }
                if let Ok(hash) = <[u8; 32]>::try_from(old.as_slice())
                    && release(&txn, &hash)?
                {
                    freed = Some(hash);
                }
            }
            table.insert((server, id), record.encode_to_vec().as_slice())?;
            drop(table);
            txn.open_table(NEIGHBORS)?.insert(server, [].as_slice())?;
            txn.commit()?;
            if let Some(hash) = freed {
                delete_image(store.dir(), &hash);
            }
            Ok(())
        })
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
            value
                .map(|v| {
                    NeighborIdentity::decode(v.value())
                        .map_err(|_| StoreError::Record("neighbor identity"))
                })
                .transpose()
        })
        .await
    }
}
