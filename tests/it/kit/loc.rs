//! An in-process LOC daemon, as loc-can.md §1.8 describes: exact framing, the local-service
//! interface only, OK with the status omitted, a closed connection after any error response,
//! either service-type generation, neighbourhood changes the test pushes, and injected faults.
//!
//! Each connection runs as two tasks: one reads frames, one answers them and writes the pushes,
//! in the order they reach its inbox. What the stand-in saw is kept in [`Seen`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use iop_profile_server::wire::frame;
use iop_profile_server::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use iop_profile_server::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use iop_profile_server::wire::loc::message::MessageType;
use iop_profile_server::wire::loc::neighbourhood_change::ChangeType;
use iop_profile_server::wire::loc::{self, GpsLocation, NodeInfo, Status};
use iop_profile_server::wire::loc_service::{ServiceInfo, ServiceType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::loc_frames::{SEED_LOCATION, loc_error, loc_node, loc_notification, loc_response};
use super::waiting::wait_for_state;

/// Longest wait for the stand-in to see what a test awaits (paused-time tests pass it at once).
pub const LOC_WAIT: Duration = Duration::from_secs(120);
/// Frames queued for one connection (answers to read frames and pushes).
const INBOX: usize = 64;
/// What [`Fault::Garbage`] sends: a valid header over a body that is not a message.
const GARBAGE: [u8; 8] = [0x0D, 3, 0, 0, 0, 0x12, 0x7F, 0x00];

/// Which LOC release the stand-in plays (loc-can.md §1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// LOC 1.x: service types are the enum (`Profile = 11`); no `get_node_info`.
    V1,
    /// LOC 2.x: service types are strings.
    V2,
}

/// A fault for the next request the stand-in answers (see [`LocStandIn::fail_next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this error status, then close.
    Error(Status),
    /// Send bytes that do not parse instead of the answer.
    Garbage,
    /// Send the first bytes of the answer, then nothing more. Also cuts the next push short.
    Stall,
}

/// An acknowledgement the stand-in received.
#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    /// Which connection it came on (1 for the first accepted).
    pub connection: usize,
    /// The id of the push it answers.
    pub id: u32,
    /// Its local-service body (`neighbourhood_updated` when right).
    pub body: Option<LocalResponse>,
}

/// Everything the stand-in saw, in order.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: usize,
    /// Every RegisterService's service, as sent.
    pub registrations: Vec<ServiceInfo>,
    /// Every DeregisterService's type, as sent.
    pub deregistrations: Vec<ServiceType>,
    /// Connections that subscribed with keep-alive (each once).
    pub subscriptions: usize,
    /// Acks of pushes.
    pub acks: Vec<Ack>,
    /// Why connections were closed with an error (bad version, unknown ack id, ...).
    pub violations: Vec<String>,
    /// Answers cut short by [`Fault::Stall`].
    pub stalls: usize,
}

/// An open connection as the rest of the stand-in sees it.
struct Link {
    number: usize,
    inbox: mpsc::Sender<Input>,
    subscribed: bool,
}

