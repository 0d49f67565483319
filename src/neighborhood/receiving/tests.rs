//! The check order of spec §4.19 and PS08023, item by item, against an in-memory neighbour;
//! and a model-based property test of the in-order rules at and around the limit.

use std::collections::HashMap;

use prop::collection::vec;
use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::crypto::ServerKey;
use crate::wire::MAX_SHARED_PROFILES;

/// A neighbour's shared profiles in memory: the stored type of each identity.
#[derive(Debug, Default, Clone)]
struct Memory {
    rows: HashMap<[u8; 32], String>,
    refreshed: bool,
    /// Pretend this many more profiles are stored (to test the limit without storing them).
    others: u32,
}

impl Stored for Memory {
    fn count(&self) -> u32 {
        self.others + u32::try_from(self.rows.len()).unwrap_or(u32::MAX)
    }

    fn stored_type(&self, id: &[u8; 32]) -> Result<Option<String>, StoreError> {
        Ok(self.rows.get(id).cloned())
    }

    fn upsert(&mut self, id: [u8; 32], record: &NeighborIdentity) -> Result<(), StoreError> {
        self.rows.insert(id, record.identity_type.clone());
        Ok(())
    }

    fn delete(&mut self, id: &[u8; 32]) -> Result<(), StoreError> {
        self.rows.remove(id);
        Ok(())
    }

    fn refresh(&mut self) {
        self.refreshed = true;
    }
}

/// Checks as the server does: prepared on two threads, then applied in chunks of `budget`.
fn run(
    items: Vec<ps::SharedProfileUpdateItem>,
    phase: Phase,
    memory: &mut Memory,
    max: u32,
    budget: usize,
) -> Option<String> {
    let mut applier = Applier::new(prepare(items, phase, 2).into(), max);
    loop {
        match applier.apply(memory, budget).expect("in memory") {
            Progress::Paused => {}
            Progress::Done => return None,
            Progress::Failed(details) => return Some(details),
        }
    }
}

fn check(
    items: Vec<ps::SharedProfileUpdateItem>,
    phase: Phase,
    memory: &mut Memory,
) -> Option<String> {
    run(items, phase, memory, MAX_SHARED_PROFILES, 100)
}

fn profile(key: &ServerKey, name: &str, kind: &str) -> ps::ProfileInformation {
    ps::ProfileInformation {
        version: vec![1, 0, 0],
        public_key: key.public_key().to_vec(),
        r#type: kind.into(),
        name: name.into(),
        ..ps::ProfileInformation::default()
    }
}

fn sign(key: &ServerKey, profile: &ps::ProfileInformation) -> ps::SignedProfileInformation {
    let bytes = profile.encode_to_vec();
    ps::SignedProfileInformation {
        signature: key.sign(&bytes),
        profile: bytes,
    }
}

fn signed(key: &ServerKey, name: &str) -> ps::SignedProfileInformation {
    sign(key, &profile(key, name, "Profile Type A"))
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

fn delete(id: Vec<u8>) -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Delete(ps::SharedProfileDeleteItem {
            identity_network_id: id,
        })),
    }
}

fn refresh() -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Refresh(ps::SharedProfileRefreshAllItem {})),
    }
}

fn keys(count: usize) -> Vec<ServerKey> {
    (0..count).map(|_| ServerKey::generate()).collect()
}

fn id_of(key: &ServerKey) -> [u8; 32] {
    sha256(key.public_key())
}

#[test]
fn valid_adds_are_stored() {
    let keys = keys(3);
    let items = keys.iter().map(|k| add(signed(k, "x"))).collect();
    let mut memory = Memory::default();
    assert_eq!(check(items, Phase::Initialization, &mut memory), None);
    assert_eq!(memory.rows.len(), 3);
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
    let mut memory = Memory::default();
    let error = check(items, Phase::Initialization, &mut memory);
    assert_eq!(error.as_deref(), Some("1.add.signedProfile.signature"));
    assert_eq!(memory.rows.len(), 1);
}

#[test]
fn the_signature_covers_the_bytes_as_received() {
    let key = ServerKey::generate();
    // Signed bytes with an unknown field: valid as received, invalid once re-encoded.
    let mut bytes = profile(&key, "x", "Profile Type A").encode_to_vec();
    bytes.extend_from_slice(&[0x78, 0x01]);
    let signed = ps::SignedProfileInformation {
        signature: key.sign(&bytes),
        profile: bytes.clone(),
    };
    let prepared = prepare(vec![add(signed)], Phase::Initialization, 1);
    let mut memory = Memory::default();
    let mut applier = Applier::new(prepared.clone().into(), 10);
    assert_eq!(applier.apply(&mut memory, 10).ok(), Some(Progress::Done));
    let Action::Upsert { record, .. } = prepared[0].action() else {
        panic!("an upsert");
    };
    assert_eq!(record.profile, bytes, "stored as received");
}

