//! Neighbourhood sharing under races (issue 22), over real sockets as in PS08: a follower's copy
//! stays consistent and signed when profiles change and go while updates are queued, and a
//! neighbour's updates are counted against the 20,000-profile limit item by item, in order,
//! whatever its connections interleave.

use std::collections::BTreeMap;

use iop_profile_server::crypto::{sha256, verify};
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, shared_profile_update_item::ActionType};
use tokio::time::sleep;

use crate::kit::*;
use crate::ps08::{Neighborhood, W_UPD};
use crate::ps08_loc::{Setup, finish, send_batch, signed_all};

/// The protocol's limit on profiles one neighbour shares (spec §4.19).
const CAP: usize = 20_000;

/// A follower's copy, as the original server keeps it: every item must verify and fit it.
#[derive(Default)]
struct Copy {
    profiles: BTreeMap<Vec<u8>, ps::ProfileInformation>,
}

impl Copy {
    #[track_caller]
    fn apply(&mut self, items: &[ps::SharedProfileUpdateItem]) {
        for item in items {
            match item.action_type.as_ref().expect("item has an action") {
                ActionType::Add(add) => {
                    let (id, profile) = verified(add.signed_profile.as_ref());
                    let name = profile.name.clone();
                    let old = self.profiles.insert(id, profile);
                    assert!(old.is_none(), "add of present profile {name}");
                }
                ActionType::Change(change) => {
                    let (id, profile) = verified(change.signed_profile.as_ref());
                    let name = profile.name.clone();
                    let old = self.profiles.insert(id, profile);
                    assert!(old.is_some(), "change of absent profile {name}");
                }
                ActionType::Delete(delete) => {
                    let gone = self.profiles.remove(&delete.identity_network_id);
                    assert!(gone.is_some(), "delete of an absent profile");
                }
                ActionType::Refresh(_) => {}
            }
        }
    }
}

/// The identity and profile of a signed item, whose signature must verify over its bytes.
#[track_caller]
fn verified(signed: Option<&ps::SignedProfileInformation>) -> (Vec<u8>, ps::ProfileInformation) {
    let signed = signed.expect("a signed profile");
    let profile = signed.decode_profile().expect("the profile decodes");
    assert!(
        verify(&profile.public_key, &signed.profile, &signed.signature),
        "the signature of {:?} (type {:?}) does not verify over its bytes",
        profile.name,
        profile.r#type
    );
    (sha256(&profile.public_key).to_vec(), profile)
}

#[tokio::test(start_paused = true)]
async fn issue22_a_profile_renamed_and_cancelled_while_its_add_is_queued_never_reaches_a_follower_unsigned()
 {
    let mut set = Neighborhood::new(5, Images::jpeg()).await;
    // The follower's snapshot goes out; until it answers, changes wait in its queue.
    let initialising = set.initialise().await;
    let mut more = set.create(10).await;
    let mut renamed = more[3].update();
    renamed.profile.name += " renamed";
    more[3].change(&set.server, renamed).await;
    more[3].cancel(&set.server).await;
    set.hosted.extend(more);

    let mut copy = Copy::default();
    copy.apply(&initialising.complete().await);
    sleep(W_UPD).await;
    copy.apply(&set.simulated.drain().items());

    let hosted: BTreeMap<Vec<u8>, ps::ProfileInformation> = live(&[&set.hosted])
        .into_iter()
        .map(|h| (h.network_id(), h.profile.clone()))
        .collect();
    assert_eq!(
        copy.profiles, hosted,
        "the follower's copy is the hosted set"
    );
}

/// The SUT with an initialised neighbour S sharing `count` profiles; S's own key, for its
/// connections as a neighbour, and the profiles.
async fn neighbor_sharing(count: usize) -> (Setup, Neighbor, Vec<Hosted>) {
    neighbor_sharing_with(count, "").await
}

/// [`neighbor_sharing`] with `extra` configuration tables for the SUT.
async fn neighbor_sharing_with(count: usize, extra: &str) -> (Setup, Neighbor, Vec<Hosted>) {
    let mut setup = Setup::start_with(extra).await;
    let mut link = setup.announce().await;
    let held = signed_all(random_profiles(count, &Images::png()));
    for batch in held.chunks(250) {
        send_batch(&mut link, batch.iter().map(add_item).collect()).await;
    }
    finish(&mut link).await;
    link.close();
    let neighbor = Neighbor {
        identity: setup.identity.clone(),
    };
    (setup, neighbor, held)
}

