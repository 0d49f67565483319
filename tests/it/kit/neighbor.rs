//! The impersonated neighbour N (PS08 §1.3): a harness identity that pretends to be a profile
//! server. It only connects out to the SUT's srNeighbor port, and after an accepted Start it runs
//! the follower loop on that connection. The listening side of a neighbour lives in `simulated`.

use std::collections::VecDeque;
use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::frame::{self, MAX_FRAME_LEN};
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv,
    conversation_response::ResponseType as ConvResp, single_request::RequestType as Single,
};
use iop_profile_server::wire::{Status, request, response};

use super::client::{Client, Identity, assert_status, conversation_body, into_response};
use super::customer::Hosted;
use super::items::{Kind, kind, named_identity};
use super::server::Ports;

/// T_read: the longest wait for any single expected message (PS08 §2.2).
pub const T_READ: Duration = Duration::from_secs(30);

/// The address N claims: the SUT's own loopback, accepted in test mode (PS08 §1.3).
pub const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

/// ListRoles on the plain primary port `port`: the srNeighbor role it reports.
pub async fn neighbor_role(port: u16) -> ps::ServerRole {
    let mut client = Client::plain(port).await;
    let answer = client
        .single(1, Single::ListRoles(ps::ListRolesRequest {}))
        .await;
    assert_status(&answer, Status::Ok);
    let body = super::client::single_body(answer);
    let ps::single_response::ResponseType::ListRoles(list) = body else {
        panic!("ListRoles answered with another body");
    };
    list.roles
        .into_iter()
        .find(|role| role.role == Role::SrNeighbor.wire_value())
        .expect("SR_NEIGHBOR is listed")
}

/// PS08 step "ListRoles": the SUT's primary port reports its srNeighbor port, with TLS.
pub async fn list_roles(server: &impl Ports) {
    let neighbor = neighbor_role(server.port(Role::Primary)).await;
    assert_eq!(neighbor.port, u32::from(server.port(Role::SrNeighbor)));
    assert!(neighbor.is_tcp && neighbor.is_tls);
}

/// `StartNeighborhoodInitializationRequest{primary_port, sr_neighbor_port, ip_address}`.
pub fn start_request(primary: u32, neighbor: u32, ip_address: &[u8]) -> Conv {
    Conv::StartNeighborhoodInitialization(ps::StartNeighborhoodInitializationRequest {
        primary_port: primary,
        sr_neighbor_port: neighbor,
        ip_address: ip_address.to_vec(),
    })
}

/// `StopNeighborhoodUpdatesRequest{}`.
pub fn stop_request() -> Conv {
    Conv::StopNeighborhoodUpdates(ps::StopNeighborhoodUpdatesRequest {})
}

/// `FinishNeighborhoodInitializationRequest{}`.
pub fn finish_request() -> Conv {
    Conv::FinishNeighborhoodInitialization(ps::FinishNeighborhoodInitializationRequest {})
}

/// `NeighborhoodSharedProfileUpdateRequest{items}`.
pub fn update_request(items: Vec<ps::SharedProfileUpdateItem>) -> Conv {
    Conv::NeighborhoodSharedProfileUpdate(ps::NeighborhoodSharedProfileUpdateRequest { items })
}

impl Client {
    /// Pings with `id` and requires the answer to be the very next message: the connection is
    /// open and the SUT sent nothing else before it.
    pub async fn assert_nothing_before_ping(&mut self, id: u32) {
        let answer = self.ping(id, b"quiet").await;
        assert_status(&answer, Status::Ok);
    }
}

/// The impersonated neighbour N.
pub struct Neighbor {
    /// N's key pair; S uses the same key where a test has both.
    pub identity: Identity,
}

impl Neighbor {
    /// N with a fresh key.
    pub fn random() -> Neighbor {
        Neighbor {
            identity: Identity::random(),
        }
    }

    /// "Verify N": TLS to srNeighbor; StartConversation (id 1), whose signature over N's
    /// challenge must verify; VerifyIdentity (id 2) → OK.
    pub async fn verify(&self, server: &impl Ports) -> Client {
        let mut client = Client::tls(server.port(Role::SrNeighbor)).await;
        client.identity = self.identity.clone();
        client.start_conversation(1).await;
        assert_status(&client.verify_identity(2).await, Status::Ok);
        client
    }

    /// Verify N, then Start(p, s) as id 3 on that connection; returns it with the SUT's answer.
    pub async fn start(
        &self,
        server: &impl Ports,
        primary: u32,
        neighbor: u32,
    ) -> (Follower, ps::Response) {
        let mut follower = Follower::new(self.verify(server).await);
        let answer = follower
            .call(3, start_request(primary, neighbor, &LOOPBACK))
            .await;
        (follower, answer)
    }

    /// Verify N and Start(p, s) (id 3), which must be answered OK with a Start response.
    pub async fn initialise(&self, server: &impl Ports, primary: u32, neighbor: u32) -> Follower {
        let (follower, answer) = self.start(server, primary, neighbor).await;
        assert_status(&answer, Status::Ok);
        let (_, body) = conversation_body(answer);
        assert!(matches!(body, ConvResp::StartNeighborhoodInitialization(_)));
        follower
    }
}

/// What the SUT may send to N after an accepted Start.
enum FromSut {
    /// An update batch with the SUT's id.
    Update(u32, Vec<ps::SharedProfileUpdateItem>),
    /// The Finish request with the SUT's id.
    Finish(u32),
}

