//! CallIdentityApplicationService (spec §4.13): the checks before a call is placed.
//!
//! Placing the call (IncomingCallNotification, tokens, the relay) is not built yet; a call that
//! passes every check is answered with ERROR_UNSUPPORTED.

use super::ConversationBody;
use super::reject::Reject;
use crate::context::Ctx;
use crate::crypto::NetworkId;
use crate::wire::Status;
use crate::wire::ps;

/// CallIdentityApplicationServiceRequest: callee hosted, initialised, online, offering the service.
pub async fn call_identity_application_service(
    ctx: &Ctx,
    request: &ps::CallIdentityApplicationServiceRequest,
) -> Result<ConversationBody, Reject> {
    let callee = NetworkId::from_slice(&request.identity_network_id);
    let record = match callee {
        Some(id) => ctx
            .store
            .hosted_identity(id)
            .await?
            .filter(|r| !r.cancelled)
            .map(|r| (id, r)),
        None => None,
    };
    let Some((id, record)) = record else {
        return Err(Reject::invalid("identityNetworkId"));
    };
    if !record.initialized {
        return Err(Reject::status(Status::ErrorUninitialized));
    }
    let Some((_, services)) = ctx.registry.online(id) else {
        return Err(Reject::status(Status::ErrorNotAvailable));
    };
    if !services.contains(&request.service_name) {
        return Err(Reject::invalid("serviceName"));
    }
    Err(Reject::not_implemented())
}
