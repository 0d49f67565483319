//! What the server keeps about CAN: its own contact record, each client's object, and the
//! objects still to unpin.

use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use super::records::{CanContact, HostedIdentity};
use super::tables::{CAN_UNPINS, HOSTED_IDENTITIES, SETTINGS};
use super::{Store, StoreError};
use crate::crypto::NetworkId;

/// Settings key of the server's [`CanContact`].
const CAN_CONTACT_KEY: &str = "can_contact";

/// Queues a client's CAN object for unpinning, inside the transaction that drops it.
pub(crate) fn queue_unpin(txn: &WriteTransaction, hash: &[u8]) -> Result<(), StoreError> {
    if !hash.is_empty() {
        txn.open_table(CAN_UNPINS)?.insert(hash, ())?;
    }
    Ok(())
}

impl Store {
    /// The server's contact record as last saved (default when never published).
    pub(crate) async fn can_contact(&self) -> Result<CanContact, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SETTINGS)?;
            let Some(value) = table.get(CAN_CONTACT_KEY)? else {
                return Ok(CanContact::default());
            };
            CanContact::decode(value.value()).map_err(|_| StoreError::Record("CAN contact"))
        })
        .await
    }

    /// Saves the server's contact record and, in the same transaction, queues the object it
    /// no longer names (`unpin`, empty for none) for unpinning.
    pub(crate) async fn save_can_contact(
        &self,
        contact: CanContact,
        unpin: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(SETTINGS)?;
            table.insert(CAN_CONTACT_KEY, contact.encode_to_vec().as_slice())?;
            drop(table);
            queue_unpin(txn, &unpin)
        })
        .await
    }

    /// Sets (or, with an empty `hash`, clears) the CAN object of a hosted identity whose
    /// agreement is in force. Returns false when it is not hosted or cancelled.
    pub(crate) async fn set_can_object(
        &self,
        id: NetworkId,
        hash: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(HOSTED_IDENTITIES)?;
            let Some(mut record) = table
                .get(id.0)?
                .map(|v| HostedIdentity::decode(v.value()))
                .transpose()
                .map_err(|_| StoreError::Record("hosted identity"))?
            else {
                return Ok(false);
            };
            if record.cancelled {
                return Ok(false);
            }
            record.can_object_hash = hash;
            table.insert(id.0, record.encode_to_vec().as_slice())?;
            Ok(true)
        })
        .await
    }

    /// Up to `limit` objects waiting to be unpinned.
    pub(crate) async fn can_unpins(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(CAN_UNPINS)?;
            let mut hashes = Vec::new();
            for entry in table.iter()?.take(limit) {
                hashes.push(entry?.0.value().to_vec());
            }
            Ok(hashes)
        })
        .await
    }

    /// Forgets an object CAN has unpinned.
    pub(crate) async fn can_unpinned(&self, hash: Vec<u8>) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(CAN_UNPINS)?.remove(hash.as_slice())?;
            Ok(())
        })
        .await
    }
}
