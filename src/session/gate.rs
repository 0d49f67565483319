//! Which request may arrive on which role and in which conversation state (spec §2.3, §3.1).
//!
//! The gates run in a fixed order: role first (BAD_ROLE), then conversation state
//! (BAD_CONVERSATION_STATUS or UNAUTHORIZED). Field validation belongs to the handlers.

use super::{Conversation, Peer, Session};
use crate::role::{Role, RoleSet};
use crate::wire::Status;
use crate::wire::ps::{self, conversation_request, request, single_request};

/// Every request type a client may send, without its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Ping,
    ListRoles,
    ListHostingPlans,
    GetProfileInformation,
    ProfileSearch,
    ProfileSearchPart,
    ApplicationServiceSendMessage,
    ProfileStats,
    GetIdentityRelationshipsInformation,
    CloseCall,
    StartConversation,
    RegisterHosting,
    CheckIn,
    VerifyIdentity,
    UpdateProfile,
    CancelHostingAgreement,
    ApplicationServiceAdd,
    ApplicationServiceRemove,
    CallIdentityApplicationService,
    AddRelatedIdentity,
    RemoveRelatedIdentity,
    StartNeighborhoodInitialization,
    FinishNeighborhoodInitialization,
    NeighborhoodSharedProfileUpdate,
    StopNeighborhoodUpdates,
    CanStoreData,
    CanPublishIpnsRecord,
}

/// The conversation state a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// No requirement.
    Nothing,
    /// Exactly NoConversation.
    NoConversation,
    /// Exactly ConversationStarted.
    Started,
    /// Verified or Authenticated.
    Verified,
    /// Authenticated only.
    Authenticated,
}

/// Where a request may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Roles any of which the port must serve.
    pub roles: RoleSet,
    /// Conversation state needed.
    pub need: Need,
}

/// A request rejected by a gate, with the status to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub Status);

impl RequestKind {
    /// The name of every kind, indexed by [`RequestKind::index`] (for metrics labels).
    pub(crate) const NAMES: [&'static str; 27] = [
        "Ping",
        "ListRoles",
        "ListHostingPlans",
        "GetProfileInformation",
        "ProfileSearch",
        "ProfileSearchPart",
        "ApplicationServiceSendMessage",
        "ProfileStats",
        "GetIdentityRelationshipsInformation",
        "CloseCall",
        "StartConversation",
        "RegisterHosting",
        "CheckIn",
        "VerifyIdentity",
        "UpdateProfile",
        "CancelHostingAgreement",
        "ApplicationServiceAdd",
        "ApplicationServiceRemove",
        "CallIdentityApplicationService",
        "AddRelatedIdentity",
        "RemoveRelatedIdentity",
        "StartNeighborhoodInitialization",
        "FinishNeighborhoodInitialization",
        "NeighborhoodSharedProfileUpdate",
        "StopNeighborhoodUpdates",
        "CanStoreData",
        "CanPublishIpnsRecord",
    ];

    /// The kind's position in [`RequestKind::NAMES`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The kind of any request; `None` for an empty one or one only the server may send.
    pub(crate) fn of_request(request: &ps::Request) -> Option<RequestKind> {
        match &request.conversation_type {
            Some(request::ConversationType::SingleRequest(single)) => single
                .request_type
                .as_ref()
                .and_then(RequestKind::of_single),
            Some(request::ConversationType::ConversationRequest(conversation)) => conversation
                .request_type
                .as_ref()
                .and_then(RequestKind::of_conversation),
            None => None,
        }
    }

    /// The kind of a single request; `None` for requests only the server may send (spec §1.4).
    pub(crate) fn of_single(request: &single_request::RequestType) -> Option<RequestKind> {
        use single_request::RequestType as R;
        Some(match request {
            R::Ping(_) => RequestKind::Ping,
            R::ListRoles(_) => RequestKind::ListRoles,
            R::ListHostingPlans(_) => RequestKind::ListHostingPlans,
            R::GetProfileInformation(_) => RequestKind::GetProfileInformation,
            R::ProfileSearch(_) => RequestKind::ProfileSearch,
            R::ProfileSearchPart(_) => RequestKind::ProfileSearchPart,
            R::ApplicationServiceSendMessage(_) => RequestKind::ApplicationServiceSendMessage,
            R::ProfileStats(_) => RequestKind::ProfileStats,
            R::GetIdentityRelationshipsInformation(_) => {
                RequestKind::GetIdentityRelationshipsInformation
            }
            R::CloseCall(_) => RequestKind::CloseCall,
            R::ApplicationServiceReceiveMessageNotification(_) => return None,
        })
    }