#[test]
fn only_adds_during_initialisation() {
    let keys = keys(2);
    let unset = ps::SharedProfileUpdateItem { action_type: None };
    for (second, phase) in [
        (change(signed(&keys[1], "x")), Phase::Initialization),
        (refresh(), Phase::Initialization),
        (unset, Phase::Live),
    ] {
        let items = vec![add(signed(&keys[0], "a")), second];
        let error = check(items, phase, &mut Memory::default());
        assert_eq!(error.as_deref(), Some("1.actionType"));
    }
}

#[test]
fn field_errors_come_before_the_signature() {
    let key = ServerKey::generate();
    let long = profile(&key, &"a".repeat(70), "Profile Type A");
    let item = ps::SignedProfileInformation {
        profile: long.encode_to_vec(),
        signature: vec![1],
    };
    let error = check(
        vec![add(item)],
        Phase::Initialization,
        &mut Memory::default(),
    );
    assert_eq!(error.as_deref(), Some("0.add.signedProfile.profile.name"));
}

#[test]
fn internal_placeholders_need_no_signature() {
    let key = ServerKey::generate();
    let internal = profile(&key, "x", INTERNAL_TYPE);
    let item = ps::SignedProfileInformation {
        profile: internal.encode_to_vec(),
        signature: Vec::new(),
    };
    let error = check(
        vec![add(item)],
        Phase::Initialization,
        &mut Memory::default(),
    );
    assert_eq!(error, None);
}

#[test]
fn duplicates_in_the_batch_or_in_store_are_refused() {
    let keys = keys(2);
    let twice = vec![add(signed(&keys[0], "a")), add(signed(&keys[0], "a"))];
    let error = check(twice, Phase::Initialization, &mut Memory::default());
    assert_eq!(
        error.as_deref(),
        Some("1.add.signedProfile.profile.publicKey")
    );
    let mut memory = Memory::default();
    memory.rows.insert(id_of(&keys[1]), "Profile Type A".into());
    let known = vec![add(signed(&keys[1], "b"))];
    let error = check(known, Phase::Initialization, &mut memory);
    assert_eq!(
        error.as_deref(),
        Some("0.add.signedProfile.profile.publicKey")
    );
}

#[test]
fn the_twenty_thousand_and_first_profile_is_refused() {
    let keys = keys(2);
    let mut memory = Memory {
        others: MAX_SHARED_PROFILES - 1,
        ..Memory::default()
    };
    let items = keys.iter().map(|k| add(signed(k, "x"))).collect();
    let error = check(items, Phase::Initialization, &mut memory);
    assert_eq!(error.as_deref(), Some("1.add"));
    assert_eq!(memory.rows.len(), 1);
}

#[test]
fn deletes_earlier_in_a_request_make_room_for_later_adds_across_chunks() {
    // Issue 22 defect 1: at the limit, 40 deletes, 40 changes, 40 adds in one request, applied
    // in transactions of 25 items.
    let old = keys(40);
    let changed = keys(40);
    let new = keys(40);
    let mut memory = Memory {
        others: 200 - 80,
        ..Memory::default()
    };
    for key in old.iter().chain(&changed) {
        memory.rows.insert(id_of(key), "Profile Type A".into());
    }
    let items: Vec<_> = old
        .iter()
        .map(|k| delete(id_of(k).to_vec()))
        .chain(changed.iter().map(|k| change(signed(k, "renamed"))))
        .chain(new.iter().map(|k| add(signed(k, "new"))))
        .collect();
    assert_eq!(run(items, Phase::Live, &mut memory, 200, 25), None);
    assert_eq!(memory.count(), 200);
    assert!(new.iter().all(|k| memory.rows.contains_key(&id_of(k))));
}

#[test]
fn changes_need_a_known_identity_of_the_same_type() {
    let keys = keys(2);
    let mut memory = Memory::default();
    memory.rows.insert(id_of(&keys[0]), "Other".into());
    let unknown = check(
        vec![change(signed(&keys[1], "b"))],
        Phase::Live,
        &mut memory,
    );
    assert_eq!(
        unknown.as_deref(),
        Some("0.change.signedProfile.profile.publicKey")
    );
    let retyped = check(
        vec![change(signed(&keys[0], "a"))],
        Phase::Live,
        &mut memory,
    );
    assert_eq!(
        retyped.as_deref(),
        Some("0.change.signedProfile.profile.type")
    );
}