struct State {
    generation: Generation,
    /// LOC 2.0's rule: change notifications go only to the first session it ever accepted.
    first_session_only: bool,
    location: GpsLocation,
    services: BTreeMap<ServiceType, ServiceInfo>,
    neighbors: Vec<NodeInfo>,
    links: Vec<Link>,
    fault: Option<Fault>,
    delay: Duration,
    kill: CancellationToken,
    seen: Seen,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    /// Runs `f` on the state and wakes everyone waiting for a change.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    /// The state, for reading (a panicked test task cannot hide what was seen).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a connection's answering task handles next.
enum Input {
    Frame(loc::Message),
    Bad(String),
    Closed,
    Push(ChangeType),
}

/// The node LOC announces for the profile server `id` listening on `primary` at 127.0.0.1: its
/// LOC node id is the network id (as in PS08 §1.5), at 1°N 2°E.
pub fn announcement(id: &[u8; 32], primary: u16) -> NodeInfo {
    NodeInfo {
        node_id: id.to_vec(),
        contact: Some(loc::NodeContact {
            ip_address: vec![127, 0, 0, 1],
            node_port: 1,
            client_port: 1,
        }),
        location: Some(GpsLocation {
            latitude: 1_000_000,
            longitude: 2_000_000,
        }),
        services: vec![ServiceInfo {
            r#type: ServiceType::profile_name(),
            port: u32::from(primary),
            service_data: id.to_vec(),
        }],
    }
}

/// A running LOC stand-in; dropping it stops it.
pub struct LocStandIn {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl LocStandIn {
    /// Starts listening on an ephemeral loopback port, located at the appendix A seed node.
    pub async fn start(generation: Generation) -> LocStandIn {
        let state = State {
            generation,
            first_session_only: false,
            location: SEED_LOCATION,
            services: BTreeMap::new(),
            neighbors: Vec::new(),
            links: Vec::new(),
            fault: None,
            delay: Duration::ZERO,
            kill: CancellationToken::new(),
            seen: Seen::default(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind LOC");
        let port = listener.local_addr().expect("LOC address").port();
        let accept = Some(tokio::spawn(accept(listener, Arc::clone(&shared))));
        LocStandIn {
            shared,
            port,
            accept,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `[loc]` table that points a server here, reconnecting after 1 s.
    pub fn config(&self, service_type: &str) -> String {
        format!(
            "[loc]\naddress = \"127.0.0.1:{}\"\nreconnect_secs = 1\nservice_type = {service_type:?}\n",
            self.port
        )
    }

    /// Stops listening and closes every connection: the server sees LOC go down, and its
    /// reconnects are refused.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // Waiting for the task frees the port for a restart.
            let _ = accept.await;
        }
        self.kill_connections();
    }

    /// Listens again on the same port after [`LocStandIn::stop`].
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind LOC again");
        self.accept = Some(tokio::spawn(accept(listener, Arc::clone(&self.shared))));
    }

    /// Closes every open connection, keeping the listener.
    pub fn kill_connections(&self) {
        self.shared.update(|state| {
            std::mem::take(&mut state.kill).cancel();
        });
    }

    /// Applies `fault` to the next request answered; [`Fault::Stall`] also to the next push,
    /// whichever comes first.
    pub fn fail_next(&self, fault: Fault) {
        self.shared.update(|state| state.fault = Some(fault));
    }

    /// Waits `delay` before every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.update(|state| state.delay = delay);
    }

    /// From now on notifications go only to the first session this stand-in ever accepted, as
    /// iop-locnetd 2.0.0-a1 does (its AddListener keys sessions before their id is set).
    pub fn notify_first_session_only(&self) {
        self.shared.update(|state| state.first_session_only = true);
    }

    /// Adds a neighbour and pushes it as `updated_node_info`, as the real LOC does for new ones.
    pub async fn add_neighbor(&self, node: NodeInfo) {
        self.update_neighbor(node).await;
    }

    /// Replaces (or adds) the neighbour with the same node id and pushes `updated_node_info`.
    pub async fn update_neighbor(&self, node: NodeInfo) {
        let change = ChangeType::UpdatedNodeInfo(node.clone());
        let inboxes = self.shared.update(|state| {
            state.neighbors.retain(|n| n.node_id != node.node_id);
            state.neighbors.push(node);
            state.subscribed_inboxes()
        });
        push(inboxes, change).await;
    }

    /// Removes a neighbour and pushes `removed_node_id`.
    pub async fn remove_neighbor(&self, node_id: &[u8]) {
        let inboxes = self.shared.update(|state| {
            state.neighbors.retain(|n| n.node_id != node_id);
            state.subscribed_inboxes()
        });
        push(inboxes, ChangeType::RemovedNodeId(node_id.to_vec())).await;
    }

    /// A copy of what the stand-in saw so far.
    pub fn seen(&self) -> Seen {
        self.shared.lock().seen.clone()
    }

    /// Waits until `done` holds for what the stand-in saw, failing the test after [`LOC_WAIT`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
        let what = format!("LOC {what}");
        wait_for_state(&self.shared.changed, LOC_WAIT, &what, || self.seen(), done).await
    }

    /// Waits for the `count`th attach: a registration and a keep-alive subscription.
    pub async fn wait_attached(&self, count: usize) -> Seen {
        self.wait_for("attach", |seen| {
            seen.subscriptions >= count && seen.registrations.len() >= count
        })
        .await
    }
}

impl Drop for LocStandIn {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.kill_connections();
    }
}

impl State {
    fn subscribed_inboxes(&self) -> Vec<mpsc::Sender<Input>> {
        let first_only = self.first_session_only;
        self.links
            .iter()
            .filter(|link| link.subscribed && (!first_only || link.number == 1))
            .map(|link| link.inbox.clone())
            .collect()
    }