    /// The kind of a conversation request; `None` for requests only the server may send.
    pub(crate) fn of_conversation(
        request: &conversation_request::RequestType,
    ) -> Option<RequestKind> {
        use conversation_request::RequestType as R;
        Some(match request {
            R::Start(_) => RequestKind::StartConversation,
            R::RegisterHosting(_) => RequestKind::RegisterHosting,
            R::CheckIn(_) => RequestKind::CheckIn,
            R::VerifyIdentity(_) => RequestKind::VerifyIdentity,
            R::UpdateProfile(_) => RequestKind::UpdateProfile,
            R::CancelHostingAgreement(_) => RequestKind::CancelHostingAgreement,
            R::ApplicationServiceAdd(_) => RequestKind::ApplicationServiceAdd,
            R::ApplicationServiceRemove(_) => RequestKind::ApplicationServiceRemove,
            R::CallIdentityApplicationService(_) => RequestKind::CallIdentityApplicationService,
            R::AddRelatedIdentity(_) => RequestKind::AddRelatedIdentity,
            R::RemoveRelatedIdentity(_) => RequestKind::RemoveRelatedIdentity,
            R::StartNeighborhoodInitialization(_) => RequestKind::StartNeighborhoodInitialization,
            R::FinishNeighborhoodInitialization(_) => RequestKind::FinishNeighborhoodInitialization,
            R::NeighborhoodSharedProfileUpdate(_) => RequestKind::NeighborhoodSharedProfileUpdate,
            R::StopNeighborhoodUpdates(_) => RequestKind::StopNeighborhoodUpdates,
            R::CanStoreData(_) => RequestKind::CanStoreData,
            R::CanPublishIpnsRecord(_) => RequestKind::CanPublishIpnsRecord,
            R::IncomingCallNotification(_) => return None,
        })
    }

    /// The spec §2.3 table row for this request.
    pub(crate) fn rule(self) -> Rule {
        use RequestKind as K;
        use Role::{ClAppService, ClCustomer, ClNonCustomer, Primary, SrNeighbor};
        let clients = RoleSet::of(&[ClNonCustomer, ClCustomer]);
        let customer = RoleSet::of(&[ClCustomer]);
        let neighbor = RoleSet::of(&[SrNeighbor]);
        let any = RoleSet::of(&Role::ALL);
        let (roles, need) = match self {
            K::Ping => (any, Need::Nothing),
            K::ListRoles => (RoleSet::of(&[Primary]), Need::Nothing),
            K::ListHostingPlans => (RoleSet::of(&[ClNonCustomer]), Need::Nothing),
            K::GetProfileInformation
            | K::ProfileSearch
            | K::ProfileSearchPart
            | K::ProfileStats
            | K::GetIdentityRelationshipsInformation
            | K::CloseCall => (clients, Need::Nothing),
            K::ApplicationServiceSendMessage => (RoleSet::of(&[ClAppService]), Need::Nothing),
            K::StartConversation => (any, Need::NoConversation),
            K::RegisterHosting => (RoleSet::of(&[ClNonCustomer]), Need::Started),
            K::CheckIn => (customer, Need::Started),
            K::VerifyIdentity => (RoleSet::of(&[ClNonCustomer, SrNeighbor]), Need::Started),
            K::UpdateProfile
            | K::CancelHostingAgreement
            | K::ApplicationServiceAdd
            | K::ApplicationServiceRemove
            | K::AddRelatedIdentity
            | K::RemoveRelatedIdentity
            | K::CanStoreData
            | K::CanPublishIpnsRecord => (customer, Need::Authenticated),
            K::CallIdentityApplicationService => (clients, Need::Verified),
            K::StartNeighborhoodInitialization
            | K::FinishNeighborhoodInitialization
            | K::NeighborhoodSharedProfileUpdate
            | K::StopNeighborhoodUpdates => (neighbor, Need::Verified),
        };
        Rule { roles, need }
    }
}

/// What the gates let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// A request that needs no proven identity.
    Anyone,
    /// A request that needs one, with the identity its conversation proved: Verified or
    /// Authenticated, or only Authenticated where the request is a checked-in customer's.
    Proven(Peer),
}

