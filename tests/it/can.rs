//! CAN beyond PS09: the server's contact record (publish, republish on a new port, refresh
//! schedule, stock IPFS), faults of the CAN node, and every check of the client requests.
//! Timer rules run on tokio's paused clock.

use std::time::Duration;

use iop_profile_server::can::ipns_name;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::can::{CanIdentityData, CanProfileServerContact};
use prost::Message as _;

use crate::kit::*;

const HOUR: Duration = Duration::from_secs(3600);
/// How far [`step_clock`] moves the paused clock at a time.
const STEP: Duration = Duration::from_secs(60);

/// Moves the paused clock by `total` a minute at a time, giving the server a moment of real
/// time after each step (its database writes run on other threads), so what a timer starts
/// reaches the CAN stand-in near the timer's own time rather than at the end of one long jump.
async fn step_clock(total: Duration) {
    let mut moved = Duration::ZERO;
    while moved < total {
        tokio::time::advance(STEP).await;
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(1));
            tokio::task::yield_now().await;
        }
        moved += STEP;
    }
}

async fn server_with(can: &CanStandIn) -> TestServer {
    let options = Options {
        extra: can.config(),
        ..Options::default()
    };
    TestServer::start(&options).await
}

/// The server's public key, from StartConversation on the primary port.
pub(crate) async fn server_key(server: &TestServer) -> Vec<u8> {
    let mut client = Client::plain(server.port(Role::Primary)).await;
    client.start_conversation(1).await.public_key
}

/// The contact object a record path points to.
async fn contact_at(can: &CanStandIn, path: &str) -> CanProfileServerContact {
    let (status, bytes) = can.harness("cat", path).await;
    assert_eq!(status, 200);
    CanProfileServerContact::decode(bytes.as_slice()).expect("a contact object")
}

pub(crate) fn object_for(server: &TestServer) -> CanIdentityData {
    CanIdentityData {
        hosting_server_id: server.network_id().to_vec(),
        key_value_list: Vec::new(),
    }
}

async fn customer_with_object(server: &TestServer) -> (Client, String) {
    let mut client = new_customer(server).await;
    let data = object_for(server);
    let path = path_of(&stored_hash(store_data(&mut client, 3, Some(data)).await));
    (client, path)
}

#[tokio::test(start_paused = true)]
async fn contact_record_is_published_at_start_and_republished_for_a_new_port() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let mut server = server_with(&can).await;
    let key = server_key(&server).await;
    let peer = can_id(&key);
    let first = can.wait_for_record(&peer, 1).await;
    let contact = contact_at(&can, &first).await;
    assert_eq!(contact.public_key, key);
    assert_eq!(contact.ip_address, vec![127, 0, 0, 1]);
    assert_eq!(contact.primary_port, u32::from(server.port(Role::Primary)));

    // The test server binds ephemeral ports, so a restart moves the primary port.
    server.restart().await;
    let second = can.wait_for_record(&peer, 2).await;
    assert_ne!(second, first);
    let contact = contact_at(&can, &second).await;
    assert_eq!(contact.primary_port, u32::from(server.port(Role::Primary)));
    // The old object is unpinned after the new record went out, on the unpin queue's time.
    let old = first.trim_start_matches("/ipfs/").to_owned();
    can.wait_for("the old object unpinned", |s| !s.pins.contains(&old))
        .await;
    assert_no_pin_left(&can, &first).await;
    assert_eq!(can.state().records[&peer].0, 2);
}

#[tokio::test(start_paused = true)]
async fn record_is_refreshed_after_two_hours_then_every_seven() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    let peer = can_id(&server_key(&server).await);
    let path = can.wait_for_record(&peer, 1).await;
    step_clock(2 * HOUR).await;
    assert_eq!(can.wait_for_record(&peer, 2).await, path);
    step_clock(7 * HOUR).await;
    assert_eq!(can.wait_for_record(&peer, 3).await, path);
    let at = can.times_of("name/upload");
    assert_eq!(at.len(), 3, "one publication and two refreshes");
    let (first, second) = (at[1] - at[0], at[2] - at[1]);
    // A call reaches the stand-in at or after the time its timer fired.
    assert!(first >= 2 * HOUR, "first refresh after {first:?}");
    assert!(
        second >= 7 * HOUR,
        "second refresh {second:?} after the first"
    );
    assert_eq!(can.calls_of("add"), 1, "the object is reused");
}

