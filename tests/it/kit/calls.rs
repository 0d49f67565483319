//! Building blocks for PS05: callee online with a service, verified caller, ringing, relay
//! messages (INIT, SEND, DELIVER, ACK).

use iop_profile_server::role::Role;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv,
    conversation_response::ResponseType as ConvResp, single_request::RequestType as Single,
    single_response::ResponseType as SingleResp,
};
use iop_profile_server::wire::{Status, request, response};

use super::client::{Client, Identity, assert_status, conversation_body, into_response};
use super::customer::{Update, check_in, register};
use super::server::Ports;

/// The service name the PS05 tests use.
pub const SERVICE: &str = "Test Service";

/// S2 + S3: E registers, checks in (E-ctl), initialises its profile and enables SERVICE.
pub async fn callee_online(server: &impl Ports) -> Client {
    let identity = Identity::random();
    register(server, &identity, "Test Type").await;
    let mut e_ctl = check_in(server, &identity).await;
    let mut update = Update::new(&identity);
    update.profile.name = "Test Identity".into();
    assert_status(&e_ctl.update_profile(3, &update).await, Status::Ok);
    let add = Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
        service_names: vec![SERVICE.into()],
    });
    assert_status(&e_ctl.conversation(4, Vec::new(), add).await, Status::Ok);
    e_ctl
}

/// R-ctl: a new clNonCustomer connection with SC and VI done.
pub async fn caller_verified(server: &impl Ports) -> Client {
    let mut r_ctl = Client::tls(server.port(Role::ClNonCustomer)).await;
    r_ctl.start_conversation(1).await;
    assert_status(&r_ctl.verify_identity(2).await, Status::Ok);
    r_ctl
}

/// The CallIdentityApplicationService request for `callee` and `service`.
pub fn call_message(id: u32, callee: &Client, service: &str) -> ps::Message {
    let body = Conv::CallIdentityApplicationService(ps::CallIdentityApplicationServiceRequest {
        identity_network_id: callee.identity.network_id(),
        service_name: service.into(),
    });
    request::conversation(id, Vec::new(), body)
}

/// INIT(n, t) or SEND(n, t, text).
pub fn send_message(id: u32, token: &[u8], text: &[u8]) -> ps::Message {
    request::single(
        id,
        Single::ApplicationServiceSendMessage(ps::ApplicationServiceSendMessageRequest {
            token: token.to_vec(),
            message: text.to_vec(),
        }),
    )
}

/// What a relay party reads: a delivery to acknowledge, or the answer to one of its sends.
#[derive(Debug)]
pub enum Incoming {
    /// DELIVER with the server's id and the message.
    Delivery(u32, Vec<u8>),
    /// The answer to a send, with its status.
    Answer(Status),
}

/// Classifies a message read on a relay connection.
pub fn incoming(message: ps::Message) -> Incoming {
    match message.message_type {
        Some(ps::message::MessageType::Request(ps::Request {
            conversation_type:
                Some(ps::request::ConversationType::SingleRequest(ps::SingleRequest {
                    request_type: Some(Single::ApplicationServiceReceiveMessageNotification(n)),
                    ..
                })),
        })) => Incoming::Delivery(message.id, n.message),
        Some(ps::message::MessageType::Response(answer)) => {
            Incoming::Answer(Status::try_from(answer.status).unwrap_or(Status::ErrorInternal))
        }
        other => panic!("unexpected message on a relay connection: {other:?}"),
    }
}

/// The ACK message for a delivery with server id `id`.
pub fn ack_message(id: u32) -> ps::Message {
    let body = SingleResp::ApplicationServiceReceiveMessageNotification(
        ps::ApplicationServiceReceiveMessageNotificationResponse {},
    );
    response::single(id, vec![1, 0, 0], body)
}

impl Client {
    /// Reads the next message, which must be a request from the server; returns id and request.
    pub async fn server_request(&mut self) -> (u32, ps::Request) {
        let message = self.receive().await;
        match message.message_type {
            Some(ps::message::MessageType::Request(request)) => (message.id, request),
            other => panic!("expected a server request, got {other:?}"),
        }
    }

    /// S5: reads the IncomingCallNotification; returns its id and the notification.
    pub async fn ring(&mut self) -> (u32, ps::IncomingCallNotificationRequest) {
        let (id, request) = self.server_request().await;
        match request.conversation_type {
            Some(ps::request::ConversationType::ConversationRequest(ps::ConversationRequest {
                request_type: Some(Conv::IncomingCallNotification(notification)),
                ..
            })) => (id, notification),
            other => panic!("expected IncomingCallNotification, got {other:?}"),
        }
    }

