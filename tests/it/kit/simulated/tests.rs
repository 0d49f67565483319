//! Self-tests of the PS08 parties without a SUT: S against a client playing the SUT, and N's
//! follower loop fed through a SimLink.

use super::super::client::{Client, assert_status};
use super::super::customer::Hosted;
use super::super::items::{Kind, add_item, all, assert_exactly_once};
use super::super::neighbor::{
    Follower, LOOPBACK, finish_request, neighbor_role, start_request, stop_request, update_request,
};
use super::super::profiles::{Images, random_profiles};
use super::*;

/// A client that plays the SUT towards S: TLS to srNeighbor, StartConversation and
/// VerifyIdentity with the key S expects.
async fn sut_towards(simulated: &SimServer, sut: &Identity) -> Client {
    let mut client = Client::tls(simulated.neighbor_port).await;
    client.identity = sut.clone();
    client.start_conversation(1).await;
    assert_status(&client.verify_identity(2).await, Status::Ok);
    client
}

fn shared_profiles(count: usize) -> Vec<Hosted> {
    random_profiles(count, &Images::png())
        .into_iter()
        .map(|(identity, update)| Hosted::signed(identity, update))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn s_lists_its_roles_records_updates_and_rejects_when_armed() {
    let sut = Identity::random();
    let simulated = SimServer::start(Identity::random(), sut.network_id()).await;
    let neighbor = neighbor_role(simulated.primary_port).await;
    assert_eq!(neighbor.port, u32::from(simulated.neighbor_port));
    let mut client = sut_towards(&simulated, &sut).await;
    let items: Vec<_> = shared_profiles(2).iter().map(add_item).collect();
    let answer = client.conversation(3, Vec::new(), update_request(items.clone()));
    assert_status(&answer.await, Status::Ok);
    simulated.set_rejecting(true);
    let answer = client.conversation(4, Vec::new(), update_request(items));
    assert_status(&answer.await, Status::ErrorRejected);
    assert_status(
        &client.conversation(5, Vec::new(), stop_request()).await,
        Status::Ok,
    );
    let log = simulated.drain();
    let answers: Vec<Status> = log.updates.iter().map(|update| update.answer).collect();
    assert_eq!(answers, [Status::Ok, Status::ErrorRejected]);
    assert_eq!(log.updates[0].connection, log.updates[1].connection);
    assert_eq!(log.items().len(), 4);
    assert_eq!(log.stops.len(), 1);
    assert!(log.asked_roles());
    assert!(
        simulated
            .wait_until(T_READ, |log| log.updates.is_empty())
            .await
    );
}

#[tokio::test(start_paused = true)]
async fn s_hands_an_initialisation_to_the_script_and_the_follower_loop_reads_it() {
    let sut = Identity::random();
    let mut simulated = SimServer::start(Identity::random(), sut.network_id()).await;
    let mut follower = Follower::new(sut_towards(&simulated, &sut).await);
    let answer = follower.call(3, start_request(1, 2, &LOOPBACK)).await;
    assert_status(&answer, Status::Ok);
    let mut link = simulated.handover(T_READ).await;
    assert_eq!(link.start.sr_neighbor_port, 2);
    let profiles = shared_profiles(5);
    let expected = all(&[&profiles]);
    let items = profiles.iter().map(add_item).collect();
    let (answer, ()) = tokio::join!(
        link.call(update_request(items)),
        follower.until_arrived(&expected)
    );
    assert_status(&answer, Status::Ok);
    let (answer, ()) = tokio::join!(link.call(finish_request()), async {
        follower.until_finish().await;
        follower.answer_finish().await.expect("answer Finish");
    });
    assert_status(&answer, Status::Ok);
    assert_eq!(follower.batches, 1);
    assert_exactly_once(&follower.items, Kind::Add, &expected);
    link.close();
    assert_eq!(simulated.drain().starts.len(), 1);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "VerifyIdentity from the SUT failed S's checks")]
async fn s_fails_the_test_when_the_peer_is_not_the_sut() {
    let simulated = SimServer::start(Identity::random(), Identity::random().network_id()).await;
    let mut client = Client::tls(simulated.neighbor_port).await;
    client.start_conversation(1).await;
    let answer = client.verify_identity(2).await;
    assert_status(&answer, Status::ErrorInvalidSignature);
    simulated.drain();
}
