//! LOC frames as the profile server writes and reads them (loc-can.md §1.3–§1.5, spec §7).
//!
//! Pure: ids and values in, whole frames out; frame bodies in, [`Incoming`] out. Requests are
//! told from responses by the oneof, never by the id (LOC numbers its notifications itself).
//! No socket, no clock, no state: which id is outstanding is `link`'s business.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{LocEvent, MAX_NODES, NeighborNode};
use crate::config::LocServiceType;
use crate::crypto::NetworkId;
use crate::log_gate::peer_text;
use crate::wire::frame::{self, FrameError};
use crate::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use crate::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use crate::wire::loc::message::MessageType;
use crate::wire::loc::neighbourhood_change::ChangeType;
use crate::wire::loc::{self, GpsLocation, NodeInfo, Status};
use crate::wire::loc_service::{DeregisterServiceRequest, ServiceInfo, ServiceType};
use crate::wire::{is_valid_latitude, is_valid_longitude, loc_envelope};

/// Longest part of LOC's error `details` kept for the log, in characters.
const MAX_DETAILS: usize = 200;

/// Why the conversation with LOC ended. After any of these the connection is dropped.
#[derive(Debug, thiserror::Error)]
pub(super) enum LocError {
    /// The socket failed or could not be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// LOC closed the connection.
    #[error("LOC closed the connection")]
    Closed,
    /// LOC did not answer, or stopped mid-frame, within the time allowed.
    #[error("LOC did not answer in time")]
    Timeout,
    /// The bytes are not a LOC frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// LOC answered with an error status (it closes the connection after one).
    #[error("LOC answered {status}: {details}")]
    Refused {
        /// The status code.
        status: i32,
        /// LOC's explanation, shortened.
        details: String,
    },
    /// A well-formed message that has no place in the conversation.
    #[error("LOC sent {0}")]
    Unexpected(&'static str),
}

/// A frame from LOC, sorted by its oneof.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming {
    /// A successful answer to request `id`.
    Response {
        /// The id of the request it answers.
        id: u32,
        /// What it says.
        answer: Answer,
    },
    /// Neighbourhood changes pushed under LOC's own id; the ack must carry that id.
    Notification {
        /// LOC's id.
        id: u32,
        /// The changes that concern profile servers, in order.
        events: Vec<LocEvent>,
    },
}

/// The body of a successful LOC answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// RegisterService: where the LOC node stands, when it says.
    Registered(Option<GpsLocation>),
    /// GetNeighbourNodes: the neighbours that run a profile server, at most [`MAX_NODES`].
    Neighbors(Vec<NeighborNode>),
    /// DeregisterService.
    Deregistered,
    /// An answer the profile server never asks for.
    Other,
}

/// The service type written for `kind` (loc-can.md §1.6).
pub(super) fn service_type(kind: LocServiceType) -> ServiceType {
    match kind {
        LocServiceType::String => ServiceType::profile_name(),
        LocServiceType::Enum => ServiceType::profile_code(),
    }
}

/// RegisterService: our profile service on our primary port, our network id as its data.
pub(super) fn register_service(
    id: u32,
    kind: LocServiceType,
    port: u16,
    network_id: &NetworkId,
) -> Vec<u8> {
    let service = ServiceInfo {
        r#type: service_type(kind),
        port: u32::from(port),
        service_data: network_id.0.to_vec(),
    };
    request(
        id,
        LocalRequest::RegisterService(loc::RegisterServiceRequest {
            service: Some(service),
        }),
    )
}

/// GetNeighbourNodes, subscribing this connection to changes.
pub(super) fn get_neighbour_nodes(id: u32) -> Vec<u8> {
    request(
        id,
        LocalRequest::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceLocalRequest {
            keep_alive_and_send_updates: true,
        }),
    )
}

/// DeregisterService for our profile service.
pub(super) fn deregister_service(id: u32, kind: LocServiceType) -> Vec<u8> {
    request(
        id,
        LocalRequest::DeregisterService(DeregisterServiceRequest {
            service_type: service_type(kind),
        }),
    )
}

/// The ack of notification `id`: status omitted (OK), `neighbourhood_updated`.
pub(super) fn neighbourhood_updated(id: u32) -> Vec<u8> {
    let body =
        LocalResponse::NeighbourhoodUpdated(loc::NeighbourhoodChangedNotificationResponse {});
    frame::encode(&loc_envelope::response(id, body))
}

fn request(id: u32, body: LocalRequest) -> Vec<u8> {
    frame::encode(&loc_envelope::request(id, body))
}