    /// Answers an IncomingCallNotification with `status` (OK accepts).
    pub async fn answer_call(&mut self, id: u32, status: Status) {
        let answer = if status == Status::Ok {
            let body = ConvResp::IncomingCallNotification(ps::IncomingCallNotificationResponse {});
            response::conversation(id, Vec::new(), body)
        } else {
            response::error(id, status, "")
        };
        self.send(&answer).await.expect("answer the call");
    }

    /// Reads a DELIVER and returns its id and message bytes.
    pub async fn delivery(&mut self) -> (u32, Vec<u8>) {
        let (id, request) = self.server_request().await;
        match request.conversation_type {
            Some(ps::request::ConversationType::SingleRequest(ps::SingleRequest {
                version,
                request_type: Some(Single::ApplicationServiceReceiveMessageNotification(n)),
            })) => {
                assert_eq!(version, [1, 0, 0]);
                (id, n.message)
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// ACK for a DELIVER with server id `id`.
    pub async fn ack(&mut self, id: u32) {
        let _ = self.send(&ack_message(id)).await;
    }

    /// Reads a DELIVER, checks its text and ACKs it.
    pub async fn expect_delivery(&mut self, text: &str) {
        let (id, message) = self.delivery().await;
        assert_eq!(String::from_utf8_lossy(&message), text);
        self.ack(id).await;
    }

    /// Reads the response with `id` to a send and requires `status`.
    pub async fn expect_send_answer(&mut self, id: u32, status: Status) {
        let message = self.receive().await;
        assert_eq!(message.id, id, "answer to send {id}");
        assert_status(&into_response(message), status);
    }
}

/// The caller's token from a successful CallIdentityApplicationService answer.
pub fn caller_token(answer: ps::Response) -> Vec<u8> {
    assert_status(&answer, Status::Ok);
    match conversation_body(answer).1 {
        ConvResp::CallIdentityApplicationService(call) => call.caller_token,
        other => panic!("expected a call response, got {other:?}"),
    }
}

/// An established call after S1–S8: relay connections of both parties and their tokens.
pub struct OpenCall {
    /// E's control connection (clCustomer).
    pub e_ctl: Client,
    /// E's relay connection.
    pub e_app: Client,
    /// R's relay connection.
    pub r_app: Client,
    /// E's token.
    pub te: Vec<u8>,
    /// R's token.
    pub tr: Vec<u8>,
}

/// A call that is ringing: S1–S4 done and the IncomingCallNotification read on E-ctl.
pub struct Ringing {
    /// E's control connection (clCustomer), where the notification arrived.
    pub e_ctl: Client,
    /// R's control connection (clNonCustomer), waiting for the answer to call id 3.
    pub r_ctl: Client,
    /// The server's id of the notification.
    pub ring_id: u32,
    /// The notification (caller key, service, callee token).
    pub notification: ps::IncomingCallNotificationRequest,
}

/// S1–S4 and S5's read: E online with SERVICE, R verified and calling (id 3), E rung.
pub async fn ring_callee(server: &impl Ports) -> Ringing {
    let mut e_ctl = callee_online(server).await;
    let mut r_ctl = caller_verified(server).await;
    r_ctl
        .send(&call_message(3, &e_ctl, SERVICE))
        .await
        .expect("call");
    let (ring_id, notification) = e_ctl.ring().await;
    Ringing {
        e_ctl,
        r_ctl,
        ring_id,
        notification,
    }
}

/// S1–S8 against `server`.
pub async fn open_call(server: &impl Ports) -> OpenCall {
    let Ringing {
        mut e_ctl,
        mut r_ctl,
        ring_id,
        notification,
    } = ring_callee(server).await;
    assert_eq!(notification.caller_public_key, r_ctl.identity.public_key());
    assert_eq!(notification.service_name, SERVICE);
    e_ctl.answer_call(ring_id, Status::Ok).await;
    let te = notification.callee_token;
    let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
    e_app
        .send(&send_message(1, &te, b""))
        .await
        .expect("E init");
    let answer = r_ctl.receive().await;
    assert_eq!(answer.id, 3);
    let tr = caller_token(into_response(answer));
    let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
    r_app
        .send(&send_message(1, &tr, b""))
        .await
        .expect("R init");
    r_app.expect_send_answer(1, Status::Ok).await;
    drop(r_ctl);
    e_app.expect_send_answer(1, Status::Ok).await;
    OpenCall {
        e_ctl,
        e_app,
        r_app,
        te,
        tr,
    }
}
