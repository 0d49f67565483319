//! Neighbourhood faults beyond PS08: peers that misbehave never stall a node or leave state
//! behind, and the node keeps serving its clients meanwhile.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;

use crate::kit::*;
use crate::ps08::options;

/// A Ping on a fresh connection to the primary port is answered within a second.
async fn assert_serving(server: &TestServer) {
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let answered = tokio::time::timeout(Duration::from_secs(1), client.ping(1, b"x")).await;
    assert!(answered.is_ok(), "a client was not served");
}

#[tokio::test(start_paused = true)]
async fn a_follower_that_stops_reading_is_dropped_and_may_start_again() {
    let server = TestServer::start(&options("")).await;
    create_all(&server, random_profiles_with_images(20, &Images::jpeg())).await;
    let neighbour = Neighbour::random();
    // Starts, then neither reads nor answers anything the server sends.
    let stalled = neighbour.initialise(&server, 1, 1).await;
    assert_serving(&server).await;
    // The server's idle and write timeouts end the connection; the follower goes with it.
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_serving(&server).await;
    let (again, answer) = neighbour.start(&server, 1, 1).await;
    assert_status(&answer, Status::Ok);
    drop((stalled, again));
}
