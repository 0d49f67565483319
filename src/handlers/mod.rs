//! Request handling: unwrap the envelope, run the gates, call the feature handler, wrap the answer.
//!
//! Handlers never touch a socket. They return a body or a [`Reject`]; the connection writes it.

pub(crate) mod app_service;
pub(crate) mod basic;
pub(crate) mod call;
pub(crate) mod can;
pub(crate) mod conversation;
pub(crate) mod hosting;
pub(crate) mod neighborhood;
pub(crate) mod profile;
pub(crate) mod reject;
pub(crate) mod relations;
pub(crate) mod relay;
pub(crate) mod search;
#[cfg(test)]
pub(crate) mod testing;

use tokio::sync::OwnedSemaphorePermit;

use reject::Reject;

use crate::clock::Now;
use crate::context::View;
use crate::session::gate::{self, Admitted, RequestKind};
use crate::session::{Peer, Session};
use crate::wire::Status;
use crate::wire::ps::{self, conversation_request, conversation_response, request, single_request};
use crate::wire::{is_valid_version, response};

/// What the connection does with a handled request.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Send this response and go on.
    Reply(ps::Message),
    /// Send this response, then close the connection.
    ReplyAndClose(ps::Message),
    /// Nothing now: a task answers later through the connection's outbox.
    Deferred,
}

/// One request as it arrived: its message id, when, and the in-flight bytes it holds.
#[derive(Debug)]
pub(crate) struct Received {
    /// The request's message id, echoed in the answer.
    pub id: u32,
    /// When the request arrived.
    pub now: Now,
    /// The request's bytes against `limits.max_inflight_bytes`.
    pub budget: OwnedSemaphorePermit,
}

/// A successful conversation answer and the server's signature over it (empty when none).
#[derive(Debug)]
pub(crate) struct ConversationBody {
    /// `ConversationResponse.signature`.
    pub signature: Vec<u8>,
    /// The response body.
    pub body: conversation_response::ResponseType,
}

impl ConversationBody {
    /// A body the server does not sign.
    pub(crate) fn unsigned(body: conversation_response::ResponseType) -> ConversationBody {
        ConversationBody {
            signature: Vec::new(),
            body,
        }
    }
}

/// Handles one request from the client and returns the response for message `id`.
///
/// `budget` holds the request's bytes against `limits.max_inflight_bytes`; a relayed message
/// keeps it until the delivery is written, so queued deliveries stay within the budget.
/// `received.now` is when the request arrived: handlers never read the clock themselves.
pub(crate) async fn handle(
    ctx: &View,
    session: &mut Session,
    received: Received,
    request: ps::Request,
) -> Outcome {
    let id = received.id;
    let kind = RequestKind::of_request(&request).map(RequestKind::index);
    let result = match request.conversation_type {
        Some(request::ConversationType::SingleRequest(single)) => {
            single_request(ctx, session, received, single).await
        }
        Some(request::ConversationType::ConversationRequest(conversation)) => {
            conversation_request(ctx, session, received, conversation)
                .await
                .map(|answer| {
                    answer.map(|answer| response::conversation(id, answer.signature, answer.body))
                })
        }
        None => Err(Reject::violation("")),
    };
    let outcome = match result {
        Ok(Some(message)) => Outcome::Reply(message),
        Ok(None) => Outcome::Deferred,
        Err(reject) if reject.closes_connection() => Outcome::ReplyAndClose(reject.to_message(id)),
        Err(reject) => Outcome::Reply(reject.to_message(id)),
    };
    if let Outcome::Reply(answer) | Outcome::ReplyAndClose(answer) = &outcome {
        ctx.metrics.requests.record(kind, response_status(answer));
    }
    outcome
}

/// The status of an answer (`STATUS_OK` for a message that is not a response).
fn response_status(answer: &ps::Message) -> i32 {
    match &answer.message_type {
        Some(ps::message::MessageType::Response(response)) => response.status,
        _ => Status::Ok as i32,
    }
}

