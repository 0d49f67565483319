//! What the neighbours and followers tables have in common: rows of [`PeerServer`] by network id.

use prost::Message as _;
use redb::{ReadableTable, TableDefinition};

use super::records::PeerServer;
use super::{Store, StoreError};

/// A table of servers by network id.
pub(crate) type ServerTable = TableDefinition<'static, [u8; 32], &'static [u8]>;

/// Decodes a server row.
pub(crate) fn decode(bytes: &[u8]) -> Result<PeerServer, StoreError> {
    PeerServer::decode(bytes).map_err(|_| StoreError::Record("peer server"))
}

impl Store {
    /// Every row of `table`.
    pub(super) async fn servers(
        &self,
        table: ServerTable,
    ) -> Result<Vec<([u8; 32], PeerServer)>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(table)?;
            let mut all = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                all.push((key.value(), decode(value.value())?));
            }
            Ok(all)
        })
        .await
    }

    /// Changes the row `id` of `table` with `change`; false when there is none.
    pub(super) async fn update_server(
        &self,
        table: ServerTable,
        id: [u8; 32],
        change: impl FnOnce(&mut PeerServer) + Clone + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(table)?;
            let Some(mut record) = table.get(id)?.map(|v| decode(v.value())).transpose()? else {
                return Ok(false);
            };
            change(&mut record);
            table.insert(id, record.encode_to_vec().as_slice())?;
            Ok(true)
        })
        .await
    }
}
