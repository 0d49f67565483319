//! One connection's conversation with LOC, sans-I/O (loc-can.md §1.4, "C# PS sequence"):
//! register, read the neighbourhood with keep-alive, then acknowledge every pushed change and
//! read the neighbourhood again every `loc.neighborhood_refresh_secs` (LOC notifies only the
//! first session it ever accepted, so the list read again is how a server that reconnected
//! learns of changes; C# read it every 601 min).
//!
//! Every call takes `now` and returns what to send and what to report; `task` carries it out
//! and owns the socket. A new connection starts a new [`Link`], so ids start again at 1.

use std::time::Duration;

use tokio::time::Instant;

use super::codec::{self, Answer, Incoming, LocError};
use super::{LocEvent, LocSettings, MAX_NODES};
use crate::config::LocServiceType;
use crate::wire::loc::GpsLocation;

/// Longest wait for LOC's answer to one request.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the answer to DeregisterService on shutdown.
pub(super) const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The requests the profile server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Register,
    Neighbors,
    Deregister,
}

/// The one request whose answer is awaited.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    id: u32,
    request: Request,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// RegisterService sent, not answered yet.
    Registering,
    /// Registered; the first neighbourhood list is awaited.
    Subscribing,
    /// The neighbourhood is known and followed.
    Attached { refresh_at: Instant },
}

/// What one step asks the task to do, in field order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Output {
    /// LOC's node location, from the RegisterService answer.
    pub location: Option<GpsLocation>,
    /// A frame to send: the next request or an ack.
    pub send: Option<Vec<u8>>,
    /// The link has just become attached (the first event is then `Attached`).
    pub attached: bool,
    /// Events to report, in order.
    pub events: Vec<LocEvent>,
}

/// The state of one connection to LOC.
#[derive(Debug)]
pub(super) struct Link {
    service_type: LocServiceType,
    primary_port: u16,
    network_id: crate::crypto::NetworkId,
    refresh: Duration,
    next_id: u32,
    phase: Phase,
    waiting: Option<Waiting>,
    /// Changes pushed before the first list arrived: reported right after it.
    early: Vec<LocEvent>,
}

impl Link {
    /// A fresh conversation and its first frame, RegisterService with id 1.
    pub(super) fn new(settings: &LocSettings, now: Instant) -> (Link, Vec<u8>) {
        let mut link = Link {
            service_type: settings.service_type,
            primary_port: settings.primary_port,
            network_id: settings.network_id,
            refresh: settings.refresh,
            next_id: 1,
            phase: Phase::Registering,
            waiting: None,
            early: Vec::new(),
        };
        let id = link.expect(Request::Register, now, RESPONSE_TIMEOUT);
        let frame = link.register_frame(id);
        (link, frame)
    }

    fn register_frame(&self, id: u32) -> Vec<u8> {
        codec::register_service(id, self.service_type, self.primary_port, &self.network_id)
    }

    /// Whether LOC confirmed our registration on this connection.
    pub(super) fn is_registered(&self) -> bool {
        self.phase != Phase::Registering
    }