#[tokio::test(start_paused = true)]
async fn can_down_at_start_delays_nothing_and_the_record_follows() {
    let mut can = CanStandIn::start(CanFlavour::Fork).await;
    can.stop().await;
    let server = server_with(&can).await;
    let mut customer = new_customer(&server).await;
    assert_status(&customer.ping(5, b"up").await, Status::Ok);
    let answer = store_data(&mut customer, 6, Some(object_for(&server))).await;
    assert_status(&answer, Status::ErrorRejected);
    assert!(answer.details.contains("unreachable"), "{}", answer.details);
    let down = server.snapshot().await;
    assert_eq!(down["can"], "down");
    assert!(down["can_published_unix_ms"].is_null(), "{down}");
    can.restart().await;
    let peer = can_id(&server_key(&server).await);
    can.wait_for_record(&peer, 1).await;
    // The operator sees when the link came up and when the record went out.
    for _ in 0..100 {
        let up = server.snapshot().await;
        if up["can"] == "ok" && up["can_published_unix_ms"].is_i64() {
            assert!(up["can_changed_unix_ms"].as_i64() <= up["can_published_unix_ms"].as_i64());
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the snapshot never showed the publication: {}",
        server.snapshot().await
    );
}

#[tokio::test(start_paused = true)]
async fn errors_hangs_oversized_and_garbage_replies_are_retried_while_clients_are_served() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    can.fail_next("add", CanFault::Error("repo locked".into()));
    can.fail_next("add", CanFault::Hang);
    can.fail_next("add", CanFault::Oversized);
    can.fail_next("add", CanFault::Garbage);
    can.fail_next("name/upload", CanFault::Error("routing: not found".into()));
    let server = server_with(&can).await;
    let mut customer = new_customer(&server).await;
    assert_status(&customer.ping(5, b"still serving").await, Status::Ok);
    let peer = can_id(&server_key(&server).await);
    // A failed publication keeps its number: numbers advance only with publications.
    can.wait_for_record(&peer, 1).await;
    assert_eq!(can.calls_of("add"), 5);
    assert_eq!(can.calls_of("name/upload"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_node_with_a_newer_record_moves_the_sequence_past_it() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    can.fail_next(
        "name/upload",
        CanFault::Error("There is already a newer IPNS record with sequence number: 40".into()),
    );
    let server = server_with(&can).await;
    let peer = can_id(&server_key(&server).await);
    can.wait_for_record(&peer, 41).await;
    assert_eq!(can.state().records[&peer].0, 41);
}

#[tokio::test(start_paused = true)]
async fn a_stock_ipfs_node_gets_a_v1_v2_record_through_routing_put() {
    let can = CanStandIn::start(CanFlavour::Stock).await;
    let server = server_with(&can).await;
    let name = ipns_name(&server_key(&server).await);
    // The stand-in stores only records that pass the V2 verification of today's nodes.
    let state = can
        .wait_for("routing/put", |s| s.v2_records.contains_key(&name))
        .await;
    assert!(state.v2_records[&name].len() < 10 * 1024);
    assert_eq!(can.calls_of("name/upload"), 1, "404 is remembered");
    step_clock(2 * HOUR).await;
    can.wait_for("refresh", |s| {
        s.calls
            .iter()
            .filter(|c| c.command == "routing/put")
            .count()
            >= 2
    })
    .await;
    let commands: Vec<String> = can
        .state()
        .calls
        .iter()
        .map(|c| c.command.clone())
        .collect();
    assert_eq!(can.calls_of("name/upload"), 1, "{commands:?}");

    let (mut client, path) = customer_with_object(&server).await;
    let record = signed_record(&client.identity, &path, &month_ahead(), 1);
    let answer = publish_record(&mut client, 4, Some(record)).await;
    assert_status(&answer, Status::ErrorRejected);
    assert!(
        answer.details.contains("V2 signature"),
        "{}",
        answer.details
    );
    // With a V2 signature it goes out through routing/put and resolves.
    publish_v1_v2_and_resolve(&can, &mut client, &path).await;
}

/// The client's V1+V2 record for `path`, published through the server, resolves on the node.
async fn publish_v1_v2_and_resolve(can: &CanStandIn, client: &mut Client, path: &str) {
    let record = signed_record_v1_v2(&client.identity, path, &month_ahead(), 1);
    assert_status(&publish_record(client, 8, Some(record)).await, Status::Ok);
    let key = client.identity.public_key();
    assert_eq!(wait_until_resolved(can, &key).await, path);
}

#[tokio::test]
async fn publish_checks_run_in_the_spec_order() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    let mut client = new_customer(&server).await;
    let identity = client.identity.clone();
    let invalid = |answer: &iop_profile_server::wire::ps::Response, details: &str| {
        assert_status(answer, Status::ErrorInvalidValue);
        assert_eq!(answer.details, details);
    };
    invalid(&publish_record(&mut client, 3, None).await, "record");
    let early = signed_record(
        &identity,
        "/ipfs/QmQ3gvw2XujomMbUnaZEypb3RRzQxa1NjTKgx1sghzP8zz",
        &month_ahead(),
        1,
    );
    assert_status(
        &publish_record(&mut client, 4, Some(early.clone())).await,
        Status::ErrorNotFound,
    );
    let path = path_of(&stored_hash(
        store_data(&mut client, 5, Some(object_for(&server))).await,
    ));
    invalid(
        &publish_record(&mut client, 6, Some(early)).await,
        "record.value",
    );
    for validity in [
        "next month",
        "2030-02-30T00:00:00.000Z",
        "2099-01-01T00:00:00.000Z",
    ] {
        let record = signed_record(&identity, &path, validity, 1);
        invalid(
            &publish_record(&mut client, 7, Some(record)).await,
            "record.validity",
        );
    }
    let mut forged = signed_record(&identity, &path, &month_ahead(), 1);
    forged.signature = Identity::random().sign(b"something else");
    let answer = publish_record(&mut client, 8, Some(forged)).await;
    assert_status(&answer, Status::ErrorRejected);
    assert!(
        answer.details.contains("not signed by"),
        "{}",
        answer.details
    );
    let record = signed_record(&identity, &path, &month_ahead(), 1);
    assert_status(
        &publish_record(&mut client, 9, Some(record.clone())).await,
        Status::Ok,
    );
    let answer = publish_record(&mut client, 10, Some(record)).await;
    assert_status(&answer, Status::ErrorRejected);
    assert!(
        answer.details.contains("newer IPNS record"),
        "{}",
        answer.details
    );
}

#[tokio::test]
async fn can_errors_reach_the_client_and_lose_nothing() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    let (mut client, first) = customer_with_object(&server).await;
    can.fail_next("pin/rm", CanFault::Error("pin store busy".into()));
    let answer = store_data(&mut client, 4, Some(object_for(&server))).await;
    assert_status(&answer, Status::ErrorRejected);
    assert_eq!(answer.details, "pin store busy");
    // The old object is still the client's: publishing it works.
    let record = signed_record(&client.identity, &first, &month_ahead(), 1);
    assert_status(
        &publish_record(&mut client, 5, Some(record)).await,
        Status::Ok,
    );

    can.fail_next("add", CanFault::Error("disk full".into()));
    let mut other = object_for(&server);
    other
        .key_value_list
        .push(iop_profile_server::wire::can::CanKeyValue {
            key: "k".into(),
            value: None,
        });
    let answer = store_data(&mut client, 6, Some(other.clone())).await;
    assert_status(&answer, Status::ErrorRejected);
    assert_eq!(answer.details, "disk full");
    // The old object was unpinned before the add failed: the client has none now.
    assert_no_pin_left(&can, &first).await;
    let record = signed_record(&client.identity, &first, &month_ahead(), 2);
    assert_status(
        &publish_record(&mut client, 7, Some(record)).await,
        Status::ErrorNotFound,
    );
    // Unpinning an object CAN no longer pins ("not pinned") counts as done.
    let second = path_of(&stored_hash(store_data(&mut client, 8, Some(other)).await));
    assert_eq!(can.harness("pin/rm", &second).await.0, 200);
    assert_eq!(
        stored_hash(store_data(&mut client, 9, None).await),
        Vec::<u8>::new()
    );
}