/// Reads one frame body from LOC. An error status is an error: LOC closes after sending one.
pub(super) fn parse(body: &[u8]) -> Result<Incoming, LocError> {
    let message: loc::Message = frame::decode_body(body)?;
    match message.message_type {
        Some(MessageType::Response(response)) => Ok(Incoming::Response {
            id: message.id,
            answer: answer(response)?,
        }),
        Some(MessageType::Request(request)) => Ok(Incoming::Notification {
            id: message.id,
            events: notification(request)?,
        }),
        None => Err(LocError::Unexpected(
            "a message that is neither request nor response",
        )),
    }
}

fn answer(response: loc::Response) -> Result<Answer, LocError> {
    if response.status != Status::Ok as i32 {
        // LOC's text reaches the log: shortened, and every control character escaped, so it
        // can neither forge log lines nor colour the terminal.
        return Err(LocError::Refused {
            status: response.status,
            details: peer_text(&response.details, MAX_DETAILS),
        });
    }
    let Some(loc::response::ResponseType::LocalService(local)) = response.response_type else {
        return Err(LocError::Unexpected("a response of another interface"));
    };
    Ok(match local.local_service_response_type {
        Some(LocalResponse::RegisterService(registered)) => Answer::Registered(registered.location),
        Some(LocalResponse::GetNeighbourNodes(list)) => Answer::Neighbors(
            list.nodes
                .iter()
                .filter_map(neighbor)
                .take(MAX_NODES)
                .collect(),
        ),
        Some(LocalResponse::DeregisterService(_)) => Answer::Deregistered,
        Some(LocalResponse::NeighbourhoodUpdated(_) | LocalResponse::GetNodeInfo(_)) | None => {
            Answer::Other
        }
    })
}

fn notification(request: loc::Request) -> Result<Vec<LocEvent>, LocError> {
    let Some(loc::request::RequestType::LocalService(local)) = request.request_type else {
        return Err(LocError::Unexpected("a request of another interface"));
    };
    let Some(LocalRequest::NeighbourhoodChanged(changed)) = local.local_service_request_type else {
        return Err(LocError::Unexpected(
            "a request other than neighbourhood_changed",
        ));
    };
    Ok(changed
        .changes
        .into_iter()
        .filter_map(|change| match change.change_type? {
            ChangeType::AddedNodeInfo(node) | ChangeType::UpdatedNodeInfo(node) => {
                neighbor(&node).map(LocEvent::Upsert)
            }
            ChangeType::RemovedNodeId(id) => Some(LocEvent::Removed(id)),
        })
        .take(MAX_NODES)
        .collect())
}

