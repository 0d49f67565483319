//! Neighbourhood faults beyond PS08: peers that misbehave never stall a node or leave state
//! behind, and the node keeps serving its clients meanwhile.

use std::collections::BTreeSet;
use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::{Status, loc};

use crate::kit::loc::announcement;
use crate::kit::*;
use crate::ps06::{base, search};
use crate::ps08::options;
use crate::ps08_loc::{Setup, finish, search_all, send_batch, signed_all};

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
    let neighbor = Neighbor::random();
    // Starts, then neither reads nor answers anything the server sends.
    let stalled = neighbor.initialise(&server, 1, 1).await;
    assert_serving(&server).await;
    // The server's idle and write timeouts end the connection; the follower goes with it.
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_serving(&server).await;
    let (again, answer) = neighbor.start(&server, 1, 1).await;
    assert_status(&answer, Status::Ok);
    drop((stalled, again));
}

/// A server with its own LOC stand-in, as on a real node.
struct Node {
    server: TestServer,
    loc: LocStandIn,
}

impl Node {
    async fn start() -> Node {
        Node::start_with(&options("")).await
    }

    /// A node with `options` and a LOC stand-in of its own.
    async fn start_with(options: &Options) -> Node {
        let loc = LocStandIn::start(Generation::V2).await;
        let options = Options {
            extra: loc.config("string"),
            ..options.clone()
        };
        let server = TestServer::start(&options).await;
        loc.wait_attached(1).await;
        Node { server, loc }
    }

    /// What LOC announces about this node's profile server.
    fn announcement(&self) -> loc::NodeInfo {
        announcement(&self.server.network_id(), self.server.port(Role::Primary))
    }

    /// The public keys of the profiles `server` shares with this node, as its search finds them.
    async fn shared_by(&self, server: &Node) -> BTreeSet<Vec<u8>> {
        let mut client = Client::tls(self.server.port(Role::ClNonCustomer)).await;
        let found = search(&mut client, 1, base(1_000)).await;
        let from = server.server.network_id().to_vec();
        found
            .profiles
            .iter()
            .filter(|p| !p.is_hosted && p.hosting_server_network_id == from)
            .filter_map(|p| p.signed_profile.as_ref()?.decode_profile())
            .map(|p| p.public_key)
            .collect()
    }

