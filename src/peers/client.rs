//! An outgoing connection to another profile server: the primary port (ListRoles) or its
//! srNeighbor port over TLS, with the conversation that proves both identities (spec §3,
//! §5.7 A.7 and B.2).
//!
//! Full duplex: the other server may send its own requests while ours is outstanding, so a
//! message is told a request or a response by its oneof, never by its id. Every read has a
//! timeout and reads the 5-byte header before allocating its body.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::crypto::{NetworkId, ServerKey, random_bytes, verify};
use crate::net::tls;
use crate::role::Role;
use crate::wire::ps::{
    self, conversation_request, conversation_response, message, response, single_request,
    single_response,
};
use crate::wire::{Status, VERSION_1_0_0, decode_cost, frame, request};

/// Spec §6: the longest wait for one message from another server (C#: 60 s).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait for a TCP connection and its TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most memory one message from another server may take once decoded, beyond its own bytes:
/// a full batch of shared profiles needs about a tenth of it.
const MAX_DECODE_EXTRA: usize = 8 * 1024 * 1024;
/// Requests of the other server kept while we wait for the answer to ours.
const MAX_QUEUED_REQUESTS: usize = 4;

/// Why talking to another server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerError {
    /// It could not be reached, or the connection broke.
    #[error("connection failed: {0}")]
    Io(String),
    /// It did not answer in time.
    #[error("no answer in time")]
    Timeout,
    /// It sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// It answered with an error status.
    #[error("answered {0:?}")]
    Status(Status),
    /// It is not the server we expected (its key does not hash to the expected id).
    #[error("unexpected identity")]
    WrongIdentity,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What a TLS connection negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version (`TLSv1_3`).
    pub version: String,
    /// The cipher suite (`TLS13_CHACHA20_POLY1305_SHA256`).
    pub cipher: String,
}

/// Longest wait for a polite close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One connection to another server.
pub(crate) struct PeerClient {
    stream: Box<dyn Io>,
    /// What TLS negotiated; `None` on a plain connection.
    tls: Option<TlsInfo>,
    next_id: u32,
    /// Requests the other server sent while we waited for an answer.
    queued: VecDeque<(u32, ps::Request)>,
}

impl PeerClient {
    /// Connects to `address`, over TLS for every role but primary.
    pub(crate) async fn connect(address: SocketAddr, role: Role) -> Result<PeerClient, PeerError> {
        PeerClient::connect_with(address, role.is_tls()).await
    }

    /// Connects to `address`, over TLS when `use_tls`.
    pub(crate) async fn connect_with(
        address: SocketAddr,
        use_tls: bool,
    ) -> Result<PeerClient, PeerError> {
        let io = |e: std::io::Error| PeerError::Io(e.to_string());
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| PeerError::Timeout)?
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut tls_info = None;
        let stream: Box<dyn Io> = if use_tls {
            let config = tls::client_config().map_err(|e| PeerError::Io(e.to_string()))?;
            let connector = TlsConnector::from(config);
            let handshake = connector.connect(tls::any_server_name(), tcp);
            let stream = timeout(CONNECT_TIMEOUT, handshake)
                .await
                .map_err(|_| PeerError::Timeout)?
                .map_err(|e| PeerError::Io(format!("TLS handshake: {e}")))?;
            let session = stream.get_ref().1;
            tls_info = Some(TlsInfo {
                version: session
                    .protocol_version()
                    .map_or_else(String::new, |v| format!("{v:?}")),
                cipher: session
                    .negotiated_cipher_suite()
                    .map_or_else(String::new, |c| format!("{:?}", c.suite())),
            });
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        Ok(PeerClient {
            stream,
            tls: tls_info,
            next_id: 1,
            queued: VecDeque::new(),
        })
    }

    /// Sends a single request and waits for its answer; an error status is an error.
    pub(crate) async fn single(
        &mut self,
        body: single_request::RequestType,
    ) -> Result<single_response::ResponseType, PeerError> {
        let id = self.take_id();
        let answer = self.call(request::single(id, body)).await?;
        match answer.conversation_type {
            Some(response::ConversationType::SingleResponse(single)) => single
                .response_type
                .ok_or(PeerError::Protocol("empty single response")),
            _ => Err(PeerError::Protocol("not a single response")),
        }
    }

    /// Sends a conversation request signed with `signature` and waits for its answer.
    pub(crate) async fn conversation(
        &mut self,
        signature: Vec<u8>,
        body: conversation_request::RequestType,
    ) -> Result<ps::ConversationResponse, PeerError> {
        let id = self.take_id();
        let answer = self
            .call(request::conversation(id, signature, body))
            .await?;
        match answer.conversation_type {
            Some(response::ConversationType::ConversationResponse(conversation)) => {
                Ok(conversation)
            }
            _ => Err(PeerError::Protocol("not a conversation response")),
        }
    }

    /// What TLS negotiated; `None` on a plain connection.
    pub(crate) fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Closes the connection politely (TLS close_notify, then FIN), waiting a moment at most.
    pub(crate) async fn close(mut self) {
        let _ = timeout(CLOSE_WAIT, self.stream.shutdown()).await;
    }

    /// StartConversation and VerifyIdentity with our key; the other server must prove it owns
    /// a key whose SHA-256 is `expected` (spec §5.7 A.7, B.2).
    pub(crate) async fn verify(
        &mut self,
        key: &ServerKey,
        expected: NetworkId,
    ) -> Result<(), PeerError> {
        let (network_id, challenge) = self.start_conversation(key).await?;
        if network_id != expected {
            return Err(PeerError::WrongIdentity);
        }
        let verify_request = ps::VerifyIdentityRequest { challenge };
        let signature = key.sign(&verify_request.encode_to_vec());
        let body = conversation_request::RequestType::VerifyIdentity(verify_request);
        self.conversation(signature, body).await.map(drop)
    }

