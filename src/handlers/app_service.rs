//! Application services of a checked-in session: ApplicationServiceAdd and Remove
//! (spec §4.10, §4.11). Calls and the relay live elsewhere.

use super::ConversationBody;
use super::reject::Reject;
use crate::context::Ctx;
use crate::hub::registry::AddError;
use crate::session::{Peer, Session};
use crate::wire::Status;
use crate::wire::ps::{self, conversation_response::ResponseType};

/// ApplicationServiceAddRequest: all names valid and the union at most 50, else nothing changes.
pub fn application_service_add(
    ctx: &Ctx,
    session: &Session,
    peer: &Peer,
    request: &ps::ApplicationServiceAddRequest,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    let added = ctx
        .registry
        .with_services(id, session.connection, |services| {
            services.add_all(&request.service_names)
        })
        .ok_or(Reject::status(Status::ErrorNotFound))?;
    match added {
        Ok(()) => Ok(ConversationBody::unsigned(
            ResponseType::ApplicationServiceAdd(ps::ApplicationServiceAddResponse {}),
        )),
        Err(AddError::Invalid(index)) => Err(Reject::invalid(format!("serviceNames[{index}]"))),
        Err(AddError::Quota) => Err(Reject::status(Status::ErrorQuotaExceeded)),
    }
}

/// ApplicationServiceRemoveRequest: NOT_FOUND when the name is not enabled.
pub fn application_service_remove(
    ctx: &Ctx,
    session: &Session,
    peer: &Peer,
    request: &ps::ApplicationServiceRemoveRequest,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    let removed = ctx
        .registry
        .with_services(id, session.connection, |services| {
            services.remove(&request.service_name)
        })
        .unwrap_or(false);
    if !removed {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    Ok(ConversationBody::unsigned(
        ResponseType::ApplicationServiceRemove(ps::ApplicationServiceRemoveResponse {}),
    ))
}
