//! A protocol client over plain TCP or TLS: framing, message ids, conversations and signing.

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use iop_profile_server::crypto::{random_bytes, sha256, verify};
use iop_profile_server::net::tls;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as ConvReq,
    conversation_response::ResponseType as ConvResp, single_request::RequestType as SingleReq,
};
use iop_profile_server::wire::{Status, frame, request};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Longest wait for an answer the server must give.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An Ed25519 identity used by a test client.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// The identity's key as the server's key type, for signing what the server's code signs
    /// (IPNS records).
    pub fn as_server_key(&self) -> iop_profile_server::crypto::ServerKey {
        iop_profile_server::crypto::ServerKey::from_seed(&self.key.to_bytes())
    }

    /// A fresh random identity.
    pub fn random() -> Identity {
        Identity {
            key: SigningKey::from_bytes(&random_bytes()),
        }
    }

    /// The raw public key (K in the test specs).
    pub fn public_key(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }

    /// SHA-256 of the public key.
    pub fn network_id(&self) -> Vec<u8> {
        sha256(&self.public_key()).to_vec()
    }

    /// Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }
}

/// One connection to the server.
pub struct Client {
    stream: Box<dyn Stream>,
    /// The identity this client speaks for.
    pub identity: Identity,
    /// The server challenge (SCH) from the last successful StartConversation.
    pub server_challenge: Vec<u8>,
    /// The server public key from the last successful StartConversation.
    pub server_key: Vec<u8>,
}

impl Client {
    /// Opens a plain TCP connection to `port` on loopback.
    pub async fn plain(port: u16) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Client::over(Box::new(tcp))
    }

    /// Opens a TLS connection to `port` on loopback, accepting the self-signed certificate.
    pub async fn tls(port: u16) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let connector = TlsConnector::from(tls::client_config().expect("client TLS config"));
        let stream = timeout(
            ANSWER_TIMEOUT,
            connector.connect(tls::any_server_name(), tcp),
        )
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
        Client::over(Box::new(stream))
    }

    /// Wraps an already connected TCP socket without TLS (for raw-socket tests).
    pub fn over_tcp(tcp: TcpStream) -> Client {
        Client::over(Box::new(tcp))
    }

    fn over(stream: Box<dyn Stream>) -> Client {
        Client {
            stream,
            identity: Identity::random(),
            server_challenge: Vec::new(),
            server_key: Vec::new(),
        }
    }

    /// Writes raw bytes; errors are returned, since some tests expect them.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes one message as a frame.
    pub async fn send(&mut self, message: &ps::Message) -> std::io::Result<()> {
        self.send_raw(&frame::encode(message)).await
    }

    /// Reads one message, failing the test if none arrives in time.
    pub async fn receive(&mut self) -> ps::Message {
        self.receive_within(ANSWER_TIMEOUT).await
    }

    /// Reads one message, failing the test if none arrives within `window`.
    pub async fn receive_within(&mut self, window: Duration) -> ps::Message {
        timeout(window, self.read_message())
            .await
            .expect("a message arrives in time")
            .expect("a well-formed message")
    }

    /// Reads the next message, or `None` once the server closed the connection.
    pub async fn receive_or_closed(&mut self) -> Option<ps::Message> {
        timeout(ANSWER_TIMEOUT, self.read_message())
            .await
            .expect("message or close in time")
            .ok()
    }

    async fn read_message(&mut self) -> std::io::Result<ps::Message> {
        read_message(&mut self.stream).await
    }

    /// Splits the connection so one task can read while another writes.
    pub fn split(self) -> (ClientReader, ClientWriter) {
        let (reader, writer) = tokio::io::split(self.stream);
        (
            ClientReader { stream: reader },
            ClientWriter { stream: writer },
        )
    }

    /// Sends a request and returns the response, checking that it echoes the id.
    pub async fn call(&mut self, message: &ps::Message) -> ps::Response {
        self.send(message).await.expect("send request");
        let answer = self.receive().await;
        assert_eq!(answer.id, message.id, "response must echo the request id");
        into_response(answer)
    }

    /// Sends a single request with version 1.0.0.
    pub async fn single(&mut self, id: u32, body: SingleReq) -> ps::Response {
        self.call(&request::single(id, body)).await
    }

    /// Sends a conversation request with `signature`.
    pub async fn conversation(
        &mut self,
        id: u32,
        signature: Vec<u8>,
        body: ConvReq,
    ) -> ps::Response {
        self.call(&request::conversation(id, signature, body)).await
    }

    /// Ping with `payload`.
    pub async fn ping(&mut self, id: u32, payload: &[u8]) -> ps::Response {
        self.single(
            id,
            SingleReq::Ping(ps::PingRequest {
                payload: payload.to_vec(),
            }),
        )
        .await
    }

    /// SC(n): StartConversation with K and 1.0.0, checking the server's signature over CC.
    pub async fn start_conversation(&mut self, id: u32) -> ps::StartConversationResponse {
        let client_challenge: [u8; 32] = random_bytes();
        let response = self
            .conversation(
                id,
                Vec::new(),
                ConvReq::Start(ps::StartConversationRequest {
                    supported_versions: vec![vec![1, 0, 0]],
                    public_key: self.identity.public_key(),
                    client_challenge: client_challenge.to_vec(),
                }),
            )
            .await;
        assert_eq!(
            status(&response),
            Status::Ok,
            "StartConversation: {}",
            response.details
        );
        let (signature, ConvResp::Start(start)) = conversation_body(response) else {
            panic!("StartConversation answered with another body");
        };
        assert_eq!(start.client_challenge, client_challenge);
        assert!(
            verify(&start.public_key, &client_challenge, &signature),
            "server signature"
        );
        self.server_challenge.clone_from(&start.challenge);
        self.server_key.clone_from(&start.public_key);
        start
    }

    /// VI(n): VerifyIdentity with SCH, signed by the identity.
    pub async fn verify_identity(&mut self, id: u32) -> ps::Response {
        let request = ps::VerifyIdentityRequest {
            challenge: self.server_challenge.clone(),
        };
        let signature = self.identity.sign(&request.encode_to_vec());
        self.conversation(id, signature, ConvReq::VerifyIdentity(request))
            .await
    }

    /// CI(n): CheckIn with SCH, signed by the identity.
    pub async fn check_in(&mut self, id: u32) -> ps::Response {
        let request = ps::CheckInRequest {
            challenge: self.server_challenge.clone(),
        };
        let signature = self.identity.sign(&request.encode_to_vec());
        self.conversation(id, signature, ConvReq::CheckIn(request))
            .await
    }

    /// REG(n): RegisterHosting for the identity with type "Test Type", start time now.
    pub async fn register_hosting(&mut self, id: u32) -> ps::Response {
        self.register_hosting_as(id, "Test Type").await
    }

    /// Waits up to `within` for the server to close the connection. Fails the test if a message
    /// arrives instead; returns false if the connection is still open after `within`.
    pub async fn is_closed_within(&mut self, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        match timeout(within, self.stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) => panic!("expected the connection to be closed, but data arrived"),
            Err(_) => false,
        }
    }

    /// PS00 "closed": sends `bytes` and then requires the connection to be closed without any
    /// answer (the write may fail, or the read ends).
    pub async fn assert_closed_after_sending(&mut self, bytes: &[u8]) {
        if self.send_raw(bytes).await.is_err() {
            return;
        }
        assert!(
            self.is_closed_within(ANSWER_TIMEOUT).await,
            "connection must be closed"
        );
    }
}

