//! The relay channel on clAppService (spec §5.5, legacy model) and CloseCall (HEAD proto).
//!
//! The first ApplicationServiceSendMessage on a connection is its init: it binds the connection
//! to the relay of its token and is answered once both parties joined. Later ones carry data to
//! the other party and are answered when that party acknowledged the delivery.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::call::spawn_join_timer;
use super::reject::Reject;
use crate::context::Ctx;
use crate::outbox::Command;
use crate::relay::Joined;
use crate::session::pending::{RelayAck, Reply, ServerRequestKind};
use crate::session::{Conversation, Session};
use crate::wire::ps::{self, single_request, single_response::ResponseType};
use crate::wire::{Status, request};

fn not_found() -> Reject {
    Reject::status(Status::ErrorNotFound)
}

/// ApplicationServiceSendMessageRequest: an init or a data message; `Ok(None)` defers the answer.
pub fn application_service_send_message(
    ctx: &Arc<Ctx>,
    session: &mut Session,
    id: u32,
    request: ps::ApplicationServiceSendMessageRequest,
    budget: OwnedSemaphorePermit,
) -> Result<Option<ResponseType>, Reject> {
    let Some(binding) = session.relay else {
        let (joined, stage) = ctx
            .relays
            .join(&request.token, session.link.clone(), id)
            .map_err(|refused| {
                if refused.close {
                    not_found().and_close()
                } else {
                    not_found()
                }
            })?;
        return Ok(match joined {
            Joined::Waiting(binding) => {
                session.relay = Some(binding);
                spawn_join_timer(ctx, binding.relay, stage, ctx.config.timeouts.relay_join);
                None
            }
            Joined::Open(binding) => {
                session.relay = Some(binding);
                Some(sent(request.token))
            }
        });
    };
    let route = ctx
        .relays
        .route(binding, &request.token)
        .map_err(|_| not_found().and_close())?;
    let delivery = single_request::RequestType::ApplicationServiceReceiveMessageNotification(
        ps::ApplicationServiceReceiveMessageNotificationRequest {
            message: request.message,
        },
    );
    let ack = RelayAck {
        relay: binding.relay,
        outbox: session.link.outbox.clone(),
        message_id: id,
        token: request.token,
    };
    let deliver = Command::Request {
        kind: ServerRequestKind::ReceiveMessageNotification,
        message: Box::new(request::single(0, delivery)),
        reply: Reply::Relay(ack),
        budget: Some(budget),
    };
    if route.peer.try_push(deliver).is_err() {
        // The recipient is gone or not keeping up: the relay ends (spec §5.5 limits).
        ctx.relays.end(binding.relay, true);
        return Err(not_found().and_close());
    }
    Ok(None)
}

/// The OK body of a send, echoing the token (HEAD proto).
pub fn sent(token: Vec<u8>) -> ResponseType {
    ResponseType::ApplicationServiceSendMessage(ps::ApplicationServiceSendMessageResponse { token })
}

/// CloseCallRequest: a party of the call ends it; NOT_FOUND for unknown tokens or strangers.
pub fn close_call(
    ctx: &Ctx,
    session: &Session,
    request: ps::CloseCallRequest,
) -> Result<ResponseType, Reject> {
    let requester = match &session.conversation {
        Conversation::Verified(peer) | Conversation::Authenticated(peer) => Some(peer.id),
        Conversation::None | Conversation::Started { .. } => None,
    };
    if !ctx.relays.close_call(&request.token, requester) {
        return Err(not_found());
    }
    Ok(ResponseType::CloseCall(ps::CloseCallResponse {
        token: request.token,
    }))
}