    /// What LOC keeps of a registered type: each generation reads the other's as its default.
    fn stored_type(&self, sent: &ServiceType) -> ServiceType {
        match (self.generation, sent) {
            (Generation::V2, ServiceType::Code(_)) => ServiceType::default(),
            (Generation::V1, ServiceType::Name(_)) => ServiceType::Code(0),
            _ => sent.clone(),
        }
    }

    /// The stand-in's own NodeInfo with the registered services (field 32).
    fn own_node(&self) -> NodeInfo {
        let services = self.services.values().cloned().collect();
        loc_node("StandInLoc", 16980, self.location, services)
    }
}

async fn push(inboxes: Vec<mpsc::Sender<Input>>, change: ChangeType) {
    for inbox in inboxes {
        // A connection closing meanwhile takes no more pushes.
        let _ = inbox.send(Input::Push(change.clone())).await;
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((socket, _)) = listener.accept().await {
        // Without it, Nagle holds a push back until the previous frame is acked, tens of real
        // milliseconds that a paused test clock turns into minutes.
        socket.set_nodelay(true).expect("nodelay");
        let (inbox, input) = mpsc::channel(INBOX);
        let (number, kill) = shared.update(|state| {
            state.seen.connections += 1;
            let number = state.seen.connections;
            state.links.push(Link {
                number,
                inbox: inbox.clone(),
                subscribed: false,
            });
            (number, state.kill.clone())
        });
        tokio::spawn(serve(
            Arc::clone(&shared),
            socket,
            number,
            inbox,
            input,
            kill,
        ));
    }
}

/// One connection's answering task; the reading task feeds its inbox.
async fn serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    number: usize,
    inbox: mpsc::Sender<Input>,
    mut input: mpsc::Receiver<Input>,
    kill: CancellationToken,
) {
    let (reader, mut writer) = socket.into_split();
    let reading = tokio::spawn(read_frames(reader, inbox));
    let mut connection = Connection {
        number,
        next_push: 1,
        pushed: HashSet::new(),
    };
    loop {
        let next = tokio::select! {
            () = kill.cancelled() => break,
            next = input.recv() => next,
        };
        let Some(next) = next else { break };
        let (bytes, close) = connection.handle(&shared, next).await;
        if writer.write_all(&bytes).await.is_err() || close {
            break;
        }
    }
    reading.abort();
    shared.update(|state| state.links.retain(|link| link.number != number));
}

/// Feeds the frames of one connection to its inbox until it closes or sends nonsense.
async fn read_frames(mut reader: OwnedReadHalf, inbox: mpsc::Sender<Input>) {
    loop {
        let input = read_frame(&mut reader).await;
        let last = !matches!(input, Input::Frame(_));
        if inbox.send(input).await.is_err() || last {
            return;
        }
    }
}

