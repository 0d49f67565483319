//! Every redb table the server keeps, with versioned names, opened together.
//!
//! Values are protobuf-encoded records (`proto/store.proto`), so a record can gain fields
//! without a table migration. A layout change that breaks old rows bumps the `_vN` suffix and
//! [`SCHEMA_VERSION`].

use redb::TableDefinition;

/// Version of the table layout as a whole, stored under [`SCHEMA_VERSION_KEY`].
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// Settings key holding [`SCHEMA_VERSION`] as 4 little-endian bytes.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Server-wide settings: schema version, last published CAN contact, IPNS sequence.
pub(crate) const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings_v1");

/// Hosted identities by network id.
pub const HOSTED_IDENTITIES: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("hosted_identities_v1");

/// Profiles shared by neighbours, by (neighbour id, identity id).
pub const NEIGHBOR_IDENTITIES: TableDefinition<([u8; 32], [u8; 32]), &[u8]> =
    TableDefinition::new("neighbor_identities_v1");

/// Servers whose profiles we receive, by network id.
pub const NEIGHBORS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("neighbors_v1");

/// Servers that receive our profiles, by network id.
pub(crate) const FOLLOWERS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("followers_v1");

/// Relationship cards, by (identity id, application id).
pub(crate) const RELATIONS: TableDefinition<([u8; 32], &[u8]), &[u8]> =
    TableDefinition::new("relations_v1");

/// The neighbourhood action queue, by (target server id, sequence number): ordered per server.
pub(crate) const ACTIONS: TableDefinition<([u8; 32], u64), &[u8]> =
    TableDefinition::new("actions_v1");

/// Reference counts of image files, by SHA-256 of the image.
pub const IMAGES: TableDefinition<[u8; 32], u32> = TableDefinition::new("images_v1");

/// Images whose last reference a committed transaction dropped: only these files may be
/// deleted. A row goes once its file is gone, or when the image is referenced again.
pub(crate) const IMAGE_RELEASES: TableDefinition<[u8; 32], ()> =
    TableDefinition::new("image_releases_v1");

/// CAN objects (multihashes) to unpin: a client's object once its hosting agreement ended.
/// Filled in the transaction that ends the agreement, emptied by `peers::can` as CAN confirms.
pub(crate) const CAN_UNPINS: TableDefinition<&[u8], ()> = TableDefinition::new("can_unpins_v1");

/// Creates every table that does not exist yet, inside `txn`.
pub(crate) fn create_all(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(SETTINGS)?;
    txn.open_table(HOSTED_IDENTITIES)?;
    txn.open_table(NEIGHBOR_IDENTITIES)?;
    txn.open_table(NEIGHBORS)?;
    txn.open_table(FOLLOWERS)?;
    txn.open_table(RELATIONS)?;
    txn.open_table(ACTIONS)?;
    txn.open_table(IMAGES)?;
    txn.open_table(IMAGE_RELEASES)?;
    txn.open_table(CAN_UNPINS)?;
    Ok(())
}