    /// Waits (on the paused clock) until this node's search shows exactly `expected` from `server`.
    async fn until_shared(&self, server: &Node, expected: &BTreeSet<Vec<u8>>) {
        for _ in 0..60 {
            if self.shared_by(server).await == *expected {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(self.shared_by(server).await, *expected, "shared profiles");
    }
}

fn keys(hosted: &[Hosted]) -> BTreeSet<Vec<u8>> {
    hosted
        .iter()
        .filter(|h| h.live)
        .map(|h| h.profile.public_key.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn two_servers_follow_each_other_through_loc() {
    let (a, b) = (Node::start().await, Node::start().await);
    let on_a = create_all(&a.server, random_profiles_with_images(2, &Images::jpeg())).await;
    let mut on_b = create_all(&b.server, random_profiles_with_images(3, &Images::jpeg())).await;
    a.loc.add_neighbor(b.announcement()).await;
    b.loc.add_neighbor(a.announcement()).await;
    // Each initialises from the other and serves the other's profiles in its searches.
    a.until_shared(&b, &keys(&on_b)).await;
    b.until_shared(&a, &keys(&on_a)).await;
    // Later changes on B reach A as live updates: a new profile, then a cancelled one.
    on_b.extend(create_all(&b.server, random_profiles_with_images(1, &Images::jpeg())).await);
    a.until_shared(&b, &keys(&on_b)).await;
    on_b[0].cancel(&b.server).await;
    a.until_shared(&b, &keys(&on_b)).await;
    // LOC removes B: A forgets B's profiles.
    a.loc.remove_neighbor(&b.server.network_id()).await;
    a.until_shared(&b, &BTreeSet::new()).await;
}

#[tokio::test(start_paused = true)]
async fn a_neighbor_that_sends_garbage_is_retried_while_clients_are_served() {
    let node = Node::start().await;
    // The announced primary port answers every connection with bytes that are no frame.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = garbage.local_addr().expect("address").port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = garbage.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = socket.set_nodelay(true);
            let _ =
                tokio::io::AsyncWriteExt::write_all(&mut socket, &[0x0D, 0xFF, 0xFF, 0xFF, 0x7F])
                    .await;
        }
    });
    let mut announcement = node.announcement();
    announcement.node_id = vec![9; 32];
    announcement.services[0].service_data = vec![9; 32];
    announcement.services[0].port = u32::from(port);
    node.loc.add_neighbor(announcement).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_serving(&node.server).await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    // action_retry_secs later it tries again, and the node still serves.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_serving(&node.server).await;
}

#[tokio::test(start_paused = true)]
async fn a_neighbor_that_disconnects_mid_initialisation_leaves_nothing_and_is_tried_again() {
    let mut setup = Setup::start().await;
    let profiles = signed_all(standard_set(&Images::jpeg()));
    let items: Vec<_> = profiles.iter().map(add_item).collect();
    let mut link = setup.announce().await;
    send_batch(&mut link, items[..3].to_vec()).await;
    link.close();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_serving(&setup.server).await;
    let mut client = Client::tls(setup.server.port(Role::ClNonCustomer)).await;
    let found = search(&mut client, 1, search_all(false, 100)).await;
    assert_eq!(
        found.total_record_count, 0,
        "nothing of the broken initialisation is searchable"
    );
    // After action_retry_secs the server starts afresh: the first three are new again.
    let mut again = setup.simulated.handover(Duration::from_secs(30)).await;
    send_batch(&mut again, items).await;
    finish(&mut again).await;
    let found = search(&mut client, 2, search_all(false, 100)).await;
    assert_eq!(found.total_record_count, 7);
}

/// Issue 23: LOC 2.0 renews a peer without its services, so after a reconnect its list may show
/// a neighbour without its Profile service: the neighbour stays, with its profiles.
#[tokio::test(start_paused = true)]
async fn issue23_a_neighbor_listed_without_its_profile_service_after_a_loc_reconnect_stays() {
    let (a, b) = (Node::start().await, Node::start().await);
    let on_b = create_all(&b.server, random_profiles_with_images(2, &Images::jpeg())).await;
    a.loc.add_neighbor(b.announcement()).await;
    a.until_shared(&b, &keys(&on_b)).await;
    let mut bare = b.announcement();
    bare.services.clear();
    a.loc.update_neighbor(bare).await;
    a.loc.kill_connections();
    a.loc.wait_attached(2).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(a.shared_by(&b).await, keys(&on_b), "B's profiles stay");
    let snapshot = a.server.snapshot().await;
    assert_eq!(snapshot["neighbours"]["initialized"], 1, "{snapshot}");
}

/// Issue 23: LOC 2.0 notifies only the first session it ever accepted; a server on a later
/// session learns a new neighbour by reading the list again, within a minute by default.
#[tokio::test(start_paused = true)]
async fn issue23_a_server_on_a_later_loc_session_learns_a_new_neighbor_within_a_minute() {
    let (a, b) = (Node::start().await, Node::start().await);
    a.loc.notify_first_session_only();
    a.loc.kill_connections();
    a.loc.wait_attached(2).await;
    let on_b = create_all(&b.server, random_profiles_with_images(2, &Images::jpeg())).await;
    // The push goes to the first session only, which is gone.
    a.loc.add_neighbor(b.announcement()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    a.until_shared(&b, &keys(&on_b)).await;
}

/// Issue 23: with the default `action_retry_secs` (600 s), an update queued for a follower that
/// was down reaches it seconds after it is back, not ten minutes later; meanwhile status shows
/// it as not answering.
#[tokio::test(start_paused = true)]
async fn issue23_an_update_for_a_follower_that_was_down_arrives_seconds_after_it_is_back() {
    let defaults = Options {
        neighborhood: "action_interval_secs = 1\ninit_delay_max_secs = 0".into(),
        ..Options::default()
    };
    let a = Node::start_with(&defaults).await;
    let mut b = Node::start_with(&defaults).await;
    let mut on_a = create_all(&a.server, random_profiles_with_images(1, &Images::jpeg())).await;
    b.loc.add_neighbor(a.announcement()).await;
    b.until_shared(&a, &keys(&on_a)).await;
    b.server.stop().await;
    on_a.extend(create_all(&a.server, random_profiles_with_images(1, &Images::jpeg())).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let snapshot = a.server.snapshot().await;
    assert_eq!(snapshot["followers"]["not_answering"], 1, "{snapshot}");
    b.server.restart_on_same_ports().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(b.shared_by(&a).await, keys(&on_a), "the update arrived");
    let snapshot = a.server.snapshot().await;
    assert_eq!(snapshot["followers"]["not_answering"], 0, "{snapshot}");
}

/// Issue 23: LOC 2.0 tells a node of its neighbours only once it has learnt their services, so
/// often only one side of a pair learns of the other; the other side takes the server that
/// starts following it as a neighbour too.
#[tokio::test(start_paused = true)]
async fn issue23_a_server_that_starts_following_us_becomes_our_neighbor() {
    let (a, b) = (Node::start().await, Node::start().await);
    let on_a = create_all(&a.server, random_profiles_with_images(1, &Images::jpeg())).await;
    let on_b = create_all(&b.server, random_profiles_with_images(2, &Images::jpeg())).await;
    // Only B's LOC knows A.
    b.loc.add_neighbor(a.announcement()).await;
    b.until_shared(&a, &keys(&on_a)).await;
    a.until_shared(&b, &keys(&on_b)).await;
}
