//! The hosting agreement: ListHostingPlans, RegisterHosting, CheckIn, CancelHostingAgreement
//! (spec §4.3, §4.5, §3.4, §4.9).

use prost::Message as _;

use super::ConversationBody;
use super::conversation::check_challenge_signature;
use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::crypto::{NetworkId, sha256, verify};
use crate::hub::addresses::Quota;
use crate::log_gate::LogGate;
use crate::profile_rules::MAX_TYPE_LEN;
use crate::session::{Conversation, Peer, Session};
use crate::store::identities::RegisterOutcome;
use crate::store::records::HostedIdentity;
use crate::wire::Status;
use crate::wire::ps::{self, conversation_response::ResponseType, single_response};

/// Spec §1.3 / C# DateTime: timestamps must lie within years 1..=9999.
const MIN_TIMESTAMP_MS: i64 = -62_135_596_800_000;
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;
/// Spec §4.5: a contract may start at most one hour in the past.
const START_TIME_TOLERANCE_MS: i64 = 3_600_000;
/// Spec §4.5: hosting contracts run for 10 years (a placeholder until plans are billed).
const CONTRACT_LENGTH_MS: i64 = 10 * 365 * 24 * 3_600_000;

/// Whether `ms` is a representable timestamp (spec §1.3).
pub(crate) fn is_valid_timestamp(ms: i64) -> bool {
    (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms)
}

/// ListHostingPlansRequest: the one free plan for any identity type, while slots are free.
pub(crate) async fn list_hosting_plans(
    ctx: &View,
) -> Result<single_response::ResponseType, Reject> {
    if ctx.store.hosted_count().await? >= u64::from(ctx.config.limits.max_hosted_identities) {
        return Err(Reject::status(Status::ErrorQuotaExceeded));
    }
    let mut plan = ps::HostingPlan {
        plan_id: vec![0; 32],
        server_network_id: ctx.key.network_id().0.to_vec(),
        identity_type: "*".into(),
        ..Default::default()
    };
    // Spec §3.3: plan id = SHA-256 of the plan with a zeroed id.
    plan.plan_id = sha256(&plan.encode_to_vec()).to_vec();
    Ok(single_response::ResponseType::ListHostingPlans(
        ps::ListHostingPlansResponse { plans: vec![plan] },
    ))
}

/// Registrations refused over the per-address limit that are logged, per minute.
static REGISTRATIONS_REFUSED: LogGate = LogGate::new(6);

/// RegisterHostingRequest: checks the signed contract, then stores the agreement (spec §4.5).
pub(crate) async fn register_hosting(
    ctx: &View,
    session: &Session,
    signature: &[u8],
    request: ps::RegisterHostingRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let Conversation::Started { peer, .. } = &session.conversation else {
        return Err(Reject::status(Status::ErrorBadConversationStatus));
    };
    let contract = request.contract.unwrap_or_default();
    let contract_bytes = contract.encode_to_vec();
    if !verify(&peer.public_key, &contract_bytes, signature) {
        return Err(Reject::status(Status::ErrorInvalidSignature));
    }
    if contract.identity_public_key != peer.public_key {
        return Err(Reject::invalid("contract.identityPublicKey"));
    }
    let instant = now.instant;
    let now = now.unix_ms;
    if !is_valid_timestamp(contract.start_time)
        || contract.start_time < now - START_TIME_TOLERANCE_MS
    {
        return Err(Reject::invalid("contract.startTime"));
    }
    let identity_type = &contract.identity_type;
    if identity_type.is_empty() || identity_type.len() > MAX_TYPE_LEN || identity_type.contains('*')
    {
        return Err(Reject::invalid("contract.identityType"));
    }
    let record = HostedIdentity {
        public_key: peer.public_key.clone(),
        identity_type: identity_type.clone(),
        expires_at_ms: now.saturating_add(CONTRACT_LENGTH_MS),
        contract: contract_bytes.clone(),
        registered_at_ms: now,
        ..Default::default()
    };
    if let Some(slot) = &session.address
        && !ctx.hub.addresses.take(slot, Quota::Registration, instant)
    {
        if let Some(held_back) = REGISTRATIONS_REFUSED.pass(instant) {
            tracing::warn!(
                held_back,
                "registration refused: limits.registrations_per_address_per_hour reached"
            );
        }
        return Err(Reject::status(Status::ErrorBusy));
    }
    let max = ctx.config.limits.max_hosted_identities;
    match ctx.catalog.register_hosting(peer.id, record, max).await? {
        RegisterOutcome::Registered => Ok(ConversationBody {
            signature: ctx.key.sign(&contract_bytes),
            body: ResponseType::RegisterHosting(ps::RegisterHostingResponse {
                contract: Some(contract),
            }),
        }),
        RegisterOutcome::QuotaExceeded => Err(Reject::status(Status::ErrorQuotaExceeded)),
        RegisterOutcome::AlreadyExists => Err(Reject::status(Status::ErrorAlreadyExists)),
    }
}