    /// Whether an answer is awaited.
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// When [`Link::on_timer`] has something to do: an answer's deadline or the next refresh.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        match (self.waiting, self.phase) {
            (Some(waiting), _) => Some(waiting.deadline),
            (None, Phase::Attached { refresh_at }) => Some(refresh_at),
            (None, _) => None,
        }
    }

    /// An answer overdue is an error; a refresh due registers the service again (LOC keeps one
    /// service per type: another server's registration may have replaced ours) and then reads
    /// the neighbourhood.
    pub(super) fn on_timer(&mut self, now: Instant) -> Result<Option<Vec<u8>>, LocError> {
        if let Some(waiting) = self.waiting {
            return if now >= waiting.deadline {
                Err(LocError::Timeout)
            } else {
                Ok(None)
            };
        }
        match self.phase {
            Phase::Attached { refresh_at } if now >= refresh_at => {
                let id = self.expect(Request::Register, now, RESPONSE_TIMEOUT);
                Ok(Some(self.register_frame(id)))
            }
            _ => Ok(None),
        }
    }

    /// DeregisterService for shutdown; its answer is awaited for [`DEREGISTER_TIMEOUT`].
    pub(super) fn deregister(&mut self, now: Instant) -> Vec<u8> {
        let id = self.expect(Request::Deregister, now, DEREGISTER_TIMEOUT);
        codec::deregister_service(id, self.service_type)
    }

    /// Handles one frame body from LOC.
    pub(super) fn on_frame(&mut self, now: Instant, body: &[u8]) -> Result<Output, LocError> {
        match codec::parse(body)? {
            Incoming::Response { id, answer } => self.on_answer(now, id, answer),
            Incoming::Notification { id, events } => {
                let mut output = Output {
                    send: Some(codec::neighbourhood_updated(id)),
                    ..Output::default()
                };
                if matches!(self.phase, Phase::Attached { .. }) {
                    output.events = events;
                } else if self.early.len() + events.len() > MAX_NODES {
                    return Err(LocError::Unexpected(
                        "too many changes before the neighbourhood",
                    ));
                } else {
                    self.early.extend(events);
                }
                Ok(output)
            }
        }
    }

    fn on_answer(&mut self, now: Instant, id: u32, answer: Answer) -> Result<Output, LocError> {
        let request = self.waiting.filter(|w| w.id == id).map(|w| w.request);
        let attached = matches!(self.phase, Phase::Attached { .. });
        let mut output = Output::default();
        match (request, answer) {
            (Some(Request::Register), Answer::Registered(location)) => {
                // A registration renewed on a refresh keeps the link attached.
                if !attached {
                    self.phase = Phase::Subscribing;
                    output.location = location;
                }
                let id = self.expect(Request::Neighbors, now, RESPONSE_TIMEOUT);
                output.send = Some(codec::get_neighbour_nodes(id));
            }
            // C#: an unexpected list counts as a refresh, once the neighbourhood is known.
            (Some(Request::Neighbors) | None, Answer::Neighbors(nodes))
                if request.is_some() || attached =>
            {
                if request.is_some() {
                    self.waiting = None;
                }
                self.phase = Phase::Attached {
                    refresh_at: now + self.refresh,
                };
                output.attached = !attached;
                output.events.push(LocEvent::Attached { nodes });
                output.events.append(&mut self.early);
            }
            (Some(Request::Deregister), Answer::Deregistered) => self.waiting = None,
            (Some(_), _) => return Err(LocError::Unexpected("an answer of another type")),
            // A late answer to a request given up on, or a list before ours: nothing to do.
            (None, _) => {}
        }
        Ok(output)
    }

    /// Takes the next id and awaits the answer to `request` under it.
    fn expect(&mut self, request: Request, now: Instant, timeout: Duration) -> u32 {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        self.waiting = Some(Waiting {
            id,
            request,
            deadline: now + timeout,
        });
        id
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::config::Location;
    use crate::crypto::NetworkId;
    use crate::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
    use crate::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
    use crate::wire::loc::neighbourhood_change::ChangeType;
    use crate::wire::loc::{self, NodeInfo};
    use crate::wire::loc_service::{ServiceInfo, ServiceType};
    use crate::wire::{frame, loc_envelope};

    const WHERE: GpsLocation = GpsLocation {
        latitude: 48_208_176,
        longitude: 16_373_819,
    };

    const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

    fn settings() -> LocSettings {
        LocSettings {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 16982)),
            reconnect: Duration::from_secs(10),
            refresh: REFRESH_INTERVAL,
            service_type: LocServiceType::String,
            primary_port: 16987,
            network_id: NetworkId([7; 32]),
            configured_location: Location::default(),
        }
    }

    fn body(message: &loc::Message) -> Vec<u8> {
        frame::encode(message)[frame::HEADER_LEN..].to_vec()
    }

    fn answer(id: u32, answer: LocalResponse) -> Vec<u8> {
        body(&loc_envelope::response(id, answer))
    }

    fn registered(id: u32) -> Vec<u8> {
        answer(
            id,
            LocalResponse::RegisterService(loc::RegisterServiceResponse {
                location: Some(WHERE),
            }),
        )
    }

    fn neighbors(id: u32, nodes: Vec<NodeInfo>) -> Vec<u8> {
        answer(
            id,
            LocalResponse::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceResponse { nodes }),
        )
    }

    fn removed(id: u32, node_id: &[u8]) -> Vec<u8> {
        let change = loc::NeighbourhoodChange {
            change_type: Some(ChangeType::RemovedNodeId(node_id.to_vec())),
        };
        let changed = loc::NeighbourhoodChangedNotificationRequest {
            changes: vec![change],
        };
        body(&loc_envelope::request(
            id,
            LocalRequest::NeighbourhoodChanged(changed),
        ))
    }

    fn profile_node(last: u8) -> NodeInfo {
        NodeInfo {
            node_id: vec![last],
            contact: Some(loc::NodeContact {
                ip_address: vec![10, 0, 0, last],
                ..loc::NodeContact::default()
            }),
            location: Some(WHERE),
            services: vec![ServiceInfo {
                r#type: ServiceType::profile_name(),
                port: 16987,
                service_data: vec![last; 32],
            }],
        }
    }

    /// A link attached at `now` with an empty neighbourhood (ids 1 and 2 used).
    fn attached(now: Instant) -> Link {
        let (mut link, _) = Link::new(&settings(), now);
        link.on_frame(now, &registered(1)).expect("registered");
        link.on_frame(now, &neighbors(2, Vec::new()))
            .expect("attached");
        link
    }

    #[test]
    fn register_then_subscribe_then_attached() {
        let now = Instant::now();
        let (mut link, first) = Link::new(&settings(), now);
        assert_eq!(
            first,
            codec::register_service(1, LocServiceType::String, 16987, &NetworkId([7; 32]))
        );
        assert_eq!(link.next_wakeup(), Some(now + RESPONSE_TIMEOUT));
        let out = link.on_frame(now, &registered(1)).expect("registered");
        assert_eq!(out.location, Some(WHERE));
        assert_eq!(out.send, Some(codec::get_neighbour_nodes(2)));
        assert!(link.is_registered() && out.events.is_empty());
        let out = link
            .on_frame(now, &neighbors(2, vec![profile_node(1)]))
            .expect("list");
        assert!(out.attached);
        let [LocEvent::Attached { nodes }] = out.events.as_slice() else {
            panic!("{:?}", out.events);
        };
        assert_eq!(nodes[0].address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(link.next_wakeup(), Some(now + REFRESH_INTERVAL));
    }

    #[test]
    fn notifications_are_acked_with_locs_id_and_early_ones_wait_for_the_list() {
        let now = Instant::now();
        let (mut link, _) = Link::new(&settings(), now);
        link.on_frame(now, &registered(1)).expect("registered");
        let early = link
            .on_frame(now, &removed(1, b"gone"))
            .expect("early change");
        assert_eq!(early.send, Some(codec::neighbourhood_updated(1)));
        assert!(early.events.is_empty());
        let out = link.on_frame(now, &neighbors(2, Vec::new())).expect("list");
        let expected = vec![
            LocEvent::Attached { nodes: Vec::new() },
            LocEvent::Removed(b"gone".to_vec()),
        ];
        assert_eq!(out.events, expected);
        let later = link.on_frame(now, &removed(2, b"x")).expect("change");
        assert_eq!(later.send, Some(codec::neighbourhood_updated(2)));
        assert_eq!(later.events, vec![LocEvent::Removed(b"x".to_vec())]);
    }

    #[test]
    fn an_answer_overdue_is_a_timeout() {
        let now = Instant::now();
        let (mut link, _) = Link::new(&settings(), now);
        let just_before = now + RESPONSE_TIMEOUT - Duration::from_millis(1);
        assert!(matches!(link.on_timer(just_before), Ok(None)));
        assert!(matches!(
            link.on_timer(now + RESPONSE_TIMEOUT),
            Err(LocError::Timeout)
        ));
        let mut link = attached(now);
        assert!(matches!(
            link.on_timer(now + REFRESH_INTERVAL / 2),
            Ok(None)
        ));
    }

    #[test]
    fn each_refresh_registers_again_then_reads_the_neighborhood() {
        let now = Instant::now();
        let mut link = attached(now);
        let due = now + REFRESH_INTERVAL;
        let sent = link.on_timer(due).expect("refresh");
        assert_eq!(sent, Some(link.register_frame(3)));
        assert_eq!(link.next_wakeup(), Some(due + RESPONSE_TIMEOUT));
        // The renewed registration keeps the link attached: no new location, no new attach.
        let out = link.on_frame(due, &registered(3)).expect("registered");
        assert_eq!(out.location, None);
        assert_eq!(out.send, Some(codec::get_neighbour_nodes(4)));
        assert!(!out.attached && out.events.is_empty());
        let out = link
            .on_frame(due, &neighbors(4, vec![profile_node(2)]))
            .expect("list");
        assert!(!out.attached);
        assert!(
            matches!(out.events.as_slice(), [LocEvent::Attached { nodes }] if nodes.len() == 1)
        );
        // An unasked-for list counts as a refresh too.
        let out = link
            .on_frame(due, &neighbors(77, Vec::new()))
            .expect("list");
        assert_eq!(out.events, vec![LocEvent::Attached { nodes: Vec::new() }]);
        assert_eq!(link.next_wakeup(), Some(due + REFRESH_INTERVAL));
    }

    #[test]
    fn answers_out_of_place() {
        let now = Instant::now();
        let (mut link, _) = Link::new(&settings(), now);
        // Before attaching, a list nobody asked for is ignored; a late answer too.
        assert_eq!(
            link.on_frame(now, &neighbors(9, Vec::new())).expect("ok"),
            Output::default()
        );
        assert_eq!(
            link.on_frame(now, &registered(5)).expect("ok"),
            Output::default()
        );
        let wrong = link.on_frame(now, &neighbors(1, Vec::new()));
        assert!(matches!(wrong, Err(LocError::Unexpected(_))));
    }

    #[test]
    fn deregistering_awaits_its_answer_briefly() {
        let now = Instant::now();
        let mut link = attached(now);
        let frame = link.deregister(now);
        assert_eq!(frame, codec::deregister_service(3, LocServiceType::String));
        assert_eq!(link.next_wakeup(), Some(now + DEREGISTER_TIMEOUT));
        let done = answer(
            3,
            LocalResponse::DeregisterService(loc::DeregisterServiceResponse {}),
        );
        link.on_frame(now, &done).expect("deregistered");
        assert!(!link.is_waiting());
    }
}
