//! StartConversation and VerifyIdentity: establishing who is on the other end (spec §3).

use prost::Message as _;

use super::ConversationBody;
use super::reject::Reject;
use crate::context::Ctx;
use crate::crypto::{random_bytes, verify};
use crate::session::{Conversation, Peer, Session};
use crate::wire::ps::{self, conversation_response::ResponseType};
use crate::wire::{MAX_PUBLIC_KEY_LEN, Status, VERSION_1_0_0};

/// Spec §3.2: the client challenge is exactly 32 bytes.
const CHALLENGE_LEN: usize = 32;

/// StartConversationRequest (spec §3.2): validates, negotiates 1.0.0, signs the client challenge.
pub fn start(
    ctx: &Ctx,
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
pub fn verify_identity(
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
pub fn check_challenge_signature(
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
