//! LOC messages as the LOC stand-in and the golden-frame tests build them (loc-can.md §1.3–§1.5),
//! on the envelopes the server's LOC client uses too (`wire::loc_envelope`: requests carry
//! version 1.0.0, OK responses omit the status), framed by `wire::frame::encode`.

use iop_profile_server::wire::frame;
use iop_profile_server::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use iop_profile_server::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use iop_profile_server::wire::loc::message::MessageType;
use iop_profile_server::wire::loc::neighbourhood_change::ChangeType;
use iop_profile_server::wire::loc::{self, GpsLocation, NodeContact, NodeInfo, Status};
pub use iop_profile_server::wire::loc_envelope::{
    request as loc_request, response as loc_response,
};
use iop_profile_server::wire::loc_service::{ServiceInfo, ServiceType};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::ANSWER_TIMEOUT;

/// Where the appendix A seed node stands (48.2081743, 16.3738189, truncated).
pub const SEED_LOCATION: GpsLocation = GpsLocation {
    latitude: 48_208_176,
    longitude: 16_373_819,
};

/// An error response without a body, as LOC sends before closing.
pub fn loc_error(id: u32, status: Status, details: &str) -> loc::Message {
    loc::Message {
        id,
        message_type: Some(MessageType::Response(loc::Response {
            status: status as i32,
            details: details.into(),
            ..loc::Response::default()
        })),
    }
}

/// A NeighbourhoodChanged notification carrying one change (LOC sends one per message).
pub fn loc_notification(id: u32, change: ChangeType) -> loc::Message {
    loc_request(
        id,
        LocalRequest::NeighbourhoodChanged(loc::NeighbourhoodChangedNotificationRequest {
            changes: vec![loc::NeighbourhoodChange {
                change_type: Some(change),
            }],
        }),
    )
}

/// A GetNeighbourNodes response with `nodes`.
pub fn loc_neighbors(id: u32, nodes: Vec<NodeInfo>) -> loc::Message {
    loc_response(
        id,
        LocalResponse::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceResponse { nodes }),
    )
}

/// A LOC node on 127.0.0.1 with the appendix A ports of `node_port`/`+1`, at `location`.
pub fn loc_node(
    name: &str,
    node_port: u32,
    location: GpsLocation,
    services: Vec<ServiceInfo>,
) -> NodeInfo {
    NodeInfo {
        node_id: name.as_bytes().to_vec(),
        contact: Some(NodeContact {
            ip_address: vec![127, 0, 0, 1],
            node_port,
            client_port: node_port + 1,
        }),
        location: Some(location),
        services,
    }
}

/// A profile service of `r#type` on `port` with `network_id` as its data.
pub fn profile_service(r#type: ServiceType, port: u32, network_id: &[u8]) -> ServiceInfo {
    ServiceInfo {
        r#type,
        port,
        service_data: network_id.to_vec(),
    }
}

/// The whole frame of `message`, as lowercase hex.
pub fn frame_hex(message: &loc::Message) -> String {
    hex::encode(frame::encode(message))
}

/// Reads one whole frame as raw bytes, header included; `None` once the peer closed.
pub async fn read_loc_frame(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let mut bytes = vec![0; frame::HEADER_LEN];
        socket.read_exact(&mut bytes).await.ok()?;
        let header = bytes.first_chunk().expect("5 bytes");
        let len = frame::body_len(header).expect("valid header");
        bytes.resize(frame::HEADER_LEN + len, 0);
        socket
            .read_exact(&mut bytes[frame::HEADER_LEN..])
            .await
            .ok()?;
        Some(bytes)
    };
    timeout(ANSWER_TIMEOUT, read)
        .await
        .expect("a frame or a close in time")
}
