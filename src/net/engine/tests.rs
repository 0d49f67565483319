//! The engine's rules, on simulated time and without sockets.

use super::harness::Server;
use super::*;
use crate::hub::{Reply, ServerRequest, ServerRequestKind};
use crate::wire::ps::conversation_request::RequestType as Conv;
use crate::wire::ps::conversation_response;
use crate::wire::ps::single_request::RequestType as Single;
use crate::wire::request;
use std::time::Duration;

const CLIENT_ROLES: [Role; 2] = [Role::ClNonCustomer, Role::ClCustomer];

#[test]
fn server_request_ids_follow_the_reference_bitmask() {
    assert_eq!(
        first_server_request_id(RoleSet::of(&[Role::ClCustomer])),
        (16 << 24) + 1
    );
    let shared = RoleSet::of(&[
        Role::SrNeighbor,
        Role::ClNonCustomer,
        Role::ClCustomer,
        Role::ClAppService,
    ]);
    assert_eq!(
        first_server_request_id(shared),
        ((4 + 16 + 32 + 128) << 24) + 1
    );
}

#[tokio::test]
async fn the_role_gate_answers_before_the_conversation_gate() {
    let server = Server::new();
    let mut primary = server.connect(&[Role::Primary]);
    // CheckIn is a customer's request: on the primary port the role is wrong, whatever the
    // conversation's state.
    let check_in = Conv::CheckIn(ps::CheckInRequest::default());
    let answer = primary.conversation(Vec::new(), check_in, server.now).await;
    assert_eq!(answer.status, Status::ErrorBadRole as i32);
    let mut client = server.connect(&CLIENT_ROLES);
    let check_in = Conv::CheckIn(ps::CheckInRequest::default());
    let answer = client.conversation(Vec::new(), check_in, server.now).await;
    assert_eq!(answer.status, Status::ErrorBadConversationStatus as i32);
    let list = Single::ListRoles(ps::ListRolesRequest {});
    assert_eq!(
        client.single(list, server.now).await.status,
        Status::ErrorBadRole as i32
    );
    assert_eq!(client.ended, None);
}

#[tokio::test]
async fn a_verified_identity_is_what_the_neighbor_requests_are_admitted_with() {
    let server = Server::new();
    let mut neighbor = server.connect(&[Role::SrNeighbor]);
    let stop = || Conv::StopNeighborhoodUpdates(ps::StopNeighborhoodUpdatesRequest {});
    let answer = neighbor.conversation(Vec::new(), stop(), server.now).await;
    assert_eq!(answer.status, Status::ErrorUnauthorized as i32);
    assert_eq!(neighbor.start_conversation(server.now).await.status, 0);
    assert_eq!(neighbor.verify_identity(server.now).await.status, 0);
    // Admitted: the proven identity is no follower, which is the handler's answer.
    let answer = neighbor.conversation(Vec::new(), stop(), server.now).await;
    assert_eq!(answer.status, Status::ErrorNotFound as i32);
}

/// The protocol violation `written` answers, with the id it names.
fn violation_id(written: &[ps::Message]) -> u32 {
    assert_eq!(written.len(), 1, "{written:?}");
    let Some(ps::message::MessageType::Response(answer)) = &written[0].message_type else {
        panic!("a response expected: {written:?}");
    };
    assert_eq!(answer.status, Status::ErrorProtocolViolation as i32);
    written[0].id
}

#[tokio::test]
async fn broken_messages_get_a_protocol_violation_and_end_the_connection() {
    let server = Server::new();
    // Bodies that are no message with an id, answered with the unknown id: no bytes at all, an
    // empty Message, and bytes that do not decode.
    for body in [
        Vec::new(),
        vec![0x12, 0x00],
        vec![0x12, 0x7f, 0x00],
        vec![0xff; 7],
    ] {
        let mut client = server.connect(&CLIENT_ROLES);
        let written = client.send_body(body.clone(), server.now).await;
        assert_eq!(violation_id(&written), UNKNOWN_MESSAGE_ID, "{body:?}");
        assert_eq!(client.ended, Some(End::FinalAnswer));
    }
    // Messages with an id but nothing to do, or a version that is none: the id is echoed.
    let single = |version: Vec<u8>, body: Option<Single>| {
        Some(ps::message::MessageType::Request(ps::Request {
            conversation_type: Some(ps::request::ConversationType::SingleRequest(
                ps::SingleRequest {
                    version,
                    request_type: body,
                },
            )),
        }))
    };
    let ping = Some(Single::Ping(ps::PingRequest::default()));
    let unset_request = Some(ps::message::MessageType::Request(ps::Request {
        conversation_type: None,
    }));
    for (id, message_type) in [
        (41, None),
        (42, unset_request),
        (43, single(vec![1, 0, 0], None)),
        (44, single(vec![0, 0, 0], ping)),
    ] {
        let mut client = server.connect(&[Role::Primary]);
        let message = ps::Message { id, message_type };
        let written = client.send(&message, server.now).await;
        assert_eq!(violation_id(&written), id);
        assert_eq!(client.ended, Some(End::FinalAnswer), "message {id}");
    }
}

#[tokio::test]
async fn a_response_to_no_request_of_ours_ends_the_connection_without_an_answer() {
    let server = Server::new();
    let mut client = server.connect(&CLIENT_ROLES);
    let stray = response::error(5, Status::Ok, "");
    assert!(client.send(&stray, server.now).await.is_empty());
    assert_eq!(client.ended, Some(End::Io));
}

