//! Checking the items of a NeighborhoodSharedProfileUpdateRequest (spec §4.19, the order of
//! PS08023): the first bad item stops the check, the items before it are applied.
//!
//! The checks come in two parts. [`prepare`] does what needs nothing stored (decoding the
//! profile once, its fields, its signature over the bytes as received, the thumbnail), spread
//! over threads. [`Applier`] then goes through the items in order against the neighbour's stored
//! profiles ([`Stored`], inside the write transaction that changes them): whether an identity is
//! new or known, its type, and the limit on shared profiles, counted item by item so that a
//! `delete` earlier in the request makes room for a later `add`, also across transactions.

use std::collections::HashSet;
use std::sync::Arc;

use crate::crypto::{sha256, verify};
use crate::profile_rules::{MAX_THUMBNAIL_LEN, check_image, check_profile_fields};
use crate::store::StoreError;
use crate::store::neighbors::SharedEditor;
use crate::store::records::NeighborIdentity;
use crate::wire::INTERNAL_TYPE;
use crate::wire::ps::{self, shared_profile_update_item::ActionType};

/// When the items arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// During the neighbour's initialisation: only `add` items are allowed.
    Initialization,
    /// After it: any item.
    Live,
}

/// One item after the checks that need nothing stored.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    action: Action,
    /// The first failing check that comes before the stored-state checks (spec order).
    early: Option<String>,
    /// The first failing check that comes after them (the thumbnail).
    late: Option<String>,
}

/// What an item does once every check passed.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// An `add` (`adding`) or `change` item.
    Upsert {
        /// True for `add`.
        adding: bool,
        /// The identity's network id.
        id: [u8; 32],
        /// The profile, decoded once from the signed bytes (for the search index).
        profile: Box<ps::ProfileInformation>,
        /// The row to store: the signed bytes as received, the signature, the thumbnail.
        record: Box<NeighborIdentity>,
    },
    /// A `delete` item naming a 32-byte id.
    Delete([u8; 32]),
    /// A `refresh` item.
    Refresh,
    /// An item that fails before it names anything.
    Invalid,
}

impl Prepared {
    /// What the item does when it passes.
    pub(crate) fn action(&self) -> &Action {
        &self.action
    }

    /// Whether this is a `refresh` item that passes: it changes no profile.
    pub(crate) fn is_refresh(&self) -> bool {
        matches!(self.action, Action::Refresh) && self.early.is_none() && self.late.is_none()
    }
}

/// Runs the checks that need nothing stored on every item, spread over up to `threads`
/// threads; the result keeps the items' order.
pub(crate) fn prepare(
    items: Vec<ps::SharedProfileUpdateItem>,
    phase: Phase,
    threads: usize,
) -> Vec<Prepared> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let mut items = items;
    let mut parts = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        parts.push(std::mem::replace(&mut items, rest));
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(|item| prepare_one(item, phase))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        running
            .into_iter()
            // A panic in a check is a bug; its items count as invalid rather than lost.
            .flat_map(|part| part.join().unwrap_or_default())
            .collect()
    })
}

fn prepare_one(item: ps::SharedProfileUpdateItem, phase: Phase) -> Prepared {
    let invalid = Prepared {
        action: Action::Invalid,
        early: Some("actionType".to_owned()),
        late: None,
    };
    match (item.action_type, phase) {
        (Some(ActionType::Add(add)), _) => {
            upsert("add", add.signed_profile, add.thumbnail_image, true)
        }
        (Some(ActionType::Change(change)), Phase::Live) => upsert(
            "change",
            change.signed_profile,
            change.thumbnail_image,
            false,
        ),
        (Some(ActionType::Delete(delete)), Phase::Live) => {
            match <[u8; 32]>::try_from(delete.identity_network_id.as_slice()) {
                Ok(id) => Prepared {
                    action: Action::Delete(id),
                    early: None,
                    late: None,
                },
                Err(_) => Prepared {
                    early: Some("delete.identityNetworkId".to_owned()),
                    ..invalid
                },
            }
        }
        (Some(ActionType::Refresh(_)), Phase::Live) => Prepared {
            action: Action::Refresh,
            early: None,
            late: None,
        },
        _ => invalid,
    }
}

/// An `add` or `change` item: fields, then the signature over the bytes as received (skipped
/// for `<INTERNAL>` placeholders, spec §5.8), then the thumbnail.
fn upsert(
    kind: &str,
    signed: Option<ps::SignedProfileInformation>,
    thumbnail: Vec<u8>,
    adding: bool,
) -> Prepared {
    let bad = |field: &str| Some(format!("{kind}.{field}"));
    let signed = signed.unwrap_or_default();
    // A profile that does not decode fails like an empty one: at its version.
    let profile = signed.decode_profile().unwrap_or_default();
    let mut early = check_profile_fields(&profile, None)
        .err()
        .and_then(|field| bad(&format!("signedProfile.profile.{field}")));
    if early.is_none()
        && profile.r#type != INTERNAL_TYPE
        && !verify(&profile.public_key, &signed.profile, &signed.signature)
    {
        early = bad("signedProfile.signature");
    }
    let checked = check_image(&profile.thumbnail_image_hash, thumbnail, MAX_THUMBNAIL_LEN);
    let late = checked.as_ref().err().and_then(|_| bad("thumbnailImage"));
    let record = NeighborIdentity {
        thumbnail_image_hash: profile.thumbnail_image_hash.clone(),
        thumbnail: checked.ok().flatten().map(|i| i.data).unwrap_or_default(),
        identity_type: profile.r#type.clone(),
        profile: signed.profile,
        signature: signed.signature,
        ..NeighborIdentity::default()
    };
    Prepared {
        action: Action::Upsert {
            adding,
            id: sha256(&profile.public_key),
            profile: Box::new(profile),
            record: Box::new(record),
        },
        early,
        late,
    }
}