#[test]
fn deletes_need_a_known_identity_named_once() {
    let key = ServerKey::generate();
    let id = id_of(&key);
    let mut memory = Memory::default();
    memory.rows.insert(id, "Profile Type A".into());
    let twice = vec![delete(id.to_vec()), delete(id.to_vec())];
    let error = check(twice, Phase::Live, &mut memory.clone());
    assert_eq!(error.as_deref(), Some("1.delete.identityNetworkId"));
    let short = check(vec![delete(vec![1; 31])], Phase::Live, &mut memory);
    assert_eq!(short.as_deref(), Some("0.delete.identityNetworkId"));
}

#[test]
fn thumbnails_must_match_their_hash() {
    let key = ServerKey::generate();
    let mut with_hash = profile(&key, "x", "Profile Type A");
    with_hash.thumbnail_image_hash = sha256(&[1]).to_vec();
    let with_bytes = ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Add(ps::SharedProfileAddItem {
            signed_profile: Some(sign(&key, &with_hash)),
            thumbnail_image: vec![1],
        })),
    };
    let error = check(
        vec![with_bytes],
        Phase::Initialization,
        &mut Memory::default(),
    );
    assert_eq!(error.as_deref(), Some("0.add.thumbnailImage"));
}

/// One generated item: what it does, to which of a few identities, and whether it is bad.
#[derive(Debug, Clone)]
enum Step {
    Add(usize),
    Change(usize, bool),
    Delete(usize),
    Refresh,
    BadSignature(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..12_usize).prop_map(Step::Add),
        2 => (0..12_usize, any::<bool>()).prop_map(|(i, retype)| Step::Change(i, retype)),
        3 => (0..12_usize).prop_map(Step::Delete),
        1 => Just(Step::Refresh),
        1 => (0..12_usize).prop_map(Step::BadSignature),
    ]
}

/// What the protocol says of `steps` applied in order to `stored` (the model): the details of
/// the first bad item, with `stored` left as the items before it made it.
fn model(steps: &[Step], stored: &mut HashMap<usize, bool>, max: usize) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    for (i, step) in steps.iter().enumerate() {
        let bad = |field: &str| Some(format!("{i}.{field}"));
        match *step {
            Step::Add(k) => {
                if stored.len() >= max {
                    return bad("add");
                }
                if seen.contains(&k) || stored.contains_key(&k) {
                    return bad("add.signedProfile.profile.publicKey");
                }
                seen.insert(k);
                stored.insert(k, false);
            }
            Step::Change(k, retype) => {
                if seen.contains(&k) || !stored.contains_key(&k) {
                    return bad("change.signedProfile.profile.publicKey");
                }
                if retype {
                    return bad("change.signedProfile.profile.type");
                }
                seen.insert(k);
            }
            Step::Delete(k) => {
                if seen.contains(&k) || stored.remove(&k).is_none() {
                    return bad("delete.identityNetworkId");
                }
                seen.insert(k);
            }
            Step::Refresh => {}
            Step::BadSignature(_) => return bad("add.signedProfile.signature"),
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random live updates at and around a small limit, in random transaction sizes, give the
    /// model's answer and leave the model's state, item by item.
    #[test]
    fn live_updates_follow_the_model(
        requests in vec(vec(step(), 1..16), 1..6),
        max in 3..8_usize,
        budget in 1..6_usize,
        initially in vec(0..12_usize, 0..8),
    ) {
        let keys = keys(12);
        let mut memory = Memory::default();
        let mut stored: HashMap<usize, bool> = HashMap::new();
        for k in initially.into_iter().take(max) {
            memory.rows.insert(id_of(&keys[k]), "Profile Type A".into());
            stored.insert(k, false);
        }
        for steps in requests {
            let items = steps.iter().map(|step| match *step {
                Step::Add(k) => add(signed(&keys[k], "a")),
                Step::Change(k, retype) => {
                    let kind = if retype { "Other" } else { "Profile Type A" };
                    change(sign(&keys[k], &profile(&keys[k], "b", kind)))
                }
                Step::Delete(k) => delete(id_of(&keys[k]).to_vec()),
                Step::Refresh => refresh(),
                Step::BadSignature(k) => {
                    let mut bad = signed(&keys[k], "c");
                    bad.signature[5] ^= 1;
                    add(bad)
                }
            }).collect();
            let max_u32 = u32::try_from(max).unwrap_or(u32::MAX);
            let got = run(items, Phase::Live, &mut memory, max_u32, budget);
            let expected = model(&steps, &mut stored, max);
            prop_assert_eq!(got, expected);
            let mut ids: Vec<[u8; 32]> = stored.keys().map(|&k| id_of(&keys[k])).collect();
            let mut held: Vec<[u8; 32]> = memory.rows.keys().copied().collect();
            ids.sort_unstable();
            held.sort_unstable();
            prop_assert_eq!(ids, held);
        }
    }
}
