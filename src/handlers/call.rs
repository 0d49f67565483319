//! CallIdentityApplicationService (spec §4.13, §4.14): the checks, then the
//! IncomingCallNotification to the callee. The caller's answer is deferred: the hub's relay
//! decides it when the callee answers, leaves, or its ring deadline passes.

use super::ConversationBody;
use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::crypto::NetworkId;
use crate::hub::relay::Caller;
use crate::hub::{Command, Reply, ServerRequestKind, carry_out};
use crate::session::{Peer, Session};
use crate::wire::Status;
use crate::wire::ps::{self, conversation_request};
use crate::wire::request;

/// CallIdentityApplicationServiceRequest: checks in the specified order, then rings the callee.
/// The answer is deferred (`Ok(None)`) until the callee answers, fails or times out.
pub(crate) async fn call_identity_application_service(
    ctx: &View,
    session: &mut Session,
    caller: Peer,
    id: u32,
    request: &ps::CallIdentityApplicationServiceRequest,
    now: Now,
) -> Result<Option<ConversationBody>, Reject> {
    let callee = NetworkId::from_slice(&request.identity_network_id);
    let record = match callee {
        Some(callee) => ctx
            .store
            .hosted_identity(callee)
            .await?
            .filter(|r| !r.cancelled)
            .map(|r| (callee, r)),
        None => None,
    };
    let Some((callee, record)) = record else {
        return Err(Reject::invalid("identityNetworkId"));
    };
    if !record.initialized {
        return Err(Reject::status(Status::ErrorUninitialized));
    }
    let Some((callee_link, services)) = ctx.hub.registry.online(callee) else {
        return Err(Reject::status(Status::ErrorNotAvailable));
    };
    if !services.contains(&request.service_name) {
        return Err(Reject::invalid("serviceName"));
    }
    let from = Caller {
        id: caller.id,
        link: session.link(),
        request_id: id,
    };
    let call = ctx
        .hub
        .relays
        .place_call(from, callee, now.instant)
        .ok_or(Reject::status(Status::ErrorBusy))?;
    let notification = ps::IncomingCallNotificationRequest {
        caller_public_key: caller.public_key,
        service_name: request.service_name.clone(),
        callee_token: call.callee_token.to_vec(),
    };
    let body = conversation_request::RequestType::IncomingCallNotification(notification);
    let ring = Command::request(
        ServerRequestKind::IncomingCallNotification,
        request::conversation(0, Vec::new(), body),
        Reply::Call {
            relay: call.relay,
            answer_by: call.answer_by,
        },
        None,
    );
    if callee_link.outbox.try_push(ring).is_err() {
        // The notification cannot be sent: the relay answers the caller NOT_AVAILABLE.
        carry_out(
            &ctx.hub.relays,
            ctx.hub.relays.call_answered(call.relay, None, now.instant),
        );
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::reject::Reject;
    use crate::handlers::testing::{customer, now, session};

    /// The caller's refusal of `request`.
    async fn refused(
        ctx: &View,
        caller: &mut Session,
        peer: &Peer,
        request: &ps::CallIdentityApplicationServiceRequest,
    ) -> Option<Reject> {
        call_identity_application_service(ctx, caller, peer.clone(), 1, request, now())
            .await
            .err()
    }

    #[tokio::test]
    async fn a_call_is_checked_for_a_hosted_callee_then_its_presence_and_service() {
        let (_dir, ctx) = testing::ctx();
        let mut caller = session();
        let caller_peer = Peer::new(ServerKey::generate().public_key().to_vec());
        let request = |id: Vec<u8>, service: &str| ps::CallIdentityApplicationServiceRequest {
            identity_network_id: id,
            service_name: service.into(),
        };
        let unknown = request(vec![1; 32], "chat");
        assert_eq!(
            refused(&ctx, &mut caller, &caller_peer, &unknown).await,
            Some(Reject::invalid("identityNetworkId"))
        );

        let (callee_session, callee) = customer(&ctx, &ServerKey::generate(), "Callee").await;
        let no_service = request(callee.id.0.to_vec(), "chat");
        assert_eq!(
            refused(&ctx, &mut caller, &caller_peer, &no_service).await,
            Some(Reject::invalid("serviceName"))
        );
        ctx.hub.registry.leave(callee.id, callee_session.connection);
        assert_eq!(
            refused(&ctx, &mut caller, &caller_peer, &no_service).await,
            Some(Reject::status(Status::ErrorNotAvailable))
        );
    }
}