/// What the in-order checks read and change: the profiles one neighbour shares.
pub(crate) trait Stored {
    /// How many profiles the neighbour shares now.
    fn count(&self) -> u32;
    /// The type of the stored profile of `id`, `None` when the neighbour shares none.
    fn stored_type(&self, id: &[u8; 32]) -> Result<Option<String>, StoreError>;
    /// Stores or replaces the profile of `id`.
    fn upsert(&mut self, id: [u8; 32], record: &NeighborIdentity) -> Result<(), StoreError>;
    /// Deletes the profile of `id`.
    fn delete(&mut self, id: &[u8; 32]) -> Result<(), StoreError>;
    /// Records a refresh of every profile.
    fn refresh(&mut self);
}

impl Stored for SharedEditor<'_> {
    fn count(&self) -> u32 {
        SharedEditor::count(self)
    }

    fn stored_type(&self, id: &[u8; 32]) -> Result<Option<String>, StoreError> {
        SharedEditor::stored_type(self, id)
    }

    fn upsert(&mut self, id: [u8; 32], record: &NeighborIdentity) -> Result<(), StoreError> {
        SharedEditor::upsert(self, id, record)
    }

    fn delete(&mut self, id: &[u8; 32]) -> Result<(), StoreError> {
        SharedEditor::delete(self, id).map(drop)
    }

    fn refresh(&mut self) {
        SharedEditor::refresh(self);
    }
}

/// How far [`Applier::apply`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Items up to the returned position were applied; more remain.
    Paused,
    /// Every item was applied.
    Done,
    /// The item at the position failed with these `"$i.$field"` details; nothing after it was
    /// applied.
    Failed(String),
}

/// Goes through prepared items in order, across as many transactions as it takes.
#[derive(Debug, Clone)]
pub(crate) struct Applier {
    items: Arc<[Prepared]>,
    /// The next item to check.
    next: usize,
    /// Identities named by earlier items of the request.
    seen: HashSet<[u8; 32]>,
    /// Most profiles the neighbour may share (spec §4.19: 20,000).
    max: u32,
}

impl Applier {
    /// Starts at the first of `items`, with the neighbour allowed `max` profiles.
    pub(crate) fn new(items: Arc<[Prepared]>, max: u32) -> Applier {
        Applier {
            items,
            next: 0,
            seen: HashSet::new(),
            max,
        }
    }

    /// The items and the position of the next one to check.
    pub(crate) fn position(&self) -> (&[Prepared], usize) {
        (&self.items, self.next)
    }

    /// Checks and applies items in order to `stored` until the first bad one, the end, or
    /// `budget` items that change something (refreshes change nothing per profile).
    pub(crate) fn apply(
        &mut self,
        stored: &mut impl Stored,
        budget: usize,
    ) -> Result<Progress, StoreError> {
        let mut spent = 0;
        let items = Arc::clone(&self.items);
        while let Some(item) = items.get(self.next) {
            if spent == budget {
                return Ok(Progress::Paused);
            }
            if let Err(field) = self.check(item, stored)? {
                return Ok(Progress::Failed(format!("{}.{field}", self.next)));
            }
            match &item.action {
                Action::Upsert { id, record, .. } => stored.upsert(*id, record)?,
                Action::Delete(id) => stored.delete(id)?,
                Action::Refresh => stored.refresh(),
                Action::Invalid => {}
            }
            spent += usize::from(!matches!(item.action, Action::Refresh));
            self.next += 1;
        }
        Ok(Progress::Done)
    }

    /// The checks of one item in spec order, those against `stored` among them.
    fn check(
        &mut self,
        item: &Prepared,
        stored: &impl Stored,
    ) -> Result<Result<(), String>, StoreError> {
        if let Some(early) = &item.early {
            return Ok(Err(early.clone()));
        }
        match &item.action {
            Action::Upsert {
                adding,
                id,
                profile,
                ..
            } => {
                let kind = if *adding { "add" } else { "change" };
                let bad = |field: &str| Ok(Err(format!("{kind}.{field}")));
                if *adding && stored.count() >= self.max {
                    return Ok(Err(kind.to_owned()));
                }
                let known = stored.stored_type(id)?;
                // An added identity must be new, a changed one known, and neither named twice.
                if self.seen.contains(id) || known.is_some() == *adding {
                    return bad("signedProfile.profile.publicKey");
                }
                if known.is_some_and(|known| known != profile.r#type) {
                    return bad("signedProfile.profile.type");
                }
                if let Some(late) = &item.late {
                    return Ok(Err(late.clone()));
                }
                self.seen.insert(*id);
            }
            Action::Delete(id) => {
                if self.seen.contains(id) || stored.stored_type(id)?.is_none() {
                    return Ok(Err("delete.identityNetworkId".to_owned()));
                }
                self.seen.insert(*id);
            }
            Action::Refresh | Action::Invalid => {}
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests;
