//! The server's LOC client against the in-process LOC stand-in (loc-can.md §1, spec §7):
//! registration in both generations, the subscription and its acks, reconnects after LOC goes
//! away or misbehaves while client traffic keeps flowing, and deregistration on a clean stop.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use iop_profile_server::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use iop_profile_server::wire::loc::message::MessageType;
use iop_profile_server::wire::loc::{self, Status as LocStatus};
use iop_profile_server::wire::loc_service::ServiceType;
use iop_profile_server::wire::{Status, frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::sleep;

use crate::kit::*;

fn options(loc: &LocStandIn, service_type: &str) -> Options {
    Options {
        extra: loc.config(service_type),
        ..Options::default()
    }
}

async fn attached_server(loc: &LocStandIn, service_type: &str) -> TestServer {
    let server = TestServer::start(&options(loc, service_type)).await;
    loc.wait_attached(1).await;
    server
}

/// A Ping on the primary port is answered.
async fn assert_ping(server: &TestServer) {
    let mut client = Client::plain(server.port(Role::Primary)).await;
    assert_status(&client.ping(1, b"loc").await, Status::Ok);
}

/// A neighbour node running a profile server registered with `r#type`.
fn neighbor(name: &str, r#type: ServiceType, id_byte: u8) -> loc::NodeInfo {
    let service = profile_service(r#type, 16987, &[id_byte; 32]);
    loc_node(name, 16980, SEED_LOCATION, vec![service])
}

fn neighbourhood_updated() -> LocalResponse {
    LocalResponse::NeighbourhoodUpdated(loc::NeighbourhoodChangedNotificationResponse {})
}

#[tokio::test]
async fn registers_subscribes_and_deregisters_in_both_generations() {
    for (generation, service_type, expected) in [
        (Generation::V2, "string", ServiceType::profile_name()),
        (Generation::V1, "enum", ServiceType::profile_code()),
    ] {
        let loc = LocStandIn::start(generation).await;
        let mut server = attached_server(&loc, service_type).await;
        let seen = loc.seen();
        let ours = profile_service(
            expected.clone(),
            server.port(Role::Primary).into(),
            &server.network_id(),
        );
        assert_eq!(seen.registrations, vec![ours]);
        assert_eq!((seen.connections, seen.subscriptions), (1, 1));
        server.stop().await;
        let seen = loc
            .wait_for("deregistration", |seen| !seen.deregistrations.is_empty())
            .await;
        assert_eq!(seen.deregistrations, vec![expected]);
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    }
}

#[tokio::test]
async fn every_push_is_acked_with_its_id_whatever_the_service_encoding() {
    let loc = LocStandIn::start(Generation::V2).await;
    loc.add_neighbor(neighbor("Listed", ServiceType::profile_code(), 1))
        .await;
    let _server = attached_server(&loc, "string").await;
    loc.add_neighbor(neighbor("V1", ServiceType::profile_code(), 2))
        .await;
    loc.update_neighbor(neighbor("V2", ServiceType::profile_name(), 3))
        .await;
    // LOC repeats removals.
    loc.remove_neighbor(b"V1").await;
    loc.remove_neighbor(b"V1").await;
    let seen = loc.wait_for("4 acks", |seen| seen.acks.len() == 4).await;
    for (ack, id) in seen.acks.iter().zip(1..) {
        assert_eq!((ack.connection, ack.id), (1, id));
        assert_eq!(ack.body, Some(neighbourhood_updated()));
    }
    // A service list the server could not read would have cost the connection.
    assert_eq!(seen.connections, 1);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_loc_gets_registered_and_read_again() {
    let mut loc = LocStandIn::start(Generation::V2).await;
    let server = attached_server(&loc, "string").await;
    server.wait_for_status(", LOC ok, ").await;
    loc.stop().await;
    // Reconnects are refused meanwhile; clients are served.
    sleep(Duration::from_secs(5)).await;
    assert_ping(&server).await;
    server.wait_for_status(", LOC down, ").await;
    loc.restart().await;
    let seen = loc.wait_attached(2).await;
    server.wait_for_status(", LOC ok, ").await;
    assert_eq!(seen.connections, 2);
    assert_eq!(seen.registrations[0], seen.registrations[1]);
    // The new connection numbers its pushes from 1 again.
    loc.add_neighbor(neighbor("After", ServiceType::profile_name(), 4))
        .await;
    let seen = loc.wait_for("an ack", |seen| !seen.acks.is_empty()).await;
    assert_eq!((seen.acks[0].connection, seen.acks[0].id), (2, 1));
}

/// LOC misbehaves on the first registration: clients are served meanwhile, and the server
/// drops that connection and attaches on a new one.
async fn recovers_from(fault: Fault, happened: impl Fn(&Seen) -> bool) {
    let loc = LocStandIn::start(Generation::V2).await;
    loc.fail_next(fault);
    let server = TestServer::start(&options(&loc, "string")).await;
    loc.wait_for("the fault", happened).await;
    assert_ping(&server).await;
    let seen = loc.wait_attached(1).await;
    assert_eq!(seen.connections, 2, "{fault:?}");
    assert_eq!(seen.registrations.len(), 2, "{fault:?}");
}

#[tokio::test(start_paused = true)]
async fn garbage_from_loc_costs_only_the_connection() {
    recovers_from(Fault::Garbage, |seen| !seen.registrations.is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn an_error_status_costs_only_the_connection() {
    let fault = Fault::Error(LocStatus::ErrorInternal);
    recovers_from(fault, |seen| !seen.violations.is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_stalled_midway_is_given_up_after_its_timeout() {
    recovers_from(Fault::Stall, |seen| seen.stalls == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_notification_stalled_midway_is_given_up_after_its_timeout() {
    let loc = LocStandIn::start(Generation::V2).await;
    let server = attached_server(&loc, "string").await;
    loc.fail_next(Fault::Stall);
    loc.add_neighbor(neighbor("Cut", ServiceType::profile_name(), 5))
        .await;
    loc.wait_for("the stall", |seen| seen.stalls == 1).await;
    assert_ping(&server).await;
    let seen = loc.wait_attached(2).await;
    assert_eq!(seen.connections, 2);
    assert!(seen.acks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_loc_slower_than_the_answer_timeout_is_retried() {
    let loc = LocStandIn::start(Generation::V2).await;
    loc.set_delay(Duration::from_secs(31));
    let server = TestServer::start(&options(&loc, "string")).await;
    loc.wait_for("a second connection", |seen| seen.connections >= 2)
        .await;
    assert_ping(&server).await;
    loc.set_delay(Duration::ZERO);
    loc.wait_attached(1).await;
}

async fn connect(loc: &LocStandIn) -> TcpStream {
    TcpStream::connect(("127.0.0.1", loc.port()))
        .await
        .expect("connect")
}

/// Sends `message` and returns the response to it.
async fn exchange(socket: &mut TcpStream, message: &loc::Message) -> loc::Response {
    socket
        .write_all(&frame::encode(message))
        .await
        .expect("write");
    let bytes = read_loc_frame(socket).await.expect("an answer");
    let (answer, _) = frame::split::<loc::Message>(&bytes)
        .expect("valid")
        .expect("whole");
    assert_eq!(answer.id, message.id);
    let Some(MessageType::Response(response)) = answer.message_type else {
        panic!("not a response: {answer:?}");
    };
    response
}

#[tokio::test]
async fn the_stand_in_closes_after_every_error_like_loc() {
    let changed =
        LocalRequest::NeighbourhoodChanged(loc::NeighbourhoodChangedNotificationRequest {
            changes: Vec::new(),
        });
    let mut old_version = loc_request(5, LocalRequest::GetNodeInfo(loc::GetNodeInfoRequest {}));
    if let Some(MessageType::Request(request)) = &mut old_version.message_type {
        request.version = vec![2, 0, 0];
    }
    let node_info = loc_request(6, LocalRequest::GetNodeInfo(loc::GetNodeInfoRequest {}));
    let unknown_ack = loc_response(7, neighbourhood_updated());
    for (generation, message, status) in [
        (Generation::V2, old_version, LocStatus::ErrorUnsupported),
        (
            Generation::V1,
            node_info.clone(),
            LocStatus::ErrorProtocolViolation,
        ),
        (
            Generation::V2,
            unknown_ack,
            LocStatus::ErrorProtocolViolation,
        ),
        (
            Generation::V2,
            loc_request(8, changed),
            LocStatus::ErrorProtocolViolation,
        ),
    ] {
        let loc = LocStandIn::start(generation).await;
        let mut socket = connect(&loc).await;
        let response = exchange(&mut socket, &message).await;
        assert_eq!(response.status, status as i32, "{message:?}");
        assert!(
            read_loc_frame(&mut socket).await.is_none(),
            "closed after {message:?}"
        );
    }
    // LOC 2.0 answers get_node_info (status omitted) and stays open for more.
    let loc = LocStandIn::start(Generation::V2).await;
    let mut socket = connect(&loc).await;
    for _ in 0..2 {
        let response = exchange(&mut socket, &node_info).await;
        assert_eq!(response.status, LocStatus::Ok as i32);
    }
}