#[tokio::test(start_paused = true)]
async fn issue22_simultaneous_updates_from_one_neighbor_never_pass_the_cap() {
    let (setup, neighbor, _) = neighbor_sharing(CAP - 1_000).await;
    // Eight connections offer 250 new profiles each at once; only 1,000 fit.
    let offered = signed_all(random_profiles(8 * 250, &Images::png()));
    let mut sending = Vec::new();
    for batch in offered.chunks(250) {
        let mut client = neighbor.verify(&setup.server).await;
        let items: Vec<_> = batch.iter().map(add_item).collect();
        sending.push(tokio::spawn(async move {
            client
                .conversation(3, Vec::new(), update_request(items))
                .await
        }));
    }
    let mut applied = 0;
    for answer in sending {
        let answer = answer.await.expect("sender");
        if answer.status == Status::Ok as i32 {
            applied += 250;
        } else {
            let details = answer.details.strip_suffix(".add").expect("an add refused");
            applied += details.parse::<usize>().expect("an item index");
        }
    }
    assert_eq!(applied, 1_000, "exactly the free room was filled");
}

#[tokio::test(start_paused = true)]
async fn issue22_deletes_earlier_in_an_update_make_room_for_later_adds_at_the_cap() {
    let (setup, neighbor, held) = neighbor_sharing(CAP).await;
    // 40 deletes, then 40 changes, then 40 adds in one request all apply, in transactions of
    // 100 items, because the deletes come first (spec §5.7: items apply in order).
    let mut client = neighbor.verify(&setup.server).await;
    let mut items: Vec<_> = held[..40]
        .iter()
        .map(|h| ps::SharedProfileUpdateItem {
            action_type: Some(ActionType::Delete(ps::SharedProfileDeleteItem {
                identity_network_id: h.network_id(),
            })),
        })
        .collect();
    for h in &held[40..80] {
        let mut update = h.update();
        update.profile.name += " changed";
        let changed = Hosted::signed(h.identity.clone(), update);
        items.push(ps::SharedProfileUpdateItem {
            action_type: Some(ActionType::Change(ps::SharedProfileChangeItem {
                signed_profile: Some(signed_profile(&changed)),
                thumbnail_image: changed.thumbnail.clone(),
            })),
        });
    }
    let new = signed_all(random_profiles(40, &Images::png()));
    items.extend(new.iter().map(add_item));
    let answer = client
        .conversation(3, Vec::new(), update_request(items))
        .await;
    assert_status(&answer, Status::Ok);
    let one_more = signed_all(random_profiles(1, &Images::png()));
    let answer = client
        .conversation(4, Vec::new(), update_request(vec![add_item(&one_more[0])]))
        .await;
    assert_invalid(&answer, "0.add");
}

/// The server's count of durable write batches, from its metrics endpoint.
async fn write_batches(metrics_port: u16) -> u64 {
    let body = crate::metrics::get(metrics_port, "/metrics").await.2;
    body.lines()
        .find_map(|line| line.strip_prefix("iop_store_write_batches_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("iop_store_write_batches_total")
}

#[tokio::test]
async fn issue25_a_flood_of_refresh_items_costs_no_commit_per_message() {
    let port = free_port();
    let metrics = format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n");
    let (setup, neighbor, _) = neighbor_sharing_with(10, &metrics).await;
    let mut client = neighbor.verify(&setup.server).await;
    let refresh = ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Refresh(ps::SharedProfileRefreshAllItem {})),
    };
    let before = write_batches(port).await;
    for id in 0..20 {
        let items = vec![refresh.clone(); 5_000];
        let answer = client
            .conversation(id, Vec::new(), update_request(items))
            .await;
        assert_status(&answer, Status::Ok);
    }
    let written = write_batches(port).await - before;
    // The neighbour refreshed at Finish, a moment ago: nothing durable changes.
    assert!(
        written <= 1,
        "{written} write batches for 20 refresh-only updates"
    );
}
