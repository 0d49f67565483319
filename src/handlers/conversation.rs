//! StartConversation and VerifyIdentity: establishing who is on the other end (spec §3).

use prost::Message as _;

use super::ConversationBody;
use super::reject::Reject;
use crate::context::View;
use crate::crypto::{random_bytes, verify};
use crate::session::{Conversation, Peer, Session};
use crate::wire::ps::{self, conversation_response::ResponseType};
use crate::wire::{MAX_PUBLIC_KEY_LEN, Status, VERSION_1_0_0};

/// Spec §3.2: the client challenge is exactly 32 bytes.
const CHALLENGE_LEN: usize = 32;

/// StartConversationRequest (spec §3.2): validates, negotiates 1.0.0, signs the client challenge.
pub(crate) fn start(
    ctx: &View,
    session: &mut Session,
    request: ps::StartConversationRequest,
) -> Result<ConversationBody, Reject> {
    if request.client_challenge.len() != CHALLENGE_LEN {
        return Err(Reject::invalid("clientChallenge"));
    }
    if request.public_key.is_empty() || request.public_key.len() > MAX_PUBLIC_KEY_LEN {
        return Err(Reject::invalid("publicKey"));
    }
    if !request
        .supported_versions
        .iter()
        .any(|v| v.as_slice() == VERSION_1_0_0)
    {
        return Err(Reject::status(Status::ErrorUnsupported));
    }
    let challenge: [u8; CHALLENGE_LEN] = random_bytes();
    let signature = ctx.key.sign(&request.client_challenge);
    session.conversation = Conversation::Started {
        peer: Peer::new(request.public_key),
        challenge,
    };
    Ok(ConversationBody {
        signature,
        body: ResponseType::Start(ps::StartConversationResponse {
            version: VERSION_1_0_0.to_vec(),
            public_key: ctx.key.public_key().to_vec(),
            challenge: challenge.to_vec(),
            client_challenge: request.client_challenge,
        }),
    })
}

/// VerifyIdentityRequest (spec §3.4): challenge echo, then signature; the session becomes Verified.
pub(crate) fn verify_identity(
    session: &mut Session,
    signature: &[u8],
    request: &ps::VerifyIdentityRequest,
) -> Result<ConversationBody, Reject> {
    check_challenge_signature(
        session,
        signature,
        &request.challenge,
        &request.encode_to_vec(),
    )?;
    session.conversation.verify();
    Ok(ConversationBody::unsigned(ResponseType::VerifyIdentity(
        ps::VerifyIdentityResponse {},
    )))
}

/// The checks CheckIn and VerifyIdentity share (spec §3.4 steps 2 and 3): the challenge must be
/// the one sent in StartConversation, and `signed` must carry the peer's signature.
pub(crate) fn check_challenge_signature(
    session: &Session,
    signature: &[u8],
    challenge: &[u8],
    signed: &[u8],
) -> Result<(), Reject> {
    let Conversation::Started {
        peer,
        challenge: expected,
    } = &session.conversation
    else {
        // The gate admits these requests only in the Started state.
        return Err(Reject::status(Status::ErrorBadConversationStatus));
    };
    if challenge != expected {
        return Err(Reject::invalid("challenge"));
    }
    if !verify(&peer.public_key, signed, signature) {
        return Err(Reject::status(Status::ErrorInvalidSignature));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::{challenge, session, started};

    #[tokio::test]
    async fn start_signs_the_client_challenge_and_refuses_what_it_cannot_speak() {
        let (_dir, ctx) = testing::ctx();
        let key = ServerKey::generate();
        let mut fresh = session();
        let request = |versions: Vec<Vec<u8>>, challenge_len: usize| ps::StartConversationRequest {
            supported_versions: versions,
            public_key: key.public_key().to_vec(),
            client_challenge: vec![9; challenge_len],
        };
        let short = start(&ctx, &mut fresh, request(vec![vec![1, 0, 0]], 31));
        assert_eq!(short.err(), Some(Reject::invalid("clientChallenge")));
        let later = start(&ctx, &mut fresh, request(vec![vec![2, 0, 0]], 32));
        assert_eq!(later.err(), Some(Reject::status(Status::ErrorUnsupported)));
        assert_eq!(fresh.conversation, Conversation::None);
        let answer = start(
            &ctx,
            &mut fresh,
            request(vec![vec![2, 0, 0], vec![1, 0, 0]], 32),
        )
        .expect("1.0.0 is offered");
        assert!(verify(ctx.key.public_key(), &[9; 32], &answer.signature));
        assert!(matches!(fresh.conversation, Conversation::Started { .. }));
    }

    #[tokio::test]
    async fn verify_identity_wants_our_challenge_signed_by_the_started_key() {
        let (_dir, ctx) = testing::ctx();
        let key = ServerKey::generate();
        let mut session = started(&ctx, &key);
        let wrong = ps::VerifyIdentityRequest {
            challenge: vec![0; 32],
        };
        let signature = key.sign(&wrong.encode_to_vec());
        assert_eq!(
            verify_identity(&mut session, &signature, &wrong).err(),
            Some(Reject::invalid("challenge"))
        );
        let right = ps::VerifyIdentityRequest {
            challenge: challenge(&session),
        };
        let stranger = ServerKey::generate().sign(&right.encode_to_vec());
        assert_eq!(
            verify_identity(&mut session, &stranger, &right).err(),
            Some(Reject::status(Status::ErrorInvalidSignature))
        );
        let signature = key.sign(&right.encode_to_vec());
        assert!(verify_identity(&mut session, &signature, &right).is_ok());
        assert!(matches!(session.conversation, Conversation::Verified(_)));
    }
}
