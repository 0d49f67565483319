//! A two-party harness in quinn-proto's manner: test clients and their connections' engines
//! driven in memory over one server's shared state, on simulated time. No socket, no timer and
//! no clock: every step is given the time it happens at, and what another party queued for a
//! connection reaches it only when the test delivers it.

use std::sync::Arc;
use std::time::Duration;

use super::{End, Engine, Output, Peer};
use crate::clock::Now;
use crate::context::Ctx;
use crate::crypto::ServerKey;
use crate::role::{Role, RoleSet};
use crate::wire::ps::{self, conversation_request, conversation_response, single_request};
use crate::wire::{frame, request};

/// One server's shared state with a simulated clock.
pub(crate) struct Server {
    /// What every connection of the server shares.
    pub ctx: Arc<Ctx>,
    /// The simulated time.
    pub now: Now,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server in test mode on a temporary database, at a fixed start time.
    pub fn new() -> Server {
        let (dir, ctx) = crate::context::testing::ctx();
        Server {
            ctx,
            now: Now {
                instant: tokio::time::Instant::now(),
                unix_ms: 1_800_000_000_000,
            },
            _dir: dir,
        }
    }

    /// A client connected to a port serving `roles`, with an identity of its own.
    pub(crate) fn connect(&self, roles: &[Role]) -> Party {
        let peer = Peer {
            roles: RoleSet::of(roles),
            remote: std::net::Ipv4Addr::LOCALHOST.into(),
            address_slot: None,
        };
        Party {
            engine: Engine::new(Arc::clone(&self.ctx), peer),
            identity: ServerKey::generate(),
            server_challenge: Vec::new(),
            next_id: 1,
            ended: None,
        }
    }

    /// Moves the simulated clock on.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now.instant += by;
        self.now.unix_ms += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    }
}

/// A test client and its connection's engine.
pub(crate) struct Party {
    /// The connection's engine.
    pub engine: Engine,
    /// The client's identity.
    pub identity: ServerKey,
    /// The challenge of the server's last StartConversation answer.
    pub server_challenge: Vec<u8>,
    next_id: u32,
    /// Why the engine ended the connection, once it did.
    pub ended: Option<End>,
}

impl Party {
    /// The id the next request gets.
    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends `message` as one frame at `now`; returns the messages written back.
    pub(crate) async fn send(&mut self, message: &ps::Message, now: Now) -> Vec<ps::Message> {
        let framed = frame::encode(message);
        self.send_body(framed[frame::HEADER_LEN..].to_vec(), now)
            .await
    }

    /// Sends a frame whose body (the bytes after the 5-byte header) is `body` at `now`; returns the messages written back.
    pub(crate) async fn send_body(&mut self, body: Vec<u8>, now: Now) -> Vec<ps::Message> {
        let budget = self
            .engine
            .ctx
            .budgets
            .inflight
            .nothing()
            .expect("budget open");
        let mut out = Output::default();
        self.engine.frame(body, budget, now, &mut out).await;
        self.written(&out)
    }

    /// Carries out whatever other parties queued for this connection, at `now`; returns the
    /// messages written.
    pub(crate) fn deliver(&mut self, now: Now) -> Vec<ps::Message> {
        let mut out = Output::default();
        while let Some(command) = self.engine.commands().and_then(|c| c.try_recv().ok()) {
            self.engine.command(command, now.instant, &mut out);
        }
        self.written(&out)
    }

    fn written(&mut self, out: &Output) -> Vec<ps::Message> {
        if out.end.is_some() {
            self.ended = out.end;
        }
        let mut messages = Vec::new();
        let mut rest = out.bytes.as_slice();
        while let Some((message, used)) =
            frame::split::<ps::Message>(rest).expect("the engine writes whole frames")
        {
            messages.push(message);
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "a partial frame was written");
        messages
    }