    /// StartConversation with our key: the other server must sign our challenge with the key
    /// it presents. Returns its network id and its challenge for us.
    pub(crate) async fn start_conversation(
        &mut self,
        key: &ServerKey,
    ) -> Result<(NetworkId, Vec<u8>), PeerError> {
        let client_challenge: [u8; 32] = random_bytes();
        let start = ps::StartConversationRequest {
            supported_versions: vec![VERSION_1_0_0.to_vec()],
            public_key: key.public_key().to_vec(),
            client_challenge: client_challenge.to_vec(),
        };
        let answer = self
            .conversation(Vec::new(), conversation_request::RequestType::Start(start))
            .await?;
        let Some(conversation_response::ResponseType::Start(started)) = answer.response_type else {
            return Err(PeerError::Protocol("not a StartConversation response"));
        };
        let proves = started.client_challenge == client_challenge
            && verify(&started.public_key, &client_challenge, &answer.signature);
        if !proves {
            return Err(PeerError::WrongIdentity);
        }
        Ok((NetworkId::of_key(&started.public_key), started.challenge))
    }

    /// The next request the other server sends on this connection.
    pub(crate) async fn next_request(&mut self) -> Result<(u32, ps::Request), PeerError> {
        if let Some(queued) = self.queued.pop_front() {
            return Ok(queued);
        }
        match self.read().await? {
            Incoming::Request(id, request) => Ok((id, request)),
            Incoming::Response(..) => Err(PeerError::Protocol("a response to nothing")),
        }
    }

    /// Answers the other server's request `id` with a conversation response.
    pub(crate) async fn answer(
        &mut self,
        id: u32,
        outcome: Result<conversation_response::ResponseType, (Status, String)>,
    ) -> Result<(), PeerError> {
        let message = match outcome {
            Ok(body) => crate::wire::response::conversation(id, Vec::new(), body),
            Err((status, details)) => crate::wire::response::error(id, status, &details),
        };
        self.write(&message).await
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Sends `message` and reads until its answer; OK answers only.
    async fn call(&mut self, message: ps::Message) -> Result<ps::Response, PeerError> {
        let id = message.id;
        self.write(&message).await?;
        loop {
            match self.read().await? {
                Incoming::Response(answer_id, answer) if answer_id == id => {
                    let status = Status::try_from(answer.status).unwrap_or(Status::ErrorInternal);
                    return if status == Status::Ok {
                        Ok(answer)
                    } else {
                        Err(PeerError::Status(status))
                    };
                }
                Incoming::Response(..) => return Err(PeerError::Protocol("an unexpected answer")),
                Incoming::Request(request_id, request) => {
                    if self.queued.len() == MAX_QUEUED_REQUESTS {
                        return Err(PeerError::Protocol("too many requests while we wait"));
                    }
                    self.queued.push_back((request_id, request));
                }
            }
        }
    }

    async fn write(&mut self, message: &ps::Message) -> Result<(), PeerError> {
        let bytes = frame::encode(message);
        let write = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        };
        timeout(READ_TIMEOUT, write)
            .await
            .map_err(|_| PeerError::Timeout)?
            .map_err(|e| PeerError::Io(e.to_string()))
    }

    /// Reads one whole message: header first, the body only once its length was checked.
    async fn read(&mut self) -> Result<Incoming, PeerError> {
        let read = async {
            let mut header = [0; frame::HEADER_LEN];
            self.stream
                .read_exact(&mut header)
                .await
                .map_err(io_error)?;
            let len = frame::body_len(&header).map_err(|_| PeerError::Protocol("bad frame"))?;
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body).await.map_err(io_error)?;
            if decode_cost::repeated_cost(&body) > MAX_DECODE_EXTRA {
                return Err(PeerError::Protocol("message too costly to decode"));
            }
            frame::decode_body::<ps::Message>(&body).map_err(|_| PeerError::Protocol("bad body"))
        };
        let message = timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| PeerError::Timeout)??;
        match message.message_type {
            Some(message::MessageType::Request(request)) => {
                Ok(Incoming::Request(message.id, request))
            }
            Some(message::MessageType::Response(response)) => {
                Ok(Incoming::Response(message.id, response))
            }
            None => Err(PeerError::Protocol("an empty message")),
        }
    }
}

#[expect(clippy::needless_pass_by_value, reason = "the shape `map_err` takes")]
fn io_error(error: std::io::Error) -> PeerError {
    PeerError::Io(error.to_string())
}

enum Incoming {
    Request(u32, ps::Request),
    Response(u32, ps::Response),
}

/// The srNeighbor port the server at `ip` reports on its primary port (spec §5.7 A.7).
pub(crate) async fn sr_neighbor_port(ip: IpAddr, primary_port: u16) -> Result<u16, PeerError> {
    let mut client = PeerClient::connect(SocketAddr::new(ip, primary_port), Role::Primary).await?;
    let answer = client
        .single(single_request::RequestType::ListRoles(
            ps::ListRolesRequest {},
        ))
        .await?;
    let single_response::ResponseType::ListRoles(roles) = answer else {
        return Err(PeerError::Protocol("not a ListRoles response"));
    };
    roles
        .roles
        .iter()
        .find(|r| r.role == Role::SrNeighbor.wire_value())
        .and_then(|r| u16::try_from(r.port).ok())
        .filter(|&port| port != 0)
        .ok_or(PeerError::Protocol("no srNeighbor port"))
}