async fn single_request(
    ctx: &View,
    session: &mut Session,
    received: Received,
    single: ps::SingleRequest,
) -> Result<Option<ps::Message>, Reject> {
    use single_request::RequestType as R;
    let Received { id, now, budget } = received;
    if !is_valid_version(&single.version) {
        return Err(Reject::violation("version"));
    }
    let body = single.request_type.ok_or(Reject::violation(""))?;
    admit(RequestKind::of_single(&body), session)?;
    let answer = match body {
        R::Ping(request) => basic::ping(request, now),
        R::ListRoles(_) => Ok(basic::list_roles(ctx)),
        R::ListHostingPlans(_) => hosting::list_hosting_plans(ctx).await,
        R::GetProfileInformation(request) => profile::get_profile_information(ctx, request).await,
        R::ProfileStats(_) => profile::profile_stats(ctx).await,
        R::ApplicationServiceSendMessage(request) => {
            match relay::application_service_send_message(ctx, session, id, request, budget, now)? {
                Some(answer) => Ok(answer),
                None => return Ok(None),
            }
        }
        R::CloseCall(request) => relay::close_call(ctx, session, request),
        R::ProfileSearch(request) => search::profile_search(ctx, session, request, now).await,
        R::GetIdentityRelationshipsInformation(request) => {
            relations::get_identity_relationships_information(ctx, request, now).await
        }
        R::ProfileSearchPart(request) => {
            search::profile_search_part(ctx, session, &request, now).await
        }
        // Only the server sends this; `admit` refused it already.
        R::ApplicationServiceReceiveMessageNotification(_) => Err(Reject::violation("")),
    }?;
    Ok(Some(response::single(id, single.version, answer)))
}

async fn conversation_request(
    ctx: &View,
    session: &mut Session,
    received: Received,
    conversation: ps::ConversationRequest,
) -> Result<Option<ConversationBody>, Reject> {
    use conversation_request::RequestType as R;
    // The request's bytes stay charged until it is answered (a CAN object waits on CAN).
    let Received {
        id,
        now,
        budget: _held,
    } = received;
    let body = conversation.request_type.ok_or(Reject::violation(""))?;
    let admitted = admit(RequestKind::of_conversation(&body), session)?;
    let signature = conversation.signature.as_slice();
    let answer = match body {
        R::Start(request) => conversation::start(ctx, session, request),
        R::VerifyIdentity(request) => conversation::verify_identity(session, signature, &request),
        R::RegisterHosting(request) => {
            hosting::register_hosting(ctx, session, signature, request, now).await
        }
        R::CheckIn(request) => hosting::check_in(ctx, session, signature, &request).await,
        R::UpdateProfile(request) => {
            profile::update_profile(ctx, proven(admitted)?, signature, request, now).await
        }
        R::CancelHostingAgreement(request) => {
            hosting::cancel_hosting_agreement(ctx, session, proven(admitted)?, request, now).await
        }
        R::ApplicationServiceAdd(request) => {
            app_service::application_service_add(ctx, session, &proven(admitted)?, &request)
        }
        R::ApplicationServiceRemove(request) => {
            app_service::application_service_remove(ctx, session, &proven(admitted)?, &request)
        }
        R::AddRelatedIdentity(request) => {
            relations::add_related_identity(ctx, proven(admitted)?, signature, request).await
        }
        R::RemoveRelatedIdentity(request) => {
            relations::remove_related_identity(ctx, &proven(admitted)?, request).await
        }
        R::StartNeighborhoodInitialization(request) => {
            neighborhood::start_neighborhood_initialization(
                ctx,
                session,
                proven(admitted)?,
                &request,
            )
            .await
        }
        R::FinishNeighborhoodInitialization(_) => {
            neighborhood::finish_neighborhood_initialization()
        }
        R::NeighborhoodSharedProfileUpdate(request) => {
            neighborhood::neighborhood_shared_profile_update(ctx, &proven(admitted)?, request, now)
                .await
        }
        R::StopNeighborhoodUpdates(_) => {
            neighborhood::stop_neighborhood_updates(ctx, &proven(admitted)?).await
        }
        R::CanStoreData(request) => {
            can::can_store_data(ctx, proven(admitted)?, request, now.instant).await
        }
        R::CanPublishIpnsRecord(request) => {
            can::can_publish_ipns_record(ctx, proven(admitted)?, request, now).await
        }
        R::CallIdentityApplicationService(request) => {
            return call::call_identity_application_service(
                ctx,
                session,
                proven(admitted)?,
                id,
                &request,
                now,
            )
            .await;
        }
        // Only the server sends this; `admit` refused it already.
        R::IncomingCallNotification(_) => Err(Reject::violation("")),
    }?;
    Ok(Some(answer))
}