/// Reads one framed message from `stream`.
async fn read_message<R: AsyncRead + Unpin>(stream: &mut R) -> std::io::Result<ps::Message> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let len = frame::body_len(&header).map_err(std::io::Error::other)?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    frame::decode_body(&body).map_err(std::io::Error::other)
}

/// The reading half of a split [`Client`].
pub struct ClientReader {
    stream: tokio::io::ReadHalf<Box<dyn Stream>>,
}

impl ClientReader {
    /// Reads one message, failing the test if none arrives in time.
    pub async fn receive(&mut self) -> ps::Message {
        timeout(ANSWER_TIMEOUT, read_message(&mut self.stream))
            .await
            .expect("a message arrives in time")
            .expect("a well-formed message")
    }
}

/// The writing half of a split [`Client`].
pub struct ClientWriter {
    stream: tokio::io::WriteHalf<Box<dyn Stream>>,
}

impl ClientWriter {
    /// Writes one message as a frame.
    pub async fn send(&mut self, message: &ps::Message) -> std::io::Result<()> {
        self.stream.write_all(&frame::encode(message)).await?;
        self.stream.flush().await
    }
}

/// The `Response` inside a message, failing the test if it is a request.
pub fn into_response(message: ps::Message) -> ps::Response {
    match message.message_type {
        Some(ps::message::MessageType::Response(response)) => response,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The status of a response.
pub fn status(response: &ps::Response) -> Status {
    Status::try_from(response.status).expect("known status")
}

/// The single-response body of a successful response.
pub fn single_body(response: ps::Response) -> ps::single_response::ResponseType {
    match response.conversation_type {
        Some(ps::response::ConversationType::SingleResponse(single)) => {
            single.response_type.expect("single response has a body")
        }
        other => panic!("expected a single response, got {other:?}"),
    }
}

/// The signature and body of a successful conversation response.
pub fn conversation_body(response: ps::Response) -> (Vec<u8>, ConvResp) {
    match response.conversation_type {
        Some(ps::response::ConversationType::ConversationResponse(conversation)) => (
            conversation.signature,
            conversation
                .response_type
                .expect("conversation response has a body"),
        ),
        other => panic!("expected a conversation response, got {other:?}"),
    }
}

/// The tester's clock in ms since the epoch.
pub fn now_ms() -> i64 {
    iop_profile_server::clock::unix_ms()
}

/// SHA-256 of the ASCII bytes "test" (the specs' SHA256("test")).
pub fn sha256_test() -> Vec<u8> {
    sha256(b"test").to_vec()
}

/// Asserts a response's status, showing its details on failure.
#[track_caller]
pub fn assert_status(response: &ps::Response, expected: Status) {
    assert_eq!(
        status(response),
        expected,
        "details: {:?}",
        response.details
    );
}

/// Asserts ERROR_INVALID_VALUE with exactly `details`.
#[track_caller]
pub fn assert_invalid(response: &ps::Response, details: &str) {
    assert_eq!(status(response), Status::ErrorInvalidValue);
    assert_eq!(response.details, details);
}
