//! The simulated profile server S (PS08 §1.4): a minimal listening profile server with a plain
//! primary port and a TLS srNeighbor port. It answers what the SUT sends by the spec, records it
//! for the test script, and hands an initialisation connection to the script when the SUT is
//! the follower. The connecting side of a neighbour lives in `neighbour`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iop_profile_server::crypto::{random_bytes, sha256, verify};
use iop_profile_server::net::tls;
use iop_profile_server::role::Role;
use iop_profile_server::store::TlsMaterial;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv,
    conversation_response::ResponseType as ConvResp, single_request::RequestType as Single,
    single_response::ResponseType as SingleResp,
};
use iop_profile_server::wire::{Status, frame, request, response};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::client::{Identity, now_ms};
use super::neighbor::T_READ;

/// How often [`SimServer::wait_until`] looks at the log.
const POLL: Duration = Duration::from_millis(50);
/// Frames queued for writing on one connection of S.
const QUEUE: usize = 64;

/// One update request S received on srNeighbor.
#[derive(Clone, Debug)]
pub struct ReceivedUpdate {
    /// S's number of the connection it came on.
    pub connection: u64,
    /// Its items, in order.
    pub items: Vec<ps::SharedProfileUpdateItem>,
    /// What S answered.
    pub answer: Status,
}

/// What S recorded since the last drain.
#[derive(Clone, Debug, Default)]
pub struct SimLog {
    /// Every update request, in arrival order.
    pub updates: Vec<ReceivedUpdate>,
    /// The connection numbers of StopNeighborhoodUpdates requests.
    pub stops: Vec<u64>,
    /// Start requests from the SUT, when the SUT is the follower.
    pub starts: Vec<ps::StartNeighborhoodInitializationRequest>,
    /// Request kinds on the primary port, with their arrival times.
    pub primary: Vec<(Instant, &'static str)>,
    /// Checks the SUT failed on S's side; every drain requires none.
    pub failures: Vec<String>,
}

impl SimLog {
    /// Every update item, in arrival order.
    pub fn items(&self) -> Vec<ps::SharedProfileUpdateItem> {
        self.updates
            .iter()
            .flat_map(|update| update.items.iter().cloned())
            .collect()
    }

    /// Whether a ListRoles request reached the primary port.
    pub fn asked_roles(&self) -> bool {
        self.primary
            .iter()
            .any(|(_, request)| *request == "ListRoles")
    }
}

/// State shared by S's connection tasks.
struct Shared {
    key: Identity,
    sut_id: Vec<u8>,
    primary_port: u16,
    neighbor_port: u16,
    log: Mutex<SimLog>,
    rejecting: AtomicBool,
    connections: AtomicU64,
    handovers: mpsc::Sender<SimLink>,
}

impl Shared {
    fn record(&self, change: impl FnOnce(&mut SimLog)) {
        change(&mut self.log.lock().expect("log lock"));
    }

    fn fail(&self, what: String) {
        self.record(|log| log.failures.push(what));
    }
}

/// A running S; dropping it closes its ports and connections.
pub struct SimServer {
    /// BasePort: plain TCP, role primary.
    pub primary_port: u16,
    /// The srNeighbor port (TLS); the SUT must learn it through ListRoles.
    pub neighbor_port: u16,
    shared: Arc<Shared>,
    handovers: mpsc::Receiver<SimLink>,
    stop: CancellationToken,
}

impl Drop for SimServer {
    /// Stops S; a check S failed since the last drain fails the test here.
    fn drop(&mut self) {
        self.stop.cancel();
        if !std::thread::panicking() {
            self.drain();
        }
    }
}

impl SimServer {
    /// Starts S with `key` (N's key where the test also has N), serving the SUT with network id
    /// `sut_id`, on two fresh loopback ports.
    pub async fn start(key: Identity, sut_id: Vec<u8>) -> SimServer {
        let primary = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let neighbor = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (handover_tx, handovers) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            key,
            sut_id,
            primary_port: primary.local_addr().expect("address").port(),
            neighbor_port: neighbor.local_addr().expect("address").port(),
            log: Mutex::new(SimLog::default()),
            rejecting: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            handovers: handover_tx,
        });
        let stop = CancellationToken::new();
        let acceptor = TlsAcceptor::from(tls::server_config(&certificate()).expect("TLS config"));
        tokio::spawn(accept(primary, Arc::clone(&shared), stop.clone(), None));
        tokio::spawn(accept(
            neighbor,
            Arc::clone(&shared),
            stop.clone(),
            Some(acceptor),
        ));
        SimServer {
            primary_port: shared.primary_port,
            neighbor_port: shared.neighbor_port,
            shared,
            handovers,
            stop,
        }
    }

    /// "Drain": takes the log and clears it. S's own checks must all have passed.
    #[track_caller]
    pub fn drain(&self) -> SimLog {
        let log = std::mem::take(&mut *self.shared.log.lock().expect("log lock"));
        assert!(log.failures.is_empty(), "S: {:?}", log.failures);
        log
    }

    /// "Wait until": true as soon as `predicate` holds over the log, false after `window`.
    pub async fn wait_until(&self, window: Duration, predicate: impl Fn(&SimLog) -> bool) -> bool {
        let deadline = Instant::now() + window;
        loop {
            if predicate(&self.shared.log.lock().expect("log lock")) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(POLL).await;
        }
    }

    /// "Arm/disarm rejection": while armed, S answers update requests `ERROR_REJECTED`.
    pub fn set_rejecting(&self, on: bool) {
        self.shared.rejecting.store(on, Ordering::SeqCst);
    }

    /// The next initialisation connection the SUT opened as a follower, within `window`.
    pub async fn handover(&mut self, window: Duration) -> SimLink {
        timeout(window, self.handovers.recv())
            .await
            .expect("the SUT starts an initialisation in time")
            .expect("S is running")
    }
}