/// Runs the gates; a request only the server may send is a protocol violation (spec §1.4).
fn admit(kind: Option<RequestKind>, session: &Session) -> Result<Admitted, Reject> {
    let kind = kind.ok_or(Reject::violation(""))?;
    gate::admit(kind, session).map_err(|refusal| Reject::status(refusal.0))
}

/// The identity the gate proved for a request that needs one (every request whose handler
/// takes a [`Peer`]); UNAUTHORIZED, as the gate answers, should a rule ever say otherwise.
fn proven(admitted: Admitted) -> Result<Peer, Reject> {
    match admitted {
        Admitted::Proven(peer) => Ok(peer),
        Admitted::Anyone => Err(Reject::status(Status::ErrorUnauthorized)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::wire::request as build;

    async fn handled(ctx: &View, session: &mut Session, message: ps::Message) -> Outcome {
        let Some(ps::message::MessageType::Request(request)) = message.message_type else {
            panic!("a request");
        };
        let received = Received {
            id: message.id,
            now: super::testing::now(),
            budget: ctx.budgets.inflight.nothing().expect("budget"),
        };
        handle(ctx, session, received, request).await
    }

    fn status_of(outcome: &Outcome) -> i32 {
        let (Outcome::Reply(message) | Outcome::ReplyAndClose(message)) = outcome else {
            panic!("an answer expected");
        };
        response_status(message)
    }

    #[tokio::test]
    async fn answers_are_counted_by_type_and_status_and_violations_close() {
        let (_dir, ctx) = testing::ctx();
        let mut session = super::testing::session();
        let ping = build::single(
            1,
            single_request::RequestType::Ping(ps::PingRequest::default()),
        );
        let outcome = handled(&ctx, &mut session, ping).await;
        assert!(matches!(outcome, Outcome::Reply(_)));
        let ping_kind = Some(RequestKind::Ping.index());
        assert_eq!(ctx.metrics.requests.get(ping_kind, Status::Ok as i32), 1);

        // ListRoles is the primary port's: refused by the gate, counted with its refusal.
        let list = build::single(
            2,
            single_request::RequestType::ListRoles(ps::ListRolesRequest {}),
        );
        let outcome = handled(&ctx, &mut session, list).await;
        assert_eq!(status_of(&outcome), Status::ErrorBadRole as i32);
        let list_kind = Some(RequestKind::ListRoles.index());
        assert_eq!(
            ctx.metrics
                .requests
                .get(list_kind, Status::ErrorBadRole as i32),
            1
        );

        let mut old = build::single(
            3,
            single_request::RequestType::Ping(ps::PingRequest::default()),
        );
        if let Some(ps::message::MessageType::Request(ps::Request {
            conversation_type: Some(request::ConversationType::SingleRequest(single)),
        })) = &mut old.message_type
        {
            single.version = vec![0, 0, 0];
        }
        let outcome = handled(&ctx, &mut session, old).await;
        assert!(matches!(outcome, Outcome::ReplyAndClose(_)));
        assert_eq!(status_of(&outcome), Status::ErrorProtocolViolation as i32);
    }
}