/// Reads a frame as LOC does: 5 bytes, the length from bytes 1..5 (byte 0 unchecked), ≤ 1 MiB.
async fn read_frame(reader: &mut OwnedReadHalf) -> Input {
    let mut header = [0u8; frame::HEADER_LEN];
    if reader.read_exact(&mut header).await.is_err() {
        return Input::Closed;
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > frame::MAX_BODY_LEN {
        return Input::Closed;
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).await.is_err() {
        return Input::Closed;
    }
    match frame::decode_body(&body) {
        Ok(message) => Input::Frame(message),
        Err(error) => Input::Bad(error.to_string()),
    }
}

/// `bytes`, or only their first half when `stall` (counted in [`Seen::stalls`]).
fn stalled(shared: &Shared, mut bytes: Vec<u8>, stall: bool) -> Vec<u8> {
    if stall {
        shared.update(|state| state.seen.stalls += 1);
        bytes.truncate(bytes.len() / 2);
    }
    bytes
}

/// One connection's own numbering of pushes (from 1) and the pushes not acked yet.
struct Connection {
    number: usize,
    next_push: u32,
    pushed: HashSet<u32>,
}

/// An answer that ends the connection after it is sent.
type Refusal = (Status, String);

impl Connection {
    /// The bytes to write for `input`, and whether to close afterwards.
    async fn handle(&mut self, shared: &Shared, input: Input) -> (Vec<u8>, bool) {
        let message = match input {
            Input::Closed => return (Vec::new(), true),
            Input::Bad(error) => {
                return self.refuse(shared, 0, (Status::ErrorProtocolViolation, error));
            }
            Input::Push(change) => {
                let id = self.next_push;
                self.next_push += 1;
                self.pushed.insert(id);
                let bytes = frame::encode(&loc_notification(id, change));
                let stall = shared.update(|state| state.fault.take_if(|f| *f == Fault::Stall));
                return (stalled(shared, bytes, stall.is_some()), false);
            }
            Input::Frame(message) => message,
        };
        let id = message.id;
        match message.message_type {
            Some(MessageType::Response(response)) => self.ack(shared, id, response),
            Some(MessageType::Request(request)) => {
                let (delay, fault) = shared.update(|state| (state.delay, state.fault.take()));
                tokio::time::sleep(delay).await;
                let answer = shared.update(|state| self.answer(state, request));
                match (answer, fault) {
                    (Err(refusal), _) => self.refuse(shared, id, refusal),
                    (Ok(_), Some(Fault::Error(status))) => {
                        self.refuse(shared, id, (status, "injected".into()))
                    }
                    (Ok(_), Some(Fault::Garbage)) => (GARBAGE.to_vec(), false),
                    (Ok(body), fault) => {
                        let bytes = frame::encode(&loc_response(id, body));
                        (stalled(shared, bytes, fault == Some(Fault::Stall)), false)
                    }
                }
            }
            None => self.refuse(
                shared,
                id,
                (Status::ErrorProtocolViolation, "empty message".into()),
            ),
        }
    }

    /// Records an ack; one with an id never pushed on this connection is a violation.
    fn ack(&mut self, shared: &Shared, id: u32, response: loc::Response) -> (Vec<u8>, bool) {
        if !self.pushed.remove(&id) {
            return self.refuse(
                shared,
                id,
                (
                    Status::ErrorProtocolViolation,
                    format!("ack {id} of nothing"),
                ),
            );
        }
        let body = match response.response_type {
            Some(loc::response::ResponseType::LocalService(local)) => {
                local.local_service_response_type
            }
            _ => None,
        };
        let connection = self.number;
        shared.update(|state| {
            state.seen.acks.push(Ack {
                connection,
                id,
                body,
            });
        });
        (Vec::new(), false)
    }

    fn refuse(&self, shared: &Shared, id: u32, (status, details): Refusal) -> (Vec<u8>, bool) {
        let note = format!("connection {}: {status:?}: {details}", self.number);
        shared.update(|state| state.seen.violations.push(note));
        (frame::encode(&loc_error(id, status, &details)), true)
    }

    /// The body answering `request` (loc-can.md §1.8 items 2–5).
    fn answer(&self, state: &mut State, request: loc::Request) -> Result<LocalResponse, Refusal> {
        let violation = |what: &str| Err((Status::ErrorProtocolViolation, what.to_string()));
        if request.version.first() != Some(&1) {
            return Err((Status::ErrorUnsupported, "unsupported version".into()));
        }
        let Some(loc::request::RequestType::LocalService(local)) = request.request_type else {
            return violation("not a local-service request");
        };
        Ok(match local.local_service_request_type {
            Some(LocalRequest::RegisterService(register)) => {
                let service = register.service.unwrap_or_default();
                state.seen.registrations.push(service.clone());
                let stored = state.stored_type(&service.r#type);
                state.services.insert(
                    stored.clone(),
                    ServiceInfo {
                        r#type: stored,
                        ..service
                    },
                );
                LocalResponse::RegisterService(loc::RegisterServiceResponse {
                    location: Some(state.location),
                })
            }
            Some(LocalRequest::DeregisterService(deregister)) => {
                state
                    .seen
                    .deregistrations
                    .push(deregister.service_type.clone());
                let stored = state.stored_type(&deregister.service_type);
                state.services.remove(&stored);
                LocalResponse::DeregisterService(loc::DeregisterServiceResponse {})
            }
            Some(LocalRequest::GetNeighbourNodes(get)) => {
                let link = state
                    .links
                    .iter_mut()
                    .find(|link| link.number == self.number);
                if let Some(link) =
                    link.filter(|link| get.keep_alive_and_send_updates && !link.subscribed)
                {
                    link.subscribed = true;
                    state.seen.subscriptions += 1;
                }
                LocalResponse::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceResponse {
                    nodes: state.neighbors.clone(),
                })
            }
            Some(LocalRequest::GetNodeInfo(_)) if state.generation == Generation::V2 => {
                LocalResponse::GetNodeInfo(loc::GetNodeInfoResponse {
                    node_info: Some(state.own_node()),
                })
            }
            Some(LocalRequest::GetNodeInfo(_)) => return violation("unknown operation"),
            Some(LocalRequest::NeighbourhoodChanged(_)) => {
                return violation("notifications go to clients");
            }
            None => return violation("empty local-service request"),
        })
    }
}
