//! The check order of spec §4.19 and PS08023, item by item.

use super::*;

/// Checks as the server does: signatures first, on two threads.
fn check(items: Vec<ps::SharedProfileUpdateItem>, phase: Phase, shared: &Shared) -> Checked {
    let verified = signatures(&items, 2);
    super::check(items, phase, shared, &verified)
}
use crate::crypto::ServerKey;

fn signed(key: &ServerKey, name: &str) -> ps::SignedProfileInformation {
    let profile = ps::ProfileInformation {
        version: vec![1, 0, 0],
        public_key: key.public_key().to_vec(),
        r#type: "Profile Type A".into(),
        name: name.into(),
        ..ps::ProfileInformation::default()
    };
    let signature = key.sign(&profile.encode_to_vec());
    ps::SignedProfileInformation {
        profile: Some(profile),
        signature,
    }
}

fn add(signed: ps::SignedProfileInformation) -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Add(ps::SharedProfileAddItem {
            signed_profile: Some(signed),
            thumbnail_image: Vec::new(),
        })),
    }
}

fn change(signed: ps::SignedProfileInformation) -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Change(ps::SharedProfileChangeItem {
            signed_profile: Some(signed),
            thumbnail_image: Vec::new(),
        })),
    }
}

fn keys(count: usize) -> Vec<ServerKey> {
    (0..count).map(|_| ServerKey::generate()).collect()
}

#[test]
fn valid_adds_become_upserts() {
    let keys = keys(3);
    let items = keys.iter().map(|k| add(signed(k, "x"))).collect();
    let checked = check(items, Phase::Initialization, &Shared::default());
    assert_eq!(checked.error, None);
    assert_eq!(checked.changes.len(), 3);
}

#[test]
fn the_first_bad_item_stops_and_earlier_ones_stay() {
    let keys = keys(3);
    let mut bad = signed(&keys[1], "x");
    bad.signature[0] ^= 0x12;
    let items = vec![
        add(signed(&keys[0], "a")),
        add(bad),
        add(signed(&keys[2], "c")),
    ];
    let checked = check(items, Phase::Initialization, &Shared::default());
    assert_eq!(
        checked.error.as_deref(),
        Some("1.add.signedProfile.signature")
    );
    assert_eq!(checked.changes.len(), 1);
}

#[test]
fn only_adds_during_initialisation() {
    let keys = keys(2);
    let refresh = ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Refresh(ps::SharedProfileRefreshAllItem {})),
    };
    let unset = ps::SharedProfileUpdateItem { action_type: None };
    for (second, phase) in [
        (change(signed(&keys[1], "x")), Phase::Initialization),
        (refresh, Phase::Initialization),
        (unset, Phase::Live),
    ] {
        let items = vec![add(signed(&keys[0], "a")), second];
        let checked = check(items, phase, &Shared::default());
        assert_eq!(checked.error.as_deref(), Some("1.actionType"));
    }
}

#[test]
fn field_errors_come_before_the_signature() {
    let key = ServerKey::generate();
    let mut item = signed(&key, "x");
    if let Some(profile) = item.profile.as_mut() {
        profile.name = "a".repeat(70);
    }
    item.signature = vec![1];
    let checked = check(vec![add(item)], Phase::Initialization, &Shared::default());
    assert_eq!(
        checked.error.as_deref(),
        Some("0.add.signedProfile.profile.name")
    );
}

#[test]
fn internal_placeholders_need_no_signature() {
    let key = ServerKey::generate();
    let mut item = signed(&key, "x");
    if let Some(profile) = item.profile.as_mut() {
        profile.r#type = INTERNAL_TYPE.into();
    }
    item.signature = Vec::new();
    let checked = check(vec![add(item)], Phase::Initialization, &Shared::default());
    assert_eq!(checked.error, None);
}

#[test]
fn duplicates_in_the_batch_or_in_store_are_refused() {
    let keys = keys(2);
    let twice = vec![add(signed(&keys[0], "a")), add(signed(&keys[0], "a"))];
    let checked = check(twice, Phase::Initialization, &Shared::default());
    assert_eq!(
        checked.error.as_deref(),
        Some("1.add.signedProfile.profile.publicKey")
    );
    let mut shared = Shared::default();
    shared
        .types
        .insert(sha256(keys[1].public_key()), "Profile Type A".into());
    let known = vec![add(signed(&keys[1], "b"))];
    let checked = check(known, Phase::Initialization, &shared);
    assert_eq!(
        checked.error.as_deref(),
        Some("0.add.signedProfile.profile.publicKey")
    );
}

#[test]
fn the_twenty_thousand_and_first_profile_is_refused() {
    let keys = keys(2);
    let shared = Shared {
        types: HashMap::new(),
        count: MAX_SHARED_PROFILES - 1,
    };
    let items = keys.iter().map(|k| add(signed(k, "x"))).collect();
    let checked = check(items, Phase::Initialization, &shared);
    assert_eq!(checked.error.as_deref(), Some("1.add"));
    assert_eq!(checked.changes.len(), 1);
}

#[test]
fn changes_need_a_known_identity_of_the_same_type() {
    let keys = keys(2);
    let mut shared = Shared::default();
    shared
        .types
        .insert(sha256(keys[0].public_key()), "Other".into());
    let unknown = check(vec![change(signed(&keys[1], "b"))], Phase::Live, &shared);
    assert_eq!(
        unknown.error.as_deref(),
        Some("0.change.signedProfile.profile.publicKey")
    );
    let retyped = check(vec![change(signed(&keys[0], "a"))], Phase::Live, &shared);
    assert_eq!(
        retyped.error.as_deref(),
        Some("0.change.signedProfile.profile.type")
    );
}

#[test]
fn deletes_need_a_known_identity_named_once() {
    let key = ServerKey::generate();
    let id = sha256(key.public_key());
    let delete = |id: Vec<u8>| ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Delete(ps::SharedProfileDeleteItem {
            identity_network_id: id,
        })),
    };
    let mut shared = Shared::default();
    shared.types.insert(id, "Profile Type A".into());
    let twice = vec![delete(id.to_vec()), delete(id.to_vec())];
    let checked = check(twice, Phase::Live, &shared);
    assert_eq!(checked.error.as_deref(), Some("1.delete.identityNetworkId"));
    let short = check(vec![delete(vec![1; 31])], Phase::Live, &shared);
    assert_eq!(short.error.as_deref(), Some("0.delete.identityNetworkId"));
}

#[test]
fn thumbnails_must_match_their_hash() {
    let key = ServerKey::generate();
    let mut item = signed(&key, "x");
    if let Some(profile) = item.profile.as_mut() {
        profile.thumbnail_image_hash = sha256(&[1]).to_vec();
    }
    item.signature = key.sign(
        &item
            .profile
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default(),
    );
    let with_bytes = ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Add(ps::SharedProfileAddItem {
            signed_profile: Some(item),
            thumbnail_image: vec![1],
        })),
    };
    let checked = check(vec![with_bytes], Phase::Initialization, &Shared::default());
    assert_eq!(checked.error.as_deref(), Some("0.add.thumbnailImage"));
}
