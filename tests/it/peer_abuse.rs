//! What a hostile follower can try (issue 25): start initialisations without end, or hold an
//! initialisation slot by answering each batch just in time. Over real sockets, on paused time.

use std::time::Duration;

use iop_profile_server::wire::Status;

use crate::kit::*;

#[tokio::test(start_paused = true)]
async fn issue25_a_slow_follower_gives_its_initialisation_slot_up_at_the_deadline() {
    let server = TestServer::start(&Options {
        limits: "neighborhood_init_parallelism = 1\n".into(),
        neighborhood: "follower_init_timeout_secs = 30\n".into(),
        ..Options::default()
    })
    .await;
    // More than one frame of thumbnails: the snapshot takes at least two batches.
    create_all(&server, random_profiles_with_images(250, &Images::jpeg())).await;
    let mut slow = Neighbor::random().initialise(&server, 1, 2).await;
    slow.answer_delay = Duration::from_secs(25);
    let reading = tokio::spawn(async move { slow.until_finish().await });
    let (_, busy) = Neighbor::random().start(&server, 1, 2).await;
    assert_status(&busy, Status::ErrorBusy);
    // Each batch is answered within the idle timeout, yet the whole initialisation has 30 s.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let (_, answer) = Neighbor::random().start(&server, 1, 2).await;
    assert_status(&answer, Status::Ok);
    reading.abort();
}

#[tokio::test(start_paused = true)]
async fn issue25_followers_from_one_address_start_only_so_often() {
    let server = TestServer::start(&Options {
        limits: "exempt_loopback = false\nfollower_starts_per_address_per_hour = 3\n".into(),
        ..Options::default()
    })
    .await;
    create_all(&server, random_profiles(3, &Images::png())).await;
    // A new key for every attempt, each dropped after its first batch.
    for _ in 0..3 {
        let (follower, answer) = Neighbor::random().start(&server, 1, 2).await;
        assert_status(&answer, Status::Ok);
        drop(follower);
    }
    let (_, refused) = Neighbor::random().start(&server, 1, 2).await;
    assert_status(&refused, Status::ErrorBusy);
    // An hour later the address may start again.
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let (_, answer) = Neighbor::random().start(&server, 1, 2).await;
    assert_status(&answer, Status::Ok);
}