/// A self-signed certificate made at start (PS08 §1.1: any certificate will do).
fn certificate() -> TlsMaterial {
    let generated = rcgen::generate_simple_self_signed(vec!["simulated-profile-server".into()])
        .expect("certificate");
    TlsMaterial {
        cert_der: generated.cert.der().to_vec(),
        key_der: generated.signing_key.serialize_der(),
    }
}

/// Accepts connections until S stops; with an acceptor the port is TLS srNeighbor.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    acceptor: Option<TlsAcceptor>,
) {
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted.expect("accept").0,
        };
        // Without Nagle's delay, loopback answers arrive before tokio's paused clock jumps.
        tcp.set_nodelay(true).expect("nodelay");
        let (shared, stop) = (Arc::clone(&shared), stop.child_token());
        match acceptor.clone() {
            Some(acceptor) => tokio::spawn(serve_tls(tcp, acceptor, shared, stop)),
            None => tokio::spawn(serve(tcp, shared, stop, Port::Primary)),
        };
    }
}

async fn serve_tls(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    if let Ok(Ok(stream)) = timeout(T_READ, acceptor.accept(tcp)).await {
        serve(stream, shared, stop, Port::Neighbor).await;
    }
}

/// Which of S's ports a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Primary,
    Neighbor,
}

