//! What the handlers' unit tests share: a session in a given state and a customer made through
//! the handlers themselves, on [`crate::context::testing::ctx`].

use prost::Message as _;

use super::{conversation, hosting, profile};
use crate::clock::Now;
use crate::context::Ctx;
use crate::crypto::ServerKey;
use crate::role::{Role, RoleSet};
use crate::session::{Conversation, Peer, Session};
use crate::wire::ps;

/// The roles of the TLS client port.
pub(crate) const CLIENT_ROLES: [Role; 3] =
    [Role::ClNonCustomer, Role::ClCustomer, Role::ClAppService];

/// A fixed moment: handlers never read the clock.
pub(crate) fn now() -> Now {
    Now {
        instant: tokio::time::Instant::now(),
        unix_ms: 1_800_000_000_000,
    }
}

/// A fresh connection's session on the client port.
pub(crate) fn session() -> Session {
    Session::new(RoleSet::of(&CLIENT_ROLES), 1, 16)
}

/// A session whose conversation `key` started.
pub(crate) fn started(ctx: &Ctx, key: &ServerKey) -> Session {
    let mut session = session();
    let start = ps::StartConversationRequest {
        supported_versions: vec![vec![1, 0, 0]],
        public_key: key.public_key().to_vec(),
        client_challenge: vec![3; 32],
    };
    conversation::start(ctx, &mut session, start).expect("StartConversation");
    session
}

/// The challenge the server sent in `session`'s StartConversation.
pub(crate) fn challenge(session: &Session) -> Vec<u8> {
    match &session.conversation {
        Conversation::Started { challenge, .. } => challenge.to_vec(),
        other => panic!("not started: {other:?}"),
    }
}

/// A hosting agreement for `key`, signed, starting `now`.
pub(crate) fn contract(key: &ServerKey, now: Now) -> (Vec<u8>, ps::RegisterHostingRequest) {
    let contract = ps::HostingPlanContract {
        plan_id: Vec::new(),
        identity_public_key: key.public_key().to_vec(),
        start_time: now.unix_ms,
        identity_type: "Test Type".into(),
    };
    let signature = key.sign(&contract.encode_to_vec());
    let request = ps::RegisterHostingRequest {
        contract: Some(contract),
    };
    (signature, request)
}

/// The profile `key` signs to initialise its identity, named `name`.
pub(crate) fn profile(key: &ServerKey, name: &str) -> ps::ProfileInformation {
    ps::ProfileInformation {
        version: vec![1, 0, 0],
        public_key: key.public_key().to_vec(),
        r#type: "Test Type".into(),
        name: name.into(),
        ..Default::default()
    }
}

/// A checked-in customer of `key` with an initialised profile named `name`: its session and
/// its proven identity.
pub(crate) async fn customer(ctx: &Ctx, key: &ServerKey, name: &str) -> (Session, Peer) {
    let now = now();
    let mut session = started(ctx, key);
    let (signature, request) = contract(key, now);
    hosting::register_hosting(ctx, &session, &signature, request, now)
        .await
        .expect("RegisterHosting");
    let check_in = ps::CheckInRequest {
        challenge: challenge(&session),
    };
    let signature = key.sign(&check_in.encode_to_vec());
    hosting::check_in(ctx, &mut session, &signature, &check_in)
        .await
        .expect("CheckIn");
    let peer = Peer::new(key.public_key().to_vec());
    let profile = profile(key, name);
    let update = ps::UpdateProfileRequest {
        profile: Some(profile.clone()),
        ..Default::default()
    };
    let signature = key.sign(&profile.encode_to_vec());
    profile::update_profile(ctx, peer.clone(), &signature, update, now)
        .await
        .expect("UpdateProfile");
    (session, peer)
}