/// N's connection after Start: the follower loop (PS08 §1.3) and what it recorded.
pub struct Follower {
    client: Client,
    /// Requests read while N waited for an answer to its own request (full duplex).
    queued: VecDeque<ps::Message>,
    /// Every item received, in arrival order.
    pub items: Vec<ps::SharedProfileUpdateItem>,
    /// How many update requests arrived.
    pub batches: usize,
    /// The SUT's id of the Finish request, once it arrived.
    finish: Option<u32>,
    /// How long N takes before it answers each update batch.
    pub answer_delay: Duration,
}

impl Follower {
    /// Wraps a verified connection.
    pub fn new(client: Client) -> Follower {
        Follower {
            client,
            queued: VecDeque::new(),
            items: Vec::new(),
            batches: 0,
            finish: None,
            answer_delay: Duration::ZERO,
        }
    }

    /// Sends a request and returns the response with its id. Requests from the SUT read
    /// meanwhile are kept for the loop: they are told apart by the oneof, never by the id.
    pub async fn call(&mut self, id: u32, body: Conv) -> ps::Response {
        let message = request::conversation(id, Vec::new(), body);
        self.client.send(&message).await.expect("send request");
        loop {
            let message = self.client.receive_within(T_READ).await;
            if let Some(ps::message::MessageType::Response(_)) = message.message_type {
                assert_eq!(message.id, id, "response must echo the request id");
                return into_response(message);
            }
            self.queued.push_back(message);
        }
    }

    /// Reads until every identity of `expected` has arrived, answering each batch OK.
    pub async fn until_arrived(&mut self, expected: &[&Hosted]) {
        while !expected.iter().all(|hosted| self.has(hosted)) {
            assert!(
                self.step().await,
                "Finish arrived before every expected identity"
            );
        }
    }

    /// Reads, answering each batch OK, until the Finish request arrives; its answer is held.
    pub async fn until_finish(&mut self) {
        while self.step().await {}
    }

    /// Answers the held Finish request OK with the SUT's id. The error is returned, since a
    /// late answer may meet a connection the SUT already closed (PS08014).
    pub async fn answer_finish(&mut self) -> std::io::Result<()> {
        let id = self.finish.expect("the Finish request arrived");
        let body = ConvResp::FinishNeighborhoodInitialization(
            ps::FinishNeighborhoodInitializationResponse {},
        );
        self.client
            .send(&response::conversation(id, Vec::new(), body))
            .await
    }

    /// The whole loop: until Finish, answer it OK, close; returns the items.
    pub async fn complete(mut self) -> Vec<ps::SharedProfileUpdateItem> {
        self.until_finish().await;
        self.answer_finish()
            .await
            .expect("answer the Finish request");
        self.items
    }

    /// Whether the SUT has closed the connection (looking for a second).
    pub async fn is_closed(&mut self) -> bool {
        self.client.is_closed_within(Duration::from_secs(1)).await
    }

    /// Requires that the SUT sent nothing on this connection besides the answers so far, and
    /// that the connection is open (see [`Client::assert_nothing_before_ping`]).
    pub async fn assert_nothing_before_ping(&mut self, id: u32) {
        assert!(self.queued.is_empty(), "the SUT sent {:?}", self.queued);
        self.client.assert_nothing_before_ping(id).await;
    }

    /// Whether an item for `hosted` arrived.
    pub fn has(&self, hosted: &Hosted) -> bool {
        let id = hosted.network_id();
        self.items.iter().any(|item| named_identity(item) == id)
    }

    /// Reads one message: records and answers an update batch (true), or records the Finish
    /// request (false). Anything else, and anything after Finish, fails the test.
    async fn step(&mut self) -> bool {
        assert!(
            self.finish.is_none(),
            "nothing may follow the Finish request"
        );
        match self.next().await {
            FromSut::Update(id, items) => {
                assert!(
                    items.iter().all(|item| kind(item) == Kind::Add),
                    "an initialisation sends only add items"
                );
                self.items.extend(items);
                self.batches += 1;
                tokio::time::sleep(self.answer_delay).await;
                let body = ConvResp::NeighborhoodSharedProfileUpdate(
                    ps::NeighborhoodSharedProfileUpdateResponse {},
                );
                let answer = response::conversation(id, Vec::new(), body);
                self.client.send(&answer).await.expect("answer the batch");
                true
            }
            FromSut::Finish(id) => {
                self.finish = Some(id);
                false
            }
        }
    }

    async fn next(&mut self) -> FromSut {
        let message = match self.queued.pop_front() {
            Some(message) => message,
            None => self.client.receive_within(T_READ).await,
        };
        let frame_len = frame::encode(&message).len();
        let id = message.id;
        let Some(ps::message::MessageType::Request(ps::Request {
            conversation_type:
                Some(ps::request::ConversationType::ConversationRequest(ps::ConversationRequest {
                    request_type: Some(body),
                    ..
                })),
        })) = message.message_type
        else {
            panic!("the follower expected a neighbourhood request, got {message:?}");
        };
        match body {
            Conv::NeighborhoodSharedProfileUpdate(update) => {
                assert!(
                    frame_len <= MAX_FRAME_LEN,
                    "update frame of {frame_len} bytes"
                );
                FromSut::Update(id, update.items)
            }
            Conv::FinishNeighborhoodInitialization(_) => FromSut::Finish(id),
            other => panic!("unexpected request on the follower connection: {other:?}"),
        }
    }
}