/// A server request whose answer a test awaits.
fn server_request(
    kind: ServerRequestKind,
) -> (Command, tokio::sync::oneshot::Receiver<ps::Response>) {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let body = Single::Ping(ps::PingRequest::default());
    let request = ServerRequest {
        kind,
        message: request::single(0, body),
        reply: Reply::Channel(sender),
        budget: None,
    };
    (Command::Request(Box::new(request)), receiver)
}

#[tokio::test]
async fn server_requests_are_numbered_from_the_role_mask_and_at_most_twenty_wait() {
    let server = Server::new();
    let mut client = server.connect(&CLIENT_ROLES);
    let first = ((16 + 32) << 24) + 1;
    let mut out = Output::default();
    let mut answers = Vec::new();
    for _ in 0..21 {
        let (command, answer) = server_request(ServerRequestKind::ReceiveMessageNotification);
        client.engine.command(command, server.now.instant, &mut out);
        answers.push(answer);
    }
    let mut rest = out.bytes.as_slice();
    let mut ids = Vec::new();
    while let Some((message, used)) = frame::split::<ps::Message>(rest).expect("frames") {
        ids.push(message.id);
        rest = &rest[used..];
    }
    // Spec §1.4: ids count up from (mask << 24) + 1; a 21st request is not sent.
    assert_eq!(ids, (first..first + 20).collect::<Vec<_>>());
    let refused = answers.pop().expect("21 requests");
    assert!(
        refused.await.is_err(),
        "the 21st request's waiter is let go"
    );
    // The answer to the first frees a place; it reaches its waiter.
    let ok = response::single(
        first,
        vec![1, 0, 0],
        ps::single_response::ResponseType::ApplicationServiceReceiveMessageNotification(
            ps::ApplicationServiceReceiveMessageNotificationResponse {},
        ),
    );
    assert!(client.send(&ok, server.now).await.is_empty());
    assert_eq!(client.ended, None);
    let answered = answers.remove(0).await.expect("answer delivered");
    assert_eq!(answered.status, 0);
    let (command, _answer) = server_request(ServerRequestKind::ReceiveMessageNotification);
    let mut out = Output::default();
    client.engine.command(command, server.now.instant, &mut out);
    let (message, _) = frame::split::<ps::Message>(&out.bytes)
        .expect("frame")
        .expect("sent");
    assert_eq!(message.id, first + 20);
}

/// The callee's engine rings with an IncomingCallNotification; returns its id.
fn ringing(written: &[ps::Message]) -> u32 {
    assert_eq!(written.len(), 1, "{written:?}");
    let Some(ps::message::MessageType::Request(request)) = &written[0].message_type else {
        panic!("the callee is rung with a request");
    };
    let Some(ps::request::ConversationType::ConversationRequest(conversation)) =
        &request.conversation_type
    else {
        panic!("a conversation request");
    };
    assert!(matches!(
        conversation.request_type,
        Some(Conv::IncomingCallNotification(_))
    ));
    written[0].id
}

/// Two parties: a checked-in customer offering "chat", and a verified caller who calls it.
async fn call_to_chat(server: &Server) -> (super::harness::Party, super::harness::Party) {
    let mut callee = server.connect(&CLIENT_ROLES);
    callee.become_customer(server.now).await;
    let add = Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
        service_names: vec!["chat".into()],
    });
    assert_eq!(
        callee
            .conversation(Vec::new(), add, server.now)
            .await
            .status,
        0
    );
    let mut caller = server.connect(&CLIENT_ROLES);
    assert_eq!(caller.start_conversation(server.now).await.status, 0);
    assert_eq!(caller.verify_identity(server.now).await.status, 0);
    let call = request::conversation(
        77,
        Vec::new(),
        Conv::CallIdentityApplicationService(ps::CallIdentityApplicationServiceRequest {
            identity_network_id: callee.identity.network_id().0.to_vec(),
            service_name: "chat".into(),
        }),
    );
    // The caller's answer waits for the callee's.
    assert!(caller.send(&call, server.now).await.is_empty());
    (caller, callee)
}

#[tokio::test]
async fn a_call_answered_by_the_callee_is_answered_to_the_caller() {
    let server = Server::new();
    let (mut caller, mut callee) = call_to_chat(&server).await;
    let id = ringing(&callee.deliver(server.now));
    let accepted = response::conversation(
        id,
        Vec::new(),
        conversation_response::ResponseType::IncomingCallNotification(
            ps::IncomingCallNotificationResponse {},
        ),
    );
    assert!(callee.send(&accepted, server.now).await.is_empty());
    let written = caller.deliver(server.now);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].id, 77);
    let Some(ps::message::MessageType::Response(answer)) = &written[0].message_type else {
        panic!("the caller gets its response");
    };
    assert_eq!(answer.status, 0, "{}", answer.details);
}

#[tokio::test]
async fn a_callee_that_goes_while_ringing_makes_the_call_not_available() {
    let mut server = Server::new();
    let (mut caller, mut callee) = call_to_chat(&server).await;
    ringing(&callee.deliver(server.now));
    server.advance(Duration::from_secs(1));
    callee.engine.leave(server.now.instant);
    let written = caller.deliver(server.now);
    assert_eq!(written.len(), 1);
    let Some(ps::message::MessageType::Response(answer)) = &written[0].message_type else {
        panic!("the caller gets its response");
    };
    assert_eq!(answer.status, Status::ErrorNotAvailable as i32);
}
