//! CallIdentityApplicationService (spec §4.13, §4.14): the checks, the IncomingCallNotification
//! to the callee, and the caller's deferred answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::reject::Reject;
use super::{ConversationBody, authenticated_or_verified_peer};
use crate::context::Ctx;
use crate::crypto::NetworkId;
use crate::outbox::{Command, Outbox};
use crate::session::Session;
use crate::session::pending::{Reply, ServerRequestKind};
use crate::wire::ps::{self, conversation_request, conversation_response::ResponseType};
use crate::wire::{Status, frame, request, response};

/// CallIdentityApplicationServiceRequest: checks in the specified order, then rings the callee.
/// The answer is deferred (`Ok(None)`) until the callee answers, fails or times out.
pub async fn call_identity_application_service(
    ctx: &Arc<Ctx>,
    session: &Session,
    id: u32,
    request: &ps::CallIdentityApplicationServiceRequest,
) -> Result<Option<ConversationBody>, Reject> {
    let caller = authenticated_or_verified_peer(session)?.clone();
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
    let Some((callee_link, services)) = ctx.registry.online(callee) else {
        return Err(Reject::status(Status::ErrorNotAvailable));
    };
    if !services.contains(&request.service_name) {
        return Err(Reject::invalid("serviceName"));
    }
    let call = ctx
        .relays
        .place_call(caller.id, callee)
        .ok_or(Reject::status(Status::ErrorBusy))?;
    let notification = ps::IncomingCallNotificationRequest {
        caller_public_key: caller.public_key,
        service_name: request.service_name.clone(),
        callee_token: call.callee_token.to_vec(),
    };
    let body = conversation_request::RequestType::IncomingCallNotification(notification);
    let (reply, answer) = oneshot::channel();
    let ring = Command::Request {
        kind: ServerRequestKind::IncomingCallNotification,
        message: Box::new(request::conversation(0, Vec::new(), body)),
        reply: Reply::Channel(reply),
        budget: None,
    };
    if callee_link.outbox.try_push(ring).is_err() {
        ctx.relays.end(call.relay, false);
        return Err(Reject::status(Status::ErrorNotAvailable));
    }
    let waiting = Waiting {
        ctx: Arc::clone(ctx),
        caller: session.link.outbox.clone(),
        id,
        relay: call.relay,
    };
    tokio::spawn(waiting.answer_when_ready(answer, call.caller_token.to_vec()));
    Ok(None)
}

/// A caller waiting for the callee's answer.
struct Waiting {
    ctx: Arc<Ctx>,
    caller: Outbox,
    id: u32,
    relay: u64,
}

impl Waiting {
    /// Maps the callee's answer to the caller's (spec §4.13) and starts the join timer.
    async fn answer_when_ready(
        self,
        answer: oneshot::Receiver<ps::Response>,
        caller_token: Vec<u8>,
    ) {
        let timeouts = self.ctx.config.timeouts;
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeouts.call_answer, answer) => answer,
            () = self.caller.closed() => {
                self.ctx.relays.caller_left(self.relay);
                return;
            }
        };
        let status = match answer {
            Ok(Ok(answer)) => Status::try_from(answer.status).unwrap_or(Status::ErrorInternal),
            Ok(Err(_)) | Err(_) => Status::ErrorNotAvailable,
        };
        let stage = (status == Status::Ok)
            .then(|| self.ctx.relays.accept(self.relay))
            .flatten();
        let message = match (status, stage) {
            (Status::Ok, Some(stage)) => {
                spawn_join_timer(&self.ctx, self.relay, stage, timeouts.relay_join);
                let body = ResponseType::CallIdentityApplicationService(
                    ps::CallIdentityApplicationServiceResponse { caller_token },
                );
                response::conversation(self.id, Vec::new(), body)
            }
            (refusal, _) => {
                self.ctx.relays.end(self.relay, false);
                let status = if refusal == Status::ErrorRejected {
                    refusal
                } else {
                    Status::ErrorNotAvailable
                };
                response::error(self.id, status, "")
            }
        };
        if self
            .caller
            .try_push(Command::Send(frame::encode(&message)))
            .is_err()
        {
            self.ctx.relays.caller_left(self.relay);
        }
    }
}

/// Ends the relay after `after` unless it moved on from `stage` meanwhile (spec §5.5 timers).
pub fn spawn_join_timer(ctx: &Arc<Ctx>, relay: u64, stage: u64, after: Duration) {
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        ctx.relays.expire(relay, stage);
    });
}
