//! LOC conformance against the frames captured from a real LOC daemon (loc-can.md appendix A):
//! the stand-in's encoder reproduces every frame byte for byte, every frame decodes and encodes
//! back to the same bytes, and the server's own frames on the wire are exactly those.

use iop_profile_server::role::Role;
use iop_profile_server::wire::frame;
use iop_profile_server::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use iop_profile_server::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use iop_profile_server::wire::loc::neighbourhood_change::ChangeType;
use iop_profile_server::wire::loc::{self, GpsLocation};
use iop_profile_server::wire::loc_service::{DeregisterServiceRequest, ServiceType};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::kit::*;

include!("../fixtures/loc_appendix.rs");

/// The appendix's PS network id: bytes 00..1f.
fn appendix_id() -> Vec<u8> {
    (0..32).collect()
}

/// SeedNode01 with the appendix PS registered as `Profile` on 16987.
fn seed_node() -> loc::NodeInfo {
    let service = profile_service(ServiceType::profile_name(), 16987, &appendix_id());
    loc_node("SeedNode01", 16980, SEED_LOCATION, vec![service])
}

fn register(id: u32, r#type: ServiceType, port: u16, network_id: &[u8]) -> loc::Message {
    let service = profile_service(r#type, u32::from(port), network_id);
    loc_request(
        id,
        LocalRequest::RegisterService(loc::RegisterServiceRequest {
            service: Some(service),
        }),
    )
}

fn get_neighbors(id: u32) -> loc::Message {
    loc_request(
        id,
        LocalRequest::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceLocalRequest {
            keep_alive_and_send_updates: true,
        }),
    )
}

fn deregister(id: u32) -> loc::Message {
    loc_request(
        id,
        LocalRequest::DeregisterService(DeregisterServiceRequest {
            service_type: ServiceType::profile_name(),
        }),
    )
}

fn ack(id: u32) -> loc::Message {
    loc_response(
        id,
        LocalResponse::NeighbourhoodUpdated(loc::NeighbourhoodChangedNotificationResponse {}),
    )
}

/// Every frame of appendix A with the message the kit builds for it.
fn appendix() -> Vec<(&'static str, loc::Message)> {
    let second = GpsLocation {
        latitude: 47_497_900,
        longitude: 19_040_200,
    };
    let second_node = loc_node("SecondNode02", 26980, second, Vec::new());
    vec![
        (
            "register",
            register(1, ServiceType::profile_name(), 16987, &appendix_id()),
        ),
        (
            "registered",
            loc_response(
                1,
                LocalResponse::RegisterService(loc::RegisterServiceResponse {
                    location: Some(SEED_LOCATION),
                }),
            ),
        ),
        (
            "get_node_info",
            loc_request(2, LocalRequest::GetNodeInfo(loc::GetNodeInfoRequest {})),
        ),
        (
            "node_info",
            loc_response(
                2,
                LocalResponse::GetNodeInfo(loc::GetNodeInfoResponse {
                    node_info: Some(seed_node()),
                }),
            ),
        ),
        ("get_neighbours", get_neighbors(3)),
        ("no_neighbours", loc_neighbors(3, Vec::new())),
        (
            "second_node_updated",
            loc_notification(1, ChangeType::UpdatedNodeInfo(second_node)),
        ),
        ("ack", ack(1)),
        ("deregister", deregister(4)),
        (
            "deregistered",
            loc_response(
                4,
                LocalResponse::DeregisterService(loc::DeregisterServiceResponse {}),
            ),
        ),
        ("seed_list", loc_neighbors(3, vec![seed_node()])),
        (
            "seed_updated",
            loc_notification(1, ChangeType::UpdatedNodeInfo(seed_node())),
        ),
        (
            "register_v1",
            register(1, ServiceType::profile_code(), 16987, &appendix_id()),
        ),
    ]
}

#[test]
fn the_kit_encodes_every_appendix_frame_byte_for_byte() {
    let frames = appendix();
    let listed = APPENDIX
        .lines()
        .filter(|line| !line.starts_with('#'))
        .count();
    assert_eq!(frames.len(), listed, "every appendix frame is checked");
    for (name, message) in frames {
        assert_eq!(frame_hex(&message), golden(name), "{name}");
    }
}

#[test]
fn every_appendix_frame_decodes_and_encodes_back_identically() {
    for (name, message) in appendix() {
        let bytes = hex::decode(golden(name)).expect("hex");
        let (decoded, used) = frame::split::<loc::Message>(&bytes)
            .expect("valid frame")
            .expect("whole frame");
        assert_eq!(used, bytes.len());
        assert_eq!(decoded, message, "{name}");
        assert_eq!(frame::encode(&decoded), bytes);
    }
}

async fn read_raw(socket: &mut TcpStream) -> Vec<u8> {
    read_loc_frame(socket).await.expect("a frame")
}

#[tokio::test]
async fn the_servers_frames_on_the_wire_are_the_appendix_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let options = Options {
        extra: format!("[loc]\naddress = \"127.0.0.1:{port}\"\n"),
        ..Options::default()
    };
    let mut server = TestServer::start(&options).await;
    let (mut loc, _) = timeout(ANSWER_TIMEOUT, listener.accept())
        .await
        .expect("in time")
        .expect("accept");
    let (primary, id) = (server.port(Role::Primary), server.network_id());
    let expected = register(1, ServiceType::profile_name(), primary, &id);
    assert_eq!(read_raw(&mut loc).await, frame::encode(&expected));
    loc.write_all(&hex::decode(golden("registered")).expect("hex"))
        .await
        .expect("write");
    // Ids continue from 2 here: this server sends no GetNodeInfo.
    assert_eq!(read_raw(&mut loc).await, frame::encode(&get_neighbors(2)));
    loc.write_all(&frame::encode(&loc_neighbors(2, Vec::new())))
        .await
        .expect("write");
    loc.write_all(&hex::decode(golden("seed_updated")).expect("hex"))
        .await
        .expect("write");
    assert_eq!(hex::encode(read_raw(&mut loc).await), golden("ack"));
    let stopping = tokio::spawn(async move { server.stop().await });
    assert_eq!(read_raw(&mut loc).await, frame::encode(&deregister(3)));
    loc.write_all(&frame::encode(&loc_response(
        3,
        LocalResponse::DeregisterService(loc::DeregisterServiceResponse {}),
    )))
    .await
    .expect("write");
    stopping.await.expect("server stopped");
}