/// CheckInRequest: challenge, signature, hosted check; the session becomes Authenticated and
/// replaces any older connection of the identity (spec §3.4).
pub(crate) async fn check_in(
    ctx: &View,
    session: &mut Session,
    signature: &[u8],
    request: &ps::CheckInRequest,
) -> Result<ConversationBody, Reject> {
    check_challenge_signature(
        session,
        signature,
        &request.challenge,
        &request.encode_to_vec(),
    )?;
    let id = session
        .conversation
        .peer()
        .map(|p| p.id)
        .ok_or(Reject::status(Status::ErrorInternal))?;
    if !is_hosted(ctx, id).await? {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    ctx.hub.registry.check_in(id, session.link());
    session.conversation.authenticate();
    tracing::Span::current().record("identity", tracing::field::display(id));
    Ok(ConversationBody::unsigned(ResponseType::CheckIn(
        ps::CheckInResponse {},
    )))
}

/// Whether the identity is hosted here and has not cancelled.
pub(crate) async fn is_hosted(ctx: &View, id: NetworkId) -> Result<bool, Reject> {
    Ok(ctx
        .store
        .hosted_identity(id)
        .await?
        .is_some_and(|r| !r.cancelled))
}

/// CancelHostingAgreementRequest: ends hosting, optionally naming the new server (spec §4.9).
pub(crate) async fn cancel_hosting_agreement(
    ctx: &View,
    session: &Session,
    peer: Peer,
    request: ps::CancelHostingAgreementRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    let redirect = if request.redirect_to_new_profile_server {
        let target = <[u8; 32]>::try_from(request.new_profile_server_network_id.as_slice())
            .map_err(|_| Reject::invalid("newProfileServerNetworkId"))?;
        Some(target)
    } else {
        None
    };
    if !ctx
        .catalog
        .cancel_hosting(id, redirect, now.unix_ms)
        .await?
    {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    ctx.unpins_queued();
    // Spec §4.9: the identity is no longer online; its services and calls end with this.
    ctx.hub.registry.leave(id, session.connection);
    Ok(ConversationBody::unsigned(
        ResponseType::CancelHostingAgreement(ps::CancelHostingAgreementResponse {}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::{challenge, contract, customer, now, started};

    #[tokio::test]
    async fn registration_checks_the_signature_and_start_time_then_refuses_a_second() {
        let (_dir, ctx) = testing::ctx();
        let key = ServerKey::generate();
        let session = started(&ctx, &key);
        let now = now();
        let (_, request) = contract(&key, now);
        let forged = ServerKey::generate().sign(b"anything");
        let answer = register_hosting(&ctx, &session, &forged, request, now).await;
        assert_eq!(
            answer.err(),
            Some(Reject::status(Status::ErrorInvalidSignature))
        );
        let mut old = now;
        old.unix_ms -= START_TIME_TOLERANCE_MS + 1;
        let (signature, request) = contract(&key, old);
        let answer = register_hosting(&ctx, &session, &signature, request, now).await;
        assert_eq!(answer.err(), Some(Reject::invalid("contract.startTime")));
        let (signature, request) = contract(&key, now);
        let answer = register_hosting(&ctx, &session, &signature, request.clone(), now).await;
        let registered = answer.expect("registered");
        // The server countersigns the contract as it was sent.
        let bytes = request.contract.clone().unwrap_or_default().encode_to_vec();
        assert!(verify(ctx.key.public_key(), &bytes, &registered.signature));
        let again = register_hosting(&ctx, &session, &signature, request, now).await;
        assert_eq!(
            again.err(),
            Some(Reject::status(Status::ErrorAlreadyExists))
        );
    }

    #[tokio::test]
    async fn check_in_needs_a_hosted_identity_and_cancelling_ends_the_hosting() {
        let (_dir, ctx) = testing::ctx();
        let stranger = ServerKey::generate();
        let mut session = started(&ctx, &stranger);
        let request = ps::CheckInRequest {
            challenge: challenge(&session),
        };
        let signature = stranger.sign(&request.encode_to_vec());
        let answer = check_in(&ctx, &mut session, &signature, &request).await;
        assert_eq!(answer.err(), Some(Reject::status(Status::ErrorNotFound)));

        let key = ServerKey::generate();
        let (session, peer) = customer(&ctx, &key, "Alice").await;
        assert!(ctx.hub.registry.online(peer.id).is_some());
        let cancel = ps::CancelHostingAgreementRequest::default();
        cancel_hosting_agreement(&ctx, &session, peer.clone(), cancel, now())
            .await
            .expect("cancelled");
        assert!(!is_hosted(&ctx, peer.id).await.expect("store"));
        assert!(
            ctx.hub.registry.online(peer.id).is_none(),
            "no longer online"
        );
        let again = ps::CancelHostingAgreementRequest::default();
        let answer = cancel_hosting_agreement(&ctx, &session, peer, again, now()).await;
        assert_eq!(answer.err(), Some(Reject::status(Status::ErrorNotFound)));
    }
}
