//! Relationship cards held by hosted identities, keyed by (identity, application id).

use prost::Message as _;
use redb::ReadableTable;

use super::records::Relation;
use super::tables::RELATIONS;
use super::{Store, StoreError};

/// Result of [`Store::add_relation`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddRelationOutcome {
    /// Stored.
    Added,
    /// The identity holds `max_identity_relations` cards already.
    QuotaExceeded,
    /// The identity already holds a card under this application id.
    AlreadyExists,
}

fn count_for(
    table: &impl ReadableTable<([u8; 32], &'static [u8]), &'static [u8]>,
    id: [u8; 32],
) -> Result<u32, StoreError> {
    let mut count = 0u32;
    for entry in table.range((id, [].as_slice())..)? {
        let (key, _) = entry?;
        if key.value().0 != id {
            break;
        }
        count += 1;
    }
    Ok(count)
}

impl Store {
    /// Stores a card: quota first, then the application-id check (spec §4.20 steps 12, 13).
    pub(crate) async fn add_relation(
        &self,
        id: [u8; 32],
        application_id: Vec<u8>,
        record: Relation,
        max: u32,
    ) -> Result<AddRelationOutcome, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(RELATIONS)?;
            if count_for(&table, id)? >= max {
                return Ok(AddRelationOutcome::QuotaExceeded);
            }
            if table.get((id, application_id.as_slice()))?.is_some() {
                return Ok(AddRelationOutcome::AlreadyExists);
            }
            table.insert(
                (id, application_id.as_slice()),
                record.encode_to_vec().as_slice(),
            )?;
            Ok(AddRelationOutcome::Added)
        })
        .await
    }

    /// Removes a card; false when the identity holds none under `application_id`.
    pub(crate) async fn remove_relation(
        &self,
        id: [u8; 32],
        application_id: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(RELATIONS)?;
            Ok(table.remove((id, application_id.as_slice()))?.is_some())
        })
        .await
    }

    /// Every card the identity holds.
    pub(crate) async fn relations(&self, id: [u8; 32]) -> Result<Vec<Relation>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(RELATIONS)?;
            let mut relations = Vec::new();
            for entry in table.range((id, [].as_slice())..)? {
                let (key, value) = entry?;
                if key.value().0 != id {
                    break;
                }
                relations.push(
                    Relation::decode(value.value()).map_err(|_| StoreError::Record("relation"))?,
                );
            }
            Ok(relations)
        })
        .await
    }
}