/// Reads and answers one connection in one task, which also writes what the script queues.
/// Reads are single `read_buf` calls, so the `select!` never loses bytes.
async fn serve<S>(mut stream: S, shared: Arc<Shared>, stop: CancellationToken, port: Port)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (out, mut queued) = mpsc::channel(QUEUE);
    let mut connection = Connection {
        number: shared.connections.fetch_add(1, Ordering::SeqCst),
        shared,
        out,
        port,
        conversation: Conversation::Fresh,
        link: None,
        stop: stop.clone(),
    };
    let mut received = Vec::new();
    loop {
        while let Some((message, used)) = connection.split(&received) {
            received.drain(..used);
            if let Some(answer) = connection.handle(message)
                && write(&mut stream, &answer).await.is_err()
            {
                return;
            }
        }
        let outgoing = tokio::select! {
            () = stop.cancelled() => return,
            outgoing = queued.recv() => outgoing,
            read = stream.read_buf(&mut received) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        // `connection.out` keeps the channel open, so `recv` never yields `None` here.
        if let Some(message) = outgoing
            && write(&mut stream, &message).await.is_err()
        {
            return;
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(
    stream: &mut W,
    message: &ps::Message,
) -> std::io::Result<()> {
    stream.write_all(&frame::encode(message)).await?;
    stream.flush().await
}

/// The conversation state of one connection to S.
enum Conversation {
    Fresh,
    Started { key: Vec<u8>, challenge: Vec<u8> },
    Verified,
}

/// One connection to S.
struct Connection {
    number: u64,
    shared: Arc<Shared>,
    out: mpsc::Sender<ps::Message>,
    port: Port,
    conversation: Conversation,
    /// Where the SUT's responses go once the connection belongs to the script.
    link: Option<mpsc::Sender<ps::Message>>,
    stop: CancellationToken,
}

impl Connection {
    /// The first whole frame of `received` and its length; a bad frame is a failure.
    fn split(&self, received: &[u8]) -> Option<(ps::Message, usize)> {
        frame::split(received).unwrap_or_else(|error| {
            self.shared.fail(format!("bad frame from the SUT: {error}"));
            self.stop.cancel();
            None
        })
    }

    /// Answers a request, or forwards a response to the script.
    fn handle(&mut self, message: ps::Message) -> Option<ps::Message> {
        let id = message.id;
        let answer = match message.message_type {
            Some(ps::message::MessageType::Response(_)) => {
                self.forward(message);
                return None;
            }
            Some(ps::message::MessageType::Request(ps::Request {
                conversation_type: Some(ps::request::ConversationType::SingleRequest(single)),
            })) => self.single(id, single),
            Some(ps::message::MessageType::Request(ps::Request {
                conversation_type:
                    Some(ps::request::ConversationType::ConversationRequest(conversation)),
            })) if self.port == Port::Neighbor => self.conversation(id, conversation),
            other => self.refuse(id, format!("unexpected message {other:?}")),
        };
        Some(answer)
    }

    /// A response from the SUT: it answers one of the script's requests.
    fn forward(&self, message: ps::Message) {
        let delivered = self
            .link
            .as_ref()
            .is_some_and(|link| link.try_send(message).is_ok());
        if !delivered {
            self.shared
                .fail(format!("unexpected response on connection {}", self.number));
        }
    }

    fn refuse(&self, id: u32, what: String) -> ps::Message {
        self.shared.fail(what);
        response::error(id, Status::ErrorUnsupported, "")
    }

    fn single(&self, id: u32, single: ps::SingleRequest) -> ps::Message {
        let version = single.version;
        let (name, body) = match single.request_type {
            Some(Single::Ping(ping)) => (
                "Ping",
                SingleResp::Ping(ps::PingResponse {
                    payload: ping.payload,
                    clock: now_ms(),
                }),
            ),
            Some(Single::ListRoles(_)) if self.port == Port::Primary => {
                ("ListRoles", SingleResp::ListRoles(self.roles()))
            }
            other => return self.refuse(id, format!("unexpected single request {other:?}")),
        };
        if self.port == Port::Primary {
            self.shared
                .record(|log| log.primary.push((Instant::now(), name)));
        }
        response::single(id, version, body)
    }

    fn roles(&self) -> ps::ListRolesResponse {
        let role = |role: Role, port: u16, is_tls: bool| ps::ServerRole {
            role: role.wire_value(),
            port: u32::from(port),
            is_tcp: true,
            is_tls,
        };
        ps::ListRolesResponse {
            roles: vec![
                role(Role::Primary, self.shared.primary_port, false),
                role(Role::SrNeighbor, self.shared.neighbor_port, true),
            ],
        }
    }

    fn conversation(&mut self, id: u32, request: ps::ConversationRequest) -> ps::Message {
        let signature = request.signature;
        match request.request_type {
            Some(Conv::Start(start)) => self.start_conversation(id, start),
            Some(Conv::VerifyIdentity(verify)) => self.verify_identity(id, &signature, &verify),
            Some(Conv::NeighborhoodSharedProfileUpdate(update)) => self.update(id, update),
            Some(Conv::StopNeighborhoodUpdates(_)) if self.verified() => {
                self.shared.record(|log| log.stops.push(self.number));
                let body =
                    ConvResp::StopNeighborhoodUpdates(ps::StopNeighborhoodUpdatesResponse {});
                response::conversation(id, Vec::new(), body)
            }
            Some(Conv::StartNeighborhoodInitialization(start)) if self.verified() => {
                self.hand_over(start);
                let body = ConvResp::StartNeighborhoodInitialization(
                    ps::StartNeighborhoodInitializationResponse {},
                );
                response::conversation(id, Vec::new(), body)
            }
            Some(Conv::FinishNeighborhoodInitialization(_)) => {
                self.shared.fail("the SUT sent S a Finish request".into());
                response::error(id, Status::ErrorRejected, "")
            }
            other => self.refuse(id, format!("unexpected conversation request {other:?}")),
        }
    }

    fn verified(&self) -> bool {
        matches!(self.conversation, Conversation::Verified)
    }

    /// S's key, 32 fresh challenge bytes, the client challenge echoed and signed.
    fn start_conversation(&mut self, id: u32, start: ps::StartConversationRequest) -> ps::Message {
        if start.client_challenge.len() != 32 || !start.supported_versions.contains(&vec![1, 0, 0])
        {
            self.shared.fail(format!("bad StartConversation {start:?}"));
            return response::error(id, Status::ErrorInvalidValue, "clientChallenge");
        }
        let challenge = random_bytes::<32>().to_vec();
        let body = ConvResp::Start(ps::StartConversationResponse {
            version: vec![1, 0, 0],
            public_key: self.shared.key.public_key(),
            challenge: challenge.clone(),
            client_challenge: start.client_challenge.clone(),
        });
        self.conversation = Conversation::Started {
            key: start.public_key,
            challenge,
        };
        response::conversation(id, self.shared.key.sign(&start.client_challenge), body)
    }

    /// Checks the echoed challenge, the signature and that the key is the SUT's.
    fn verify_identity(
        &mut self,
        id: u32,
        signature: &[u8],
        request: &ps::VerifyIdentityRequest,
    ) -> ps::Message {
        let valid = match &self.conversation {
            Conversation::Started { key, challenge } => {
                request.challenge == *challenge
                    && verify(key, &request.encode_to_vec(), signature)
                    && sha256(key).as_slice() == self.shared.sut_id
            }
            Conversation::Fresh | Conversation::Verified => false,
        };
        if !valid {
            self.shared
                .fail("VerifyIdentity from the SUT failed S's checks".into());
            return response::error(id, Status::ErrorInvalidSignature, "");
        }
        self.conversation = Conversation::Verified;
        let body = ConvResp::VerifyIdentity(ps::VerifyIdentityResponse {});
        response::conversation(id, Vec::new(), body)
    }

    /// Records the batch; answers OK, or REJECTED while rejection is armed.
    fn update(&self, id: u32, update: ps::NeighborhoodSharedProfileUpdateRequest) -> ps::Message {
        if !self.verified() {
            self.shared
                .fail("update request before VerifyIdentity".into());
            return response::error(id, Status::ErrorUnauthorized, "");
        }
        let answer = if self.shared.rejecting.load(Ordering::SeqCst) {
            Status::ErrorRejected
        } else {
            Status::Ok
        };
        self.shared.record(|log| {
            log.updates.push(ReceivedUpdate {
                connection: self.number,
                items: update.items,
                answer,
            });
        });
        if answer != Status::Ok {
            return response::error(id, answer, "");
        }
        let body = ConvResp::NeighborhoodSharedProfileUpdate(
            ps::NeighborhoodSharedProfileUpdateResponse {},
        );
        response::conversation(id, Vec::new(), body)
    }

    /// The SUT, as a follower, started an initialisation: the script takes the connection over.
    fn hand_over(&mut self, start: ps::StartNeighborhoodInitializationRequest) {
        let (link, responses) = mpsc::channel(QUEUE);
        self.link = Some(link);
        self.shared.record(|log| log.starts.push(start.clone()));
        let handed = SimLink {
            start,
            out: self.out.clone(),
            responses,
            next_id: 1,
            stop: self.stop.clone(),
        };
        if self.shared.handovers.try_send(handed).is_err() {
            self.shared.fail("no room to hand a connection over".into());
        }
    }
}

/// An initialisation connection of the SUT as a follower, handed to the test script, which sends
/// update batches and Finish with S's own ids while S goes on answering anything else.
pub struct SimLink {
    /// The SUT's Start request.
    pub start: ps::StartNeighborhoodInitializationRequest,
    out: mpsc::Sender<ps::Message>,
    responses: mpsc::Receiver<ps::Message>,
    next_id: u32,
    stop: CancellationToken,
}

impl SimLink {
    /// Sends a request with S's next id (from 1) and returns the SUT's response to it.
    pub async fn call(&mut self, body: Conv) -> ps::Response {
        let id = self.next_id;
        self.next_id += 1;
        let message = request::conversation(id, Vec::new(), body);
        self.out.send(message).await.expect("connection is open");
        let answer = timeout(T_READ, self.responses.recv())
            .await
            .expect("the SUT answers in time")
            .expect("connection is open");
        assert_eq!(answer.id, id, "the SUT answers S's request {id}");
        super::client::into_response(answer)
    }

    /// Closes the connection, if the SUT has not already done so.
    pub fn close(self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests;
