//! PS08 §2.4 matching rules over shared-profile update items: which identity an item names, whether
//! it matches that identity's latest state, and "exactly once" over an item stream.

use std::collections::BTreeMap;

use iop_profile_server::crypto::{sha256, verify};
use iop_profile_server::wire::ps::{self, shared_profile_update_item::ActionType};
use prost::Message as _;

use super::customer::Hosted;

/// The kind of a `SharedProfileUpdateItem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `add`.
    Add,
    /// `change`.
    Change,
    /// `delete`.
    Delete,
    /// `refresh`.
    Refresh,
}

/// The kind of `item`; an item without an action is a test failure.
pub fn kind(item: &ps::SharedProfileUpdateItem) -> Kind {
    match item.action_type.as_ref().expect("item has an action") {
        ActionType::Add(_) => Kind::Add,
        ActionType::Change(_) => Kind::Change,
        ActionType::Delete(_) => Kind::Delete,
        ActionType::Refresh(_) => Kind::Refresh,
    }
}

/// The signed profile and thumbnail of an add or change item.
fn carried(item: &ps::SharedProfileUpdateItem) -> Option<(&ps::SignedProfileInformation, &[u8])> {
    match item.action_type.as_ref()? {
        ActionType::Add(add) => Some((add.signed_profile.as_ref()?, &add.thumbnail_image)),
        ActionType::Change(change) => {
            Some((change.signed_profile.as_ref()?, &change.thumbnail_image))
        }
        ActionType::Delete(_) | ActionType::Refresh(_) => None,
    }
}

/// The network id an item names: SHA-256 of the profile key, or the deleted id.
pub fn named_identity(item: &ps::SharedProfileUpdateItem) -> Vec<u8> {
    if let Some(ActionType::Delete(delete)) = &item.action_type {
        return delete.identity_network_id.clone();
    }
    let (signed, _) = carried(item).expect("add or change item with a signed profile");
    let profile = signed
        .decode_profile()
        .expect("signed profile has a profile");
    sha256(&profile.public_key).to_vec()
}

/// "Item matches identity X" (PS08 §2.4): same profile, same verifying signature, same thumbnail.
#[track_caller]
pub fn assert_matches(signed: &ps::SignedProfileInformation, thumbnail: &[u8], hosted: &Hosted) {
    let profile = signed
        .decode_profile()
        .expect("signed profile has a profile");
    assert_eq!(
        &profile, &hosted.profile,
        "profile of {}",
        hosted.profile.name
    );
    assert_eq!(
        signed.signature, hosted.signature,
        "signature of {}",
        hosted.profile.name
    );
    assert!(
        verify(
            &profile.public_key,
            &profile.encode_to_vec(),
            &signed.signature
        ),
        "signature of {} verifies",
        hosted.profile.name
    );
    assert_eq!(
        thumbnail, hosted.thumbnail,
        "thumbnail of {}",
        hosted.profile.name
    );
}

/// Checks `items` against the expected identities and returns the network ids that appeared.
///
/// Every item is of `kind`, names one of `required` or `optional`, appears at most once and
/// matches (§2.4); every `required` identity appears.
#[track_caller]
pub fn assert_items(
    items: &[ps::SharedProfileUpdateItem],
    kind_wanted: Kind,
    required: &[&Hosted],
    optional: &[&Hosted],
) -> Vec<Vec<u8>> {
    let known: BTreeMap<Vec<u8>, &Hosted> = required
        .iter()
        .chain(optional)
        .map(|hosted| (hosted.network_id(), *hosted))
        .collect();
    let mut seen = Vec::new();
    for item in items {
        assert_eq!(kind(item), kind_wanted, "item kind");
        let id = named_identity(item);
        let hosted = known.get(&id).expect("item names an expected identity");
        assert!(!seen.contains(&id), "{} appears twice", hosted.profile.name);
        if let Some((signed, thumbnail)) = carried(item) {
            assert_matches(signed, thumbnail, hosted);
        }
        seen.push(id);
    }
    for hosted in required {
        assert!(
            seen.contains(&hosted.network_id()),
            "{} never arrived",
            hosted.profile.name
        );
    }
    seen
}

/// "Exactly once" (PS08 §2.4): each of `expected` in exactly one item of `kind`, matching, and no
/// other identity.
#[track_caller]
pub fn assert_exactly_once(
    items: &[ps::SharedProfileUpdateItem],
    kind_wanted: Kind,
    expected: &[&Hosted],
) {
    assert_items(items, kind_wanted, expected, &[]);
}

/// References to every identity of the groups, in order (for the checks above).
pub fn all<'a>(groups: &[&'a [Hosted]]) -> Vec<&'a Hosted> {
    groups.iter().flat_map(|group| group.iter()).collect()
}

/// References to the live identities of the groups.
pub fn live<'a>(groups: &[&'a [Hosted]]) -> Vec<&'a Hosted> {
    all(groups)
        .into_iter()
        .filter(|hosted| hosted.live)
        .collect()
}

/// The `add` item a sharing server sends for `profile`.
pub fn add_item(profile: &Hosted) -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Add(ps::SharedProfileAddItem {
            signed_profile: Some(signed_profile(profile)),
            thumbnail_image: profile.thumbnail.clone(),
        })),
    }
}

/// The profile with the signature sent with it.
pub fn signed_profile(profile: &Hosted) -> ps::SignedProfileInformation {
    ps::SignedProfileInformation {
        profile: profile.profile.encode_to_vec(),
        signature: profile.signature.clone(),
    }
}