/// The neighbour a node stands for (spec §7): its first profile service, which must have a
/// port and a 32-byte network id, on a 4- or 16-byte IP address at a valid location.
fn neighbor(node: &NodeInfo) -> Option<NeighborNode> {
    let service = node.services.iter().find(|s| s.r#type.is_profile())?;
    let primary_port = u16::try_from(service.port).ok().filter(|p| *p != 0)?;
    let id = <[u8; 32]>::try_from(service.service_data.as_slice()).ok()?;
    let address = ip_address(&node.contact.as_ref()?.ip_address)?;
    let location = node.location?;
    let valid = is_valid_latitude(location.latitude) && is_valid_longitude(location.longitude);
    valid.then_some(NeighborNode {
        node_id: node.node_id.clone(),
        id,
        address,
        primary_port,
        latitude: location.latitude,
        longitude: location.longitude,
    })
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../../tests/fixtures/loc_appendix.rs");

    fn golden_id() -> NetworkId {
        NetworkId(std::array::from_fn(|i| u8::try_from(i).unwrap_or(0)))
    }

    fn parse_golden(name: &str) -> Incoming {
        let bytes = hex::decode(golden(name)).expect("hex");
        parse(&bytes[frame::HEADER_LEN..]).expect("parses")
    }

    fn seed() -> NeighborNode {
        NeighborNode {
            node_id: b"SeedNode01".to_vec(),
            id: golden_id().0,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            primary_port: 16987,
            latitude: 48_208_176,
            longitude: 16_373_819,
        }
    }

    #[test]
    fn requests_match_appendix_a_byte_for_byte() {
        let id = golden_id();
        let string = LocServiceType::String;
        let v1 = register_service(1, LocServiceType::Enum, 16987, &id);
        for (frame, name) in [
            (register_service(1, string, 16987, &id), "register"),
            (v1, "register_v1"),
            (get_neighbour_nodes(3), "get_neighbours"),
            (neighbourhood_updated(1), "ack"),
            (deregister_service(4, string), "deregister"),
        ] {
            assert_eq!(hex::encode(frame), golden(name), "{name}");
        }
    }

    #[test]
    fn answers_of_appendix_a() {
        let location = GpsLocation {
            latitude: 48_208_176,
            longitude: 16_373_819,
        };
        let cases = [
            ("registered", 1, Answer::Registered(Some(location))),
            ("no_neighbours", 3, Answer::Neighbors(Vec::new())),
            ("deregistered", 4, Answer::Deregistered),
            ("seed_list", 3, Answer::Neighbors(vec![seed()])),
            ("node_info", 2, Answer::Other),
        ];
        for (name, id, answer) in cases {
            assert_eq!(parse_golden(name), Incoming::Response { id, answer });
        }
    }

    #[test]
    fn notifications_of_appendix_a() {
        // SecondNode02 has no services (the LOC 2.0 bug of §1.5): nothing for us, but an ack.
        let nothing = Incoming::Notification {
            id: 1,
            events: Vec::new(),
        };
        assert_eq!(parse_golden("second_node_updated"), nothing);
        let upsert = Incoming::Notification {
            id: 1,
            events: vec![LocEvent::Upsert(seed())],
        };
        assert_eq!(parse_golden("seed_updated"), upsert);
    }

    fn node(services: Vec<ServiceInfo>, ip: Vec<u8>, latitude: i32) -> NodeInfo {
        NodeInfo {
            node_id: b"Node".to_vec(),
            contact: Some(loc::NodeContact {
                ip_address: ip,
                node_port: 1,
                client_port: 2,
            }),
            location: Some(GpsLocation {
                latitude,
                longitude: 1,
            }),
            services,
        }
    }

    fn profile(r#type: ServiceType, port: u32, data_len: usize) -> ServiceInfo {
        ServiceInfo {
            r#type,
            port,
            service_data: vec![7; data_len],
        }
    }

    #[test]
    fn neighbor_rules_of_spec_7() {
        let good = profile(ServiceType::profile_code(), 1, 32);
        let v6 = node(vec![good.clone()], vec![0; 16], 2);
        assert_eq!(
            neighbor(&v6).map(|n| n.address),
            Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
        let other = profile(ServiceType::Name(b"Chat".to_vec()), 5, 3);
        let second = node(vec![other, good.clone()], vec![1, 2, 3, 4], 2);
        assert_eq!(neighbor(&second).map(|n| n.primary_port), Some(1));
        let rejected = [
            node(
                vec![profile(ServiceType::profile_name(), 0, 32), good.clone()],
                vec![1; 4],
                2,
            ),
            node(
                vec![profile(ServiceType::profile_name(), 65_536, 32)],
                vec![1; 4],
                2,
            ),
            node(
                vec![profile(ServiceType::profile_name(), 9, 31)],
                vec![1; 4],
                2,
            ),
            node(vec![good.clone()], vec![1; 5], 2),
            node(vec![good.clone()], vec![1; 4], 90_000_001),
            node(Vec::new(), vec![1; 4], 2),
            NodeInfo {
                location: None,
                ..node(vec![good], vec![1; 4], 2)
            },
        ];
        for rejected in rejected {
            assert_eq!(neighbor(&rejected), None, "{rejected:?}");
        }
    }

    #[test]
    fn error_status_unknown_interfaces_and_garbage_are_errors() {
        let refused = loc::Message {
            id: 1,
            message_type: Some(MessageType::Response(loc::Response {
                status: Status::ErrorInternal as i32,
                details: format!(
                    "busy\n2026-12-07T00:00:00.000000Z ERROR forged: \u{1b}[31m{}",
                    "é".repeat(300)
                ),
                ..loc::Response::default()
            })),
        };
        let bytes = frame::encode(&refused);
        let Err(LocError::Refused { status: 8, details }) = parse(&bytes[frame::HEADER_LEN..])
        else {
            panic!("not refused");
        };
        // One log line, without terminal escapes, of bounded length.
        assert!(details.starts_with("busy\\n2026"), "{details}");
        assert!(!details.chars().any(char::is_control), "{details:?}");
        assert!(
            details.chars().count() <= MAX_DETAILS + 1,
            "{}",
            details.len()
        );
        let empty = loc::Message {
            id: 2,
            message_type: None,
        };
        let bytes = frame::encode(&empty);
        assert!(matches!(
            parse(&bytes[frame::HEADER_LEN..]),
            Err(LocError::Unexpected(_))
        ));
        let registering = hex::decode(golden("register")).expect("hex");
        let not_a_notification = parse(&registering[frame::HEADER_LEN..]);
        assert!(matches!(not_a_notification, Err(LocError::Unexpected(_))));
        assert!(matches!(parse(&[0x12, 0x7F]), Err(LocError::Frame(_))));
    }
}