    /// Sends a request and returns its one answer.
    pub(crate) async fn call(&mut self, message: ps::Message, now: Now) -> ps::Response {
        let id = message.id;
        let mut written = self.send(&message, now).await;
        assert_eq!(written.len(), 1, "one answer expected: {written:?}");
        let answer = written.remove(0);
        assert_eq!(answer.id, id, "the answer echoes the request's id");
        match answer.message_type {
            Some(ps::message::MessageType::Response(response)) => response,
            other => panic!("a response expected, got {other:?}"),
        }
    }

    /// A single request.
    pub async fn single(&mut self, body: single_request::RequestType, now: Now) -> ps::Response {
        let id = self.id();
        self.call(request::single(id, body), now).await
    }

    /// A conversation request signed with `signature`.
    pub async fn conversation(
        &mut self,
        signature: Vec<u8>,
        body: conversation_request::RequestType,
        now: Now,
    ) -> ps::Response {
        let id = self.id();
        self.call(request::conversation(id, signature, body), now)
            .await
    }

    /// A request whose message the client signs (the body's bytes, as the protocol asks).
    pub(crate) async fn signed<M: prost::Message>(
        &mut self,
        signed: &M,
        body: conversation_request::RequestType,
        now: Now,
    ) -> ps::Response {
        let signature = self.identity.sign(&signed.encode_to_vec());
        self.conversation(signature, body, now).await
    }

    /// StartConversation; keeps the server's challenge.
    pub(crate) async fn start_conversation(&mut self, now: Now) -> ps::Response {
        let start = ps::StartConversationRequest {
            supported_versions: vec![vec![1, 0, 0]],
            public_key: self.identity.public_key().to_vec(),
            client_challenge: vec![7; 32],
        };
        let answer = self
            .conversation(
                Vec::new(),
                conversation_request::RequestType::Start(start),
                now,
            )
            .await;
        if let Some(ps::response::ConversationType::ConversationResponse(conversation)) =
            &answer.conversation_type
            && let Some(conversation_response::ResponseType::Start(start)) =
                &conversation.response_type
        {
            self.server_challenge.clone_from(&start.challenge);
        }
        answer
    }

    /// VerifyIdentity with the server's challenge.
    pub(crate) async fn verify_identity(&mut self, now: Now) -> ps::Response {
        let verify = ps::VerifyIdentityRequest {
            challenge: self.server_challenge.clone(),
        };
        let body = conversation_request::RequestType::VerifyIdentity(verify.clone());
        self.signed(&verify, body, now).await
    }

    /// RegisterHosting, CheckIn and an initialised profile: a checked-in customer.
    pub(crate) async fn become_customer(&mut self, now: Now) {
        assert_eq!(self.start_conversation(now).await.status, 0);
        let contract = ps::HostingPlanContract {
            plan_id: Vec::new(),
            identity_public_key: self.identity.public_key().to_vec(),
            start_time: now.unix_ms,
            identity_type: "Test Type".into(),
        };
        let register =
            conversation_request::RequestType::RegisterHosting(ps::RegisterHostingRequest {
                contract: Some(contract.clone()),
            });
        let answer = self.signed(&contract, register, now).await;
        assert_eq!(answer.status, 0, "RegisterHosting: {}", answer.details);
        let check_in = ps::CheckInRequest {
            challenge: self.server_challenge.clone(),
        };
        let body = conversation_request::RequestType::CheckIn(check_in.clone());
        let answer = self.signed(&check_in, body, now).await;
        assert_eq!(answer.status, 0, "CheckIn: {}", answer.details);
        let profile = ps::ProfileInformation {
            version: vec![1, 0, 0],
            public_key: self.identity.public_key().to_vec(),
            r#type: "Test Type".into(),
            name: "Test Name".into(),
            ..Default::default()
        };
        let update = conversation_request::RequestType::UpdateProfile(ps::UpdateProfileRequest {
            profile: Some(profile.clone()),
            ..Default::default()
        });
        let answer = self.signed(&profile, update, now).await;
        assert_eq!(answer.status, 0, "UpdateProfile: {}", answer.details);
    }
}
