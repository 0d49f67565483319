//! The neighbourhood action queue: per target server, in the order the actions were queued.
//!
//! Filled in the same transaction as the change that causes it; drained by the neighbourhood
//! sync task (a later feature).

use prost::Message as _;
use redb::{ReadableTable, WriteTransaction};

use super::StoreError;
use super::records::{ActionKind, NeighborhoodAction};
use super::tables::{ACTIONS, FOLLOWERS, SETTINGS};
use crate::crypto::NetworkId;

/// Settings key of the next action sequence number (8 bytes, little endian).
const NEXT_ACTION_SEQ: &str = "next_action_seq";

/// Queues one action about `identity` for every follower server.
pub fn queue_for_followers(
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
    let mut settings = txn.open_table(SETTINGS)?;
    let mut seq = settings
        .get(NEXT_ACTION_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map_or(0, u64::from_le_bytes);
    let action = NeighborhoodAction {
        kind: kind as i32,
        identity_id: identity.0.to_vec(),
        execute_after_ms: now_ms,
        extra: Vec::new(),
    }
    .encode_to_vec();
    let mut actions = txn.open_table(ACTIONS)?;
    for follower in followers {
        actions.insert((follower, seq), action.as_slice())?;
        seq += 1;
    }
    settings.insert(NEXT_ACTION_SEQ, seq.to_le_bytes().as_slice())?;
    Ok(())
}
