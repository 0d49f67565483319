//! Checking the items of a NeighborhoodSharedProfileUpdateRequest (spec §4.19, the order of
//! PS08023): the first bad item stops the check, the items before it are applied.

use std::collections::{HashMap, HashSet};

use prost::Message as _;

use crate::crypto::{sha256, verify};
use crate::profile_rules::{MAX_THUMBNAIL_LEN, check_image, check_profile_fields};
use crate::store::neighbors::SharedChange;
use crate::store::records::NeighborIdentity;
use crate::wire::ps::{self, shared_profile_update_item::ActionType};
use crate::wire::{INTERNAL_TYPE, MAX_SHARED_PROFILES};

/// When the items arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// During the neighbour's initialisation: only `add` items are allowed.
    Initialization,
    /// After it: any item.
    Live,
}

/// What the neighbour shares already, as far as this request's items are concerned.
#[derive(Debug, Default)]
pub struct Shared {
    /// The stored type of each identity the neighbour shares and the request names.
    pub types: HashMap<[u8; 32], String>,
    /// How many profiles the neighbour shares in all.
    pub count: u32,
}

/// The checked items: the changes of every item before the first bad one, and that item's
/// `"$i.$field"` details.
#[derive(Debug)]
pub struct Checked {
    /// Changes to apply.
    pub changes: Vec<SharedChange>,
    /// The first bad item's details, if any.
    pub error: Option<String>,
}

/// The identities the items name, for loading [`Shared::types`] before the check.
pub fn named_ids(items: &[ps::SharedProfileUpdateItem]) -> Vec<[u8; 32]> {
    let key_id = |signed: &Option<ps::SignedProfileInformation>| {
        let key = signed.as_ref()?.profile.as_ref()?.public_key.as_slice();
        Some(sha256(key))
    };
    items
        .iter()
        .filter_map(|item| match item.action_type.as_ref()? {
            ActionType::Add(add) => key_id(&add.signed_profile),
            ActionType::Change(change) => key_id(&change.signed_profile),
            ActionType::Delete(delete) => {
                <[u8; 32]>::try_from(delete.identity_network_id.as_slice()).ok()
            }
            ActionType::Refresh(_) => None,
        })
        .collect()
}

/// Whether each item's signature verifies (false for an item without a signed profile): the
/// costly part of a check, spread over up to `threads` threads. [`check`] takes the result, so
/// the order of the checks stays that of the spec.
pub fn signatures(items: &[ps::SharedProfileUpdateItem], threads: usize) -> Vec<bool> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(signature_holds).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_default())
            .collect()
    })
}

fn signature_holds(item: &ps::SharedProfileUpdateItem) -> bool {
    let signed = match &item.action_type {
        Some(ActionType::Add(add)) => add.signed_profile.as_ref(),
        Some(ActionType::Change(change)) => change.signed_profile.as_ref(),
        _ => None,
    };
    signed.is_some_and(|signed| {
        let profile = signed.profile.clone().unwrap_or_default();
        verify(
            &profile.public_key,
            &profile.encode_to_vec(),
            &signed.signature,
        )
    })
}

/// Checks `items` in order against what the neighbour already shares; `verified` holds the
/// [`signatures`] of the same items.
pub fn check(
    items: Vec<ps::SharedProfileUpdateItem>,
    phase: Phase,
    shared: &Shared,
    verified: &[bool],
) -> Checked {
    let mut batch = Batch {
        shared,
        verified,
        index: 0,
        seen: HashSet::new(),
        added: 0,
    };
    let mut changes = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        batch.index = index;
        match batch.item(item, phase) {
            Ok(change) => changes.push(change),
            Err(field) => {
                return Checked {
                    changes,
                    error: Some(format!("{index}.{field}")),
                };
            }
        }
    }
    Checked {
        changes,
        error: None,
    }
}

struct Batch<'a> {
    shared: &'a Shared,
    /// Whether each item's signature holds.
    verified: &'a [bool],
    /// The item being checked.
    index: usize,
    /// Identities named by earlier items of this request.
    seen: HashSet<[u8; 32]>,
    /// Profiles earlier items of this request add.
    added: u32,
}

impl Batch<'_> {
    fn item(
        &mut self,
        item: ps::SharedProfileUpdateItem,
        phase: Phase,
    ) -> Result<SharedChange, String> {
        match (item.action_type, phase) {
            (Some(ActionType::Add(add)), _) => {
                self.upsert("add", add.signed_profile, add.thumbnail_image, true)
            }
            (Some(ActionType::Change(change)), Phase::Live) => self.upsert(
                "change",
                change.signed_profile,
                change.thumbnail_image,
                false,
            ),
            (Some(ActionType::Delete(delete)), Phase::Live) => self.delete(&delete),
            (Some(ActionType::Refresh(_)), Phase::Live) => Ok(SharedChange::Refresh),
            _ => Err("actionType".to_owned()),
        }
    }

    /// An `add` (`adding`) or `change` item.
    fn upsert(
        &mut self,
        kind: &str,
        signed: Option<ps::SignedProfileInformation>,
        thumbnail: Vec<u8>,
        adding: bool,
    ) -> Result<SharedChange, String> {
        let bad = |field: &str| format!("{kind}.{field}");
        let signed = signed.unwrap_or_default();
        let profile = signed.profile.unwrap_or_default();
        check_profile_fields(&profile, None)
            .map_err(|field| bad(&format!("signedProfile.profile.{field}")))?;
        let bytes = profile.encode_to_vec();
        let holds = self.verified.get(self.index).copied().unwrap_or(false);
        if profile.r#type != INTERNAL_TYPE && !holds {
            return Err(bad("signedProfile.signature"));
        }
        let id = sha256(&profile.public_key);
        let stored = self.shared.types.get(&id);
        if adding && self.shared.count.saturating_add(self.added) >= MAX_SHARED_PROFILES {
            return Err(kind.to_owned());
        }
        // An added identity must be new, a changed one known, and neither named twice.
        if self.seen.contains(&id) || stored.is_some() == adding {
            return Err(bad("signedProfile.profile.publicKey"));
        }
        if stored.is_some_and(|stored| *stored != profile.r#type) {
            return Err(bad("signedProfile.profile.type"));
        }
        let thumbnail = check_image(&profile.thumbnail_image_hash, thumbnail, MAX_THUMBNAIL_LEN)
            .map_err(|_| bad("thumbnailImage"))?;
        self.seen.insert(id);
        self.added += u32::from(adding);
        let record = NeighborIdentity {
            thumbnail_image_hash: profile.thumbnail_image_hash.clone(),
            thumbnail: thumbnail.map(|image| image.data).unwrap_or_default(),
            profile: bytes,
            signature: signed.signature,
            ..NeighborIdentity::default()
        };
        Ok(SharedChange::Upsert { id, record })
    }

    fn delete(&mut self, delete: &ps::SharedProfileDeleteItem) -> Result<SharedChange, String> {
        let id = <[u8; 32]>::try_from(delete.identity_network_id.as_slice())
            .ok()
            .filter(|id| self.shared.types.contains_key(id) && self.seen.insert(*id));
        id.map(|id| SharedChange::Delete { id })
            .ok_or_else(|| "delete.identityNetworkId".to_owned())
    }
}

#[cfg(test)]
mod tests;
