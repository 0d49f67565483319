//! The neighbourhood action queue: per follower, in the order the actions were queued.
//!
//! Filled in the same transaction as the change that causes it, so an acknowledged change is
//! never lost to followers; drained by the follower sync task (`peers`).

use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use super::StoreError;
use super::records::{ActionKind, NeighborhoodAction};
use super::tables::{ACTIONS, FOLLOWERS, SETTINGS};
use crate::crypto::NetworkId;

/// Settings key of the next action sequence number (8 bytes, little endian).
const NEXT_ACTION_SEQ: &str = "next_action_seq";

/// The action sequence counter inside one write transaction.
pub(crate) struct Seq(u64);

impl Seq {
    /// The next number.
    pub(crate) fn take(&mut self) -> u64 {
        let seq = self.0;
        self.0 += 1;
        seq
    }

    /// Stores the counter for the next transaction.
    pub(crate) fn save(self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut settings = txn.open_table(SETTINGS)?;
        settings.insert(NEXT_ACTION_SEQ, self.0.to_le_bytes().as_slice())?;
        Ok(())
    }
}

impl super::Store {
    /// Neighbourhood actions queued for followers and not yet delivered.
    pub(crate) async fn queued_actions(&self) -> Result<u64, StoreError> {
        self.read(|txn| {
            use redb::ReadableTableMetadata as _;
            Ok(txn.open_table(ACTIONS)?.len()?)
        })
        .await
    }
}

/// Reads the action sequence counter.
pub(crate) fn next_seq(txn: &WriteTransaction) -> Result<Seq, StoreError> {
    let settings = txn.open_table(SETTINGS)?;
    let seq = settings
        .get(NEXT_ACTION_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map_or(0, u64::from_le_bytes);
    Ok(Seq(seq))
}

/// Queues one action about `identity` for every follower, initialised or not: a follower whose
/// initialisation is under way gets it after its snapshot (spec §5.7 A.2).
pub(crate) fn queue_for_followers(
    txn: &WriteTransaction,
    kind: ActionKind,
    identity: NetworkId,
    now_ms: i64,
) -> Result<(), StoreError> {
    let followers: Vec<[u8; 32]> = {
        let table = txn.open_table(FOLLOWERS)?;
        let keys = table.iter()?.map(|entry| entry.map(|(key, _)| key.value()));
        keys.collect::<Result<_, _>>()?
    };
    if followers.is_empty() {
        return Ok(());
    }
    let mut seq = next_seq(txn)?;
    let action = NeighborhoodAction {
        kind: kind as i32,
        identity_id: identity.0.to_vec(),
        execute_after_ms: now_ms,
        extra: Vec::new(),
    }
    .encode_to_vec();
    let mut actions = txn.open_table(ACTIONS)?;
    for follower in followers {
        actions.insert((follower, seq.take()), action.as_slice())?;
    }
    drop(actions);
    seq.save(txn)
}
