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

const REGISTER: &str = "0d40000000123e0801123a0a0301000012330a310a2f0a0750726f66696c6510db84011a\
    20000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const REGISTERED: &str = "0d16000000121408011a10220e0a0c0a0a0d3099df02153bd8f900";
const GET_NODE_INFO: &str = "0d0f000000120d080212090a0301000012022a00";
const NODE_INFO: &str = "0d66000000126408021a60225e2a5c0a5a0a0a536565644e6f64653031120e0a047f00\
    000110d4840118d584011a0a0d3099df02153bd8f90082022f0a0750726f66696c6510db84011a200001020304050\
    60708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GET_NEIGHBOURS: &str = "0d11000000120f0803120b0a0301000012041a020801";
const NO_NEIGHBOURS: &str = "0d0a000000120808031a0422021a00";
const SECOND_NODE_UPDATED: &str = "0d3d000000123b080112370a030100001230222e0a2c122a0a0c5365636f6e\
    644e6f64653032120e0a047f00000110e4d20118e5d2011a0a0dacc2d40215c8872201";
const ACK: &str = "0d0a000000120808011a0422022200";
const DEREGISTER: &str = "0d180000001216080412120a03010000120b12090a0750726f66696c65";
const DEREGISTERED: &str = "0d0a000000120808041a0422021200";
const SEED_LIST: &str = "0d66000000126408031a60225e1a5c0a5a0a0a536565644e6f64653031120e0a047f0000\
    0110d4840118d584011a0a0d3099df02153bd8f90082022f0a0750726f66696c6510db84011a20000102030405060\
    708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const SEED_UPDATED: &str = "0d6d000000126b080112670a030100001260225e0a5c125a0a0a536565644e6f646530\
    31120e0a047f00000110d4840118d584011a0a0d3099df02153bd8f90082022f0a0750726f66696c6510db84011a2\
    0000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const REGISTER_V1: &str = "0d390000001237080112330a03010000122c0a2a0a28080b10db84011a2000010203040\
    5060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

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

fn get_neighbours(id: u32) -> loc::Message {
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
            REGISTER,
            register(1, ServiceType::profile_name(), 16987, &appendix_id()),
        ),
        (
            REGISTERED,
            loc_response(
                1,
                LocalResponse::RegisterService(loc::RegisterServiceResponse {
                    location: Some(SEED_LOCATION),
                }),
            ),
        ),
        (
            GET_NODE_INFO,
            loc_request(2, LocalRequest::GetNodeInfo(loc::GetNodeInfoRequest {})),
        ),
        (
            NODE_INFO,
            loc_response(
                2,
                LocalResponse::GetNodeInfo(loc::GetNodeInfoResponse {
                    node_info: Some(seed_node()),
                }),
            ),
        ),
        (GET_NEIGHBOURS, get_neighbours(3)),
        (NO_NEIGHBOURS, loc_neighbours(3, Vec::new())),
        (
            SECOND_NODE_UPDATED,
            loc_notification(1, ChangeType::UpdatedNodeInfo(second_node)),
        ),
        (ACK, ack(1)),
        (DEREGISTER, deregister(4)),
        (
            DEREGISTERED,
            loc_response(
                4,
                LocalResponse::DeregisterService(loc::DeregisterServiceResponse {}),
            ),
        ),
        (SEED_LIST, loc_neighbours(3, vec![seed_node()])),
        (
            SEED_UPDATED,
            loc_notification(1, ChangeType::UpdatedNodeInfo(seed_node())),
        ),
        (
            REGISTER_V1,
            register(1, ServiceType::profile_code(), 16987, &appendix_id()),
        ),
    ]
}

#[test]
fn the_kit_encodes_every_appendix_frame_byte_for_byte() {
    for (golden, message) in appendix() {
        assert_eq!(frame_hex(&message), golden, "{message:?}");
    }
}

#[test]
fn every_appendix_frame_decodes_and_encodes_back_identically() {
    for (golden, message) in appendix() {
        let bytes = hex::decode(golden).expect("hex");
        let (decoded, used) = frame::split::<loc::Message>(&bytes)
            .expect("valid frame")
            .expect("whole frame");
        assert_eq!(used, bytes.len());
        assert_eq!(decoded, message);
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
    loc.write_all(&hex::decode(REGISTERED).expect("hex"))
        .await
        .expect("write");
    // Ids continue from 2 here: this server sends no GetNodeInfo.
    assert_eq!(read_raw(&mut loc).await, frame::encode(&get_neighbours(2)));
    loc.write_all(&frame::encode(&loc_neighbours(2, Vec::new())))
        .await
        .expect("write");
    loc.write_all(&hex::decode(SEED_UPDATED).expect("hex"))
        .await
        .expect("write");
    assert_eq!(hex::encode(read_raw(&mut loc).await), ACK);
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
