//! Application services of a checked-in session: ApplicationServiceAdd and Remove
//! (spec §4.10, §4.11). Calls and the relay live elsewhere.

use super::ConversationBody;
use super::reject::Reject;
use crate::context::View;
use crate::hub::registry::AddError;
use crate::session::{Peer, Session};
use crate::wire::Status;
use crate::wire::ps::{self, conversation_response::ResponseType};

/// ApplicationServiceAddRequest: all names valid and the union at most 50, else nothing changes.
pub(crate) fn application_service_add(
    ctx: &View,
    session: &Session,
    peer: &Peer,
    request: &ps::ApplicationServiceAddRequest,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    let added = ctx
        .hub
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
pub(crate) fn application_service_remove(
    ctx: &View,
    session: &Session,
    peer: &Peer,
    request: &ps::ApplicationServiceRemoveRequest,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    let removed = ctx
        .hub
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::customer;

    fn add(names: &[&str]) -> ps::ApplicationServiceAddRequest {
        ps::ApplicationServiceAddRequest {
            service_names: names.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    fn services(ctx: &View, peer: &Peer) -> Vec<String> {
        ctx.hub
            .registry
            .online(peer.id)
            .map(|(_, services)| services.names())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn services_are_added_all_or_none_and_removed_by_name() {
        let (_dir, ctx) = testing::ctx();
        let (session, peer) = customer(&ctx, &ServerKey::generate(), "Alice").await;
        application_service_add(&ctx, &session, &peer, &add(&["chat"])).expect("added");
        let bad = application_service_add(&ctx, &session, &peer, &add(&["mail", ""]));
        assert_eq!(bad.err(), Some(Reject::invalid("serviceNames[1]")));
        assert_eq!(services(&ctx, &peer), vec!["chat".to_owned()]);
        let many: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let over = application_service_add(&ctx, &session, &peer, &add(&many));
        assert_eq!(over.err(), Some(Reject::status(Status::ErrorQuotaExceeded)));
        assert_eq!(
            services(&ctx, &peer).len(),
            1,
            "nothing of a refused list is added"
        );
        let remove = |name: &str| ps::ApplicationServiceRemoveRequest {
            service_name: name.to_owned(),
        };
        application_service_remove(&ctx, &session, &peer, &remove("chat")).expect("removed");
        let gone = application_service_remove(&ctx, &session, &peer, &remove("chat"));
        assert_eq!(gone.err(), Some(Reject::status(Status::ErrorNotFound)));
    }
}
