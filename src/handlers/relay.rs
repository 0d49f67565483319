//! The relay channel on clAppService (spec §5.5, legacy model) and CloseCall (HEAD proto).
//!
//! The first ApplicationServiceSendMessage on a connection is its init: it binds the connection
//! to the relay of its token and is answered once both parties joined. Later ones carry data to
//! the other party and are answered when that party acknowledged the delivery.

use tokio::sync::OwnedSemaphorePermit;

use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::hub::outbox::RelayAck;
use crate::hub::relay::{Joined, Refused};
use crate::hub::{Command, Reply, ServerRequestKind, carry_out};
use crate::session::{Conversation, Session};
use crate::wire::ps::{self, single_request, single_response::ResponseType};
use crate::wire::{Status, request};

/// NOT_FOUND and close, after telling the parties of the relays the refusal ended.
fn refused(ctx: &View, refusal: Refused) -> Reject {
    carry_out(&ctx.hub.relays, refusal.0);
    Reject::status(Status::ErrorNotFound).and_close()
}

/// ApplicationServiceSendMessageRequest: an init or a data message; `Ok(None)` defers the answer.
pub(crate) fn application_service_send_message(
    ctx: &View,
    session: &mut Session,
    id: u32,
    request: ps::ApplicationServiceSendMessageRequest,
    budget: OwnedSemaphorePermit,
    now: Now,
) -> Result<Option<ResponseType>, Reject> {
    let Some(binding) = session.relay else {
        let joined = ctx
            .hub
            .relays
            .join(&request.token, session.link(), id, now.instant)
            .map_err(|refusal| refused(ctx, refusal))?;
        return Ok(match joined {
            Joined::Waiting(binding) => {
                session.relay = Some(binding);
                None
            }
            Joined::Open(binding, effects) => {
                session.relay = Some(binding);
                carry_out(&ctx.hub.relays, effects);
                Some(sent(request.token))
            }
        });
    };
    let peer = ctx
        .hub
        .relays
        .route(binding, &request.token)
        .map_err(|refusal| refused(ctx, refusal))?;
    let delivery = single_request::RequestType::ApplicationServiceReceiveMessageNotification(
        ps::ApplicationServiceReceiveMessageNotificationRequest {
            message: request.message,
        },
    );
    let ack = RelayAck {
        relay: binding.relay,
        outbox: session.link().outbox,
        message_id: id,
        token: request.token,
    };
    let deliver = Command::request(
        ServerRequestKind::ReceiveMessageNotification,
        request::single(0, delivery),
        Reply::Relay(ack),
        Some(budget),
    );
    if peer.outbox.try_push(deliver).is_err() {
        // The recipient is gone or not keeping up: the relay ends (spec §5.5 limits).
        carry_out(&ctx.hub.relays, ctx.hub.relays.end(binding.relay, true));
        return Err(Reject::status(Status::ErrorNotFound).and_close());
    }
    Ok(None)
}

/// The OK body of a send, echoing the token (HEAD proto).
pub(crate) fn sent(token: Vec<u8>) -> ResponseType {
    ResponseType::ApplicationServiceSendMessage(ps::ApplicationServiceSendMessageResponse { token })
}

/// CloseCallRequest: a party of the call ends it; NOT_FOUND for unknown tokens or strangers.
pub(crate) fn close_call(
    ctx: &View,
    session: &Session,
    request: ps::CloseCallRequest,
) -> Result<ResponseType, Reject> {
    let requester = match &session.conversation {
        Conversation::Verified(peer) | Conversation::Authenticated(peer) => Some(peer.id),
        Conversation::None | Conversation::Started { .. } => None,
    };
    let effects = ctx
        .hub
        .relays
        .close_call(&request.token, requester)
        .ok_or(Reject::status(Status::ErrorNotFound))?;
    carry_out(&ctx.hub.relays, effects);
    Ok(ResponseType::CloseCall(ps::CloseCallResponse {
        token: request.token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::handlers::testing::{now, session};

    #[tokio::test]
    async fn unknown_tokens_are_not_found_and_a_send_without_a_relay_closes() {
        let (_dir, ctx) = testing::ctx();
        let mut stranger = session();
        let close = ps::CloseCallRequest { token: vec![1; 16] };
        let answer = close_call(&ctx, &stranger, close);
        assert_eq!(answer.err(), Some(Reject::status(Status::ErrorNotFound)));
        let send = ps::ApplicationServiceSendMessageRequest {
            token: vec![2; 16],
            message: b"hello".to_vec(),
        };
        let budget = ctx.budgets.inflight.nothing().expect("budget");
        let answer = application_service_send_message(&ctx, &mut stranger, 7, send, budget, now());
        let refused = answer.expect_err("no relay has that token");
        assert_eq!(refused.status, Status::ErrorNotFound);
        assert!(refused.closes_connection());
        assert!(stranger.relay.is_none());
    }
}