#[tokio::test(start_paused = true)]
async fn ending_the_agreement_unpins_the_object_even_after_can_was_down() {
    let mut can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    let (mut client, path) = customer_with_object(&server).await;
    can.stop().await;
    let cancel =
        iop_profile_server::wire::ps::conversation_request::RequestType::CancelHostingAgreement(
            iop_profile_server::wire::ps::CancelHostingAgreementRequest::default(),
        );
    assert_status(
        &client.conversation(4, Vec::new(), cancel).await,
        Status::Ok,
    );
    can.restart().await;
    let hash = path.trim_start_matches("/ipfs/").to_owned();
    can.wait_for("unpin", |s| !s.pins.contains(&hash)).await;
}

#[tokio::test]
async fn without_can_the_requests_are_unsupported() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = new_customer(&server).await;
    let answer = store_data(&mut client, 3, Some(object_for(&server))).await;
    assert_status(&answer, Status::ErrorUnsupported);
    assert_eq!(answer.details, "no CAN node is configured");
}

#[test]
fn add_hashes_match_appendix_b1() {
    let object = hex::decode(
        "0a20414141414141414141414141414141414141414141414141414141414141414112047f00000118db7c",
    )
    .expect("hex");
    assert_eq!(
        path_of(&cid_v0(&object)),
        "/ipfs/QmQ3gvw2XujomMbUnaZEypb3RRzQxa1NjTKgx1sghzP8zz"
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_line_counts_clients_and_tells_whether_can_works() {
    let mut can = CanStandIn::start(CanFlavour::Fork).await;
    can.stop().await;
    let server = server_with(&can).await;
    let _customer = new_customer(&server).await;
    server
        .wait_for_status(": 1 hosted, 1 online, 0 neighbours, no LOC, CAN down")
        .await;
    can.restart().await;
    server
        .wait_for_status(": 1 hosted, 1 online, 0 neighbours, no LOC, CAN ok")
        .await;
}

/// Issue 24 A and B: js-ipfs refuses a multipart content type on `pin/rm` (415) and words "not
/// pinned" its own way; ending an agreement unpins, and an object that is no longer pinned
/// counts as unpinned.
#[tokio::test(start_paused = true)]
async fn a_js_ipfs_node_unpins_and_its_not_pinned_counts_as_done() {
    let can = CanStandIn::start(CanFlavour::JsIpfs).await;
    let server = server_with(&can).await;
    let (mut first, path) = customer_with_object(&server).await;
    let hash = path.trim_start_matches("/ipfs/").to_owned();
    cancel(&mut first).await;
    can.wait_for("unpin", |s| !s.pins.contains(&hash)).await;

    let (mut second, path) = customer_with_object(&server).await;
    let (status, _) = can.harness("pin/rm", &path).await;
    assert_eq!(status, 200, "the harness unpins it first");
    // Deleting the object: its unpin answers "Failed to remove pin: … is not pinned".
    assert_status(&store_data(&mut second, 4, None).await, Status::Ok);
    cancel(&mut second).await;
    let snapshot = server.snapshot().await;
    assert_eq!(snapshot["can"], "ok", "{snapshot}");
    assert_eq!(
        snapshot["can_last_error"],
        serde_json::Value::Null,
        "{snapshot}"
    );
}

/// Issue 24 C: js-ipfs has neither `name/upload` nor `routing/put`; the record goes out with
/// `dht/put`, is checked by resolving it, and the command is remembered for the refreshes.
#[tokio::test(start_paused = true)]
async fn a_js_ipfs_node_gets_the_contact_record_through_dht_put() {
    let can = CanStandIn::start(CanFlavour::JsIpfs).await;
    let server = server_with(&can).await;
    let key = server_key(&server).await;
    let name = ipns_name(&key);
    can.wait_for("dht/put", |s| s.v2_records.contains_key(&name))
        .await;
    let resolved = wait_until_resolved(&can, &key).await;
    let contact = contact_at(&can, &resolved).await;
    assert_eq!(contact.primary_port, u32::from(server.port(Role::Primary)));
    server.wait_for_status("CAN ok").await;
    step_clock(2 * HOUR).await;
    can.wait_for("refresh", |s| {
        s.calls.iter().filter(|c| c.command == "dht/put").count() >= 2
    })
    .await;
    assert_eq!(can.calls_of("name/upload"), 1, "404 is remembered");
    assert_eq!(can.calls_of("routing/put"), 1, "404 is remembered");

    // A client's V1+V2 record takes the same way.
    let (mut client, path) = customer_with_object(&server).await;
    publish_v1_v2_and_resolve(&can, &mut client, &path).await;
    assert_eq!(can.calls_of("name/upload"), 1, "still remembered");
}

/// What the node resolves the server's name to, once it does (by its peer id: js-ipfs takes a
/// `k…` name for a DNS name).
async fn wait_until_resolved(can: &CanStandIn, key: &[u8]) -> String {
    let arg = format!("/ipns/{}", iop_profile_server::can::peer_id(key));
    for _ in 0..600 {
        let (status, body) = can.harness("name/resolve", &arg).await;
        if status == 200 {
            let reply: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            return reply["Path"].as_str().expect("a path").to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server's name never resolved");
}

/// Issue 24 D: while the node is down, status says so with the failed call, although nothing
/// but the health check calls it; back up, it answers "ok" and the record is published again.
#[tokio::test(start_paused = true)]
async fn status_shows_the_can_node_down_with_its_error_and_the_record_returns_with_it() {
    let mut can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    let peer = can_id(&server_key(&server).await);
    can.wait_for_record(&peer, 1).await;
    server.wait_for_status("CAN ok").await;
    can.stop().await;
    step_clock(Duration::from_secs(61)).await;
    server.wait_for_status("CAN down").await;
    let snapshot = server.snapshot().await;
    assert_eq!(snapshot["can"], "down");
    let error = snapshot["can_last_error"].as_str().expect("an error");
    assert!(error.starts_with("version: "), "{error}");
    can.restart().await;
    step_clock(Duration::from_secs(61)).await;
    server.wait_for_status("CAN ok").await;
    can.wait_for_record(&peer, 2).await;
}

async fn cancel(client: &mut Client) {
    let cancel =
        iop_profile_server::wire::ps::conversation_request::RequestType::CancelHostingAgreement(
            iop_profile_server::wire::ps::CancelHostingAgreementRequest::default(),
        );
    assert_status(
        &client.conversation(9, Vec::new(), cancel).await,
        Status::Ok,
    );
}

#[tokio::test(start_paused = true)]
async fn issue25_a_can_error_reaches_clients_and_logs_shortened_and_printable() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let server = server_with(&can).await;
    can.wait_for_record(&can_id(&server_key(&server).await), 1)
        .await;
    let mut client = new_customer(&server).await;
    let forged = format!(
        "no room\n2026-12-07T00:00:00.000000Z ERROR forged: \u{1b}[31mred{}",
        "x".repeat(60_000)
    );
    can.fail_next("add", CanFault::Error(forged));
    let answer = store_data(&mut client, 3, Some(object_for(&server))).await;
    assert_status(&answer, Status::ErrorRejected);
    let details = &answer.details;
    assert!(details.contains("no room"), "{details}");
    assert!(details.chars().count() <= 201, "{} chars", details.len());
    assert!(!details.chars().any(char::is_control), "{details:?}");
}