/// Runs the role gate, then the conversation gate, for a request of `kind` in `session`; a
/// request that needs a proven identity is admitted with it, so its handler takes it from here.
pub(crate) fn admit(kind: RequestKind, session: &Session) -> Result<Admitted, Refusal> {
    let rule = kind.rule();
    if !rule.roles.intersects(session.roles) {
        return Err(Refusal(Status::ErrorBadRole));
    }
    let state = &session.conversation;
    let exactly = |admitted: bool| {
        if admitted {
            Ok(Admitted::Anyone)
        } else {
            Err(Refusal(Status::ErrorBadConversationStatus))
        }
    };
    match (rule.need, state) {
        (Need::Nothing, _) => Ok(Admitted::Anyone),
        (Need::NoConversation, _) => exactly(matches!(state, Conversation::None)),
        (Need::Started, _) => exactly(matches!(state, Conversation::Started { .. })),
        (Need::Verified, Conversation::Verified(peer) | Conversation::Authenticated(peer))
        | (Need::Authenticated, Conversation::Authenticated(peer)) => {
            Ok(Admitted::Proven(peer.clone()))
        }
        (Need::Verified | Need::Authenticated, _) => Err(Refusal(Status::ErrorUnauthorized)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kinds() {
        for kind in [
            RequestKind::Ping,
            RequestKind::StartConversation,
            RequestKind::CanPublishIpnsRecord,
        ] {
            assert_eq!(RequestKind::NAMES[kind.index()], format!("{kind:?}"));
        }
    }
    fn session(roles: &[Role], conversation: Conversation) -> Session {
        let mut session = Session::new(RoleSet::of(roles), 0, 1);
        session.conversation = conversation;
        session
    }

    fn started() -> Conversation {
        Conversation::Started {
            peer: Peer::new(vec![1; 32]),
            challenge: [2; 32],
        }
    }

    #[test]
    fn role_is_checked_before_state() {
        // PS01009: CallIdentityApplicationService on primary without a conversation.
        let primary = session(&[Role::Primary], Conversation::None);
        assert_eq!(
            admit(RequestKind::CallIdentityApplicationService, &primary),
            Err(Refusal(Status::ErrorBadRole))
        );
    }

    #[test]
    fn exact_state_requirements_give_bad_conversation_status() {
        let client = session(&[Role::ClNonCustomer], Conversation::None);
        assert_eq!(
            admit(RequestKind::VerifyIdentity, &client),
            Err(Refusal(Status::ErrorBadConversationStatus))
        );
        let again = session(&[Role::ClNonCustomer], started());
        assert_eq!(
            admit(RequestKind::StartConversation, &again),
            Err(Refusal(Status::ErrorBadConversationStatus))
        );
        let verified = session(
            &[Role::ClNonCustomer],
            Conversation::Verified(Peer::new(vec![1])),
        );
        assert_eq!(
            admit(RequestKind::RegisterHosting, &verified),
            Err(Refusal(Status::ErrorBadConversationStatus))
        );
    }

    #[test]
    fn minimum_state_requirements_give_unauthorized() {
        let client = session(&[Role::ClNonCustomer, Role::ClCustomer], started());
        assert_eq!(
            admit(RequestKind::CallIdentityApplicationService, &client),
            Err(Refusal(Status::ErrorUnauthorized))
        );
        assert_eq!(
            admit(RequestKind::UpdateProfile, &client),
            Err(Refusal(Status::ErrorUnauthorized))
        );
        let authenticated = session(
            &[Role::ClCustomer],
            Conversation::Authenticated(Peer::new(vec![1])),
        );
        assert_eq!(
            admit(RequestKind::CallIdentityApplicationService, &authenticated),
            Ok(Admitted::Proven(Peer::new(vec![1])))
        );
    }

    #[test]
    fn ping_and_start_work_everywhere() {
        for role in Role::ALL {
            let fresh = session(&[role], Conversation::None);
            assert_eq!(admit(RequestKind::Ping, &fresh), Ok(Admitted::Anyone));
            assert_eq!(
                admit(RequestKind::StartConversation, &fresh),
                Ok(Admitted::Anyone)
            );
        }
    }

    #[test]
    fn list_roles_only_on_primary() {
        let tls = session(
            &[Role::ClNonCustomer, Role::ClCustomer, Role::SrNeighbor],
            Conversation::None,
        );
        assert_eq!(
            admit(RequestKind::ListRoles, &tls),
            Err(Refusal(Status::ErrorBadRole))
        );
        let primary = session(&[Role::Primary], Conversation::None);
        assert_eq!(
            admit(RequestKind::ListRoles, &primary),
            Ok(Admitted::Anyone)
        );
    }
}
