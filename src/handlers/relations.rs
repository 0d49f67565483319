//! Relationship cards (spec §4.20): AddRelatedIdentity, RemoveRelatedIdentity,
//! GetIdentityRelationshipsInformation.

use prost::Message as _;

use super::ConversationBody;
use super::hosting::{is_hosted, is_valid_timestamp};
use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::crypto::{sha256, verify};
use crate::search::wildcard::Wildcard;
use crate::session::Peer;
use crate::store::records::Relation;
use crate::store::relations::AddRelationOutcome;
use crate::wire::ps::{self, conversation_response::ResponseType, single_response};
use crate::wire::{Status, VERSION_1_0_0};

const MAX_APPLICATION_ID_LEN: usize = 32;
const MAX_KEY_LEN: usize = 128;
const MAX_CARD_TYPE_LEN: usize = 64;

/// The card's checks that need no signature (spec §4.20 steps 1–6).
fn check_fields(
    application: &ps::CardApplicationInformation,
    card: &ps::RelationshipCard,
    recipient: &[u8],
) -> Result<(), Reject> {
    if application.application_id.is_empty()
        || application.application_id.len() > MAX_APPLICATION_ID_LEN
    {
        return Err(Reject::invalid("cardApplication.applicationId"));
    }
    if application.card_id != card.card_id {
        return Err(Reject::invalid("cardApplication.cardId"));
    }
    if !is_valid_timestamp(card.valid_from) || card.valid_from > card.valid_to {
        return Err(Reject::invalid("signedCard.card.validFrom"));
    }
    if !is_valid_timestamp(card.valid_to) {
        return Err(Reject::invalid("signedCard.card.validTo"));
    }
    if card.issuer_public_key.is_empty() || card.issuer_public_key.len() > MAX_KEY_LEN {
        return Err(Reject::invalid("signedCard.card.issuerPublicKey"));
    }
    if card.recipient_public_key != recipient {
        return Err(Reject::invalid("signedCard.card.recipientPublicKey"));
    }
    Ok(())
}

/// The card's own integrity (spec §4.20 steps 8–11).
fn check_card(
    signed: &ps::SignedRelationshipCard,
    card: &ps::RelationshipCard,
) -> Result<(), Reject> {
    if card.version != VERSION_1_0_0 {
        return Err(Reject::invalid("signedCard.card.version"));
    }
    if card.r#type.len() > MAX_CARD_TYPE_LEN {
        return Err(Reject::invalid("signedCard.card.type"));
    }
    let mut zeroed = card.clone();
    zeroed.card_id = vec![0; 32];
    if card.card_id != sha256(&zeroed.encode_to_vec()) {
        return Err(Reject::invalid("signedCard.card.cardId"));
    }
    if !verify(
        &card.issuer_public_key,
        &card.card_id,
        &signed.issuer_signature,
    ) {
        return Err(Reject::invalid("signedCard.issuerSignature"));
    }
    Ok(())
}

/// NOT_FOUND once the session's identity cancelled its hosting (spec §4.9): the session lives
/// on, the identity's cards no longer change.
async fn still_hosted(ctx: &View, id: crate::crypto::NetworkId) -> Result<(), Reject> {
    if is_hosted(ctx, id).await? {
        Ok(())
    } else {
        Err(Reject::status(Status::ErrorNotFound))
    }
}

/// AddRelatedIdentityRequest: every check in order, then the quota and uniqueness.
pub(crate) async fn add_related_identity(
    ctx: &View,
    peer: Peer,
    signature: &[u8],
    request: ps::AddRelatedIdentityRequest,
) -> Result<ConversationBody, Reject> {
    still_hosted(ctx, peer.id).await?;
    let application = request.card_application.unwrap_or_default();
    let signed = request.signed_card.unwrap_or_default();
    let card = signed.card.clone().unwrap_or_default();
    check_fields(&application, &card, &peer.public_key)?;
    let application_bytes = application.encode_to_vec();
    if !verify(&peer.public_key, &application_bytes, signature) {
        return Err(Reject::status(Status::ErrorInvalidSignature));
    }
    check_card(&signed, &card)?;
    let record = Relation {
        card_application: application_bytes,
        card_application_signature: signature.to_vec(),
        signed_card: signed.encode_to_vec(),
        card_type: card.r#type.clone(),
        valid_from_ms: card.valid_from,
        valid_to_ms: card.valid_to,
        issuer_id: sha256(&card.issuer_public_key).to_vec(),
    };
    let max = ctx.config.limits.max_identity_relations;
    match ctx
        .store
        .add_relation(peer.id.0, application.application_id, record, max)
        .await?
    {
        AddRelationOutcome::Added => Ok(ConversationBody::unsigned(
            ResponseType::AddRelatedIdentity(ps::AddRelatedIdentityResponse {}),
        )),
        AddRelationOutcome::QuotaExceeded => Err(Reject::status(Status::ErrorQuotaExceeded)),
        AddRelationOutcome::AlreadyExists => Err(Reject::status(Status::ErrorAlreadyExists)),
    }
}

/// RemoveRelatedIdentityRequest: NOT_FOUND when no card has that application id.
pub(crate) async fn remove_related_identity(
    ctx: &View,
    peer: &Peer,
    request: ps::RemoveRelatedIdentityRequest,
) -> Result<ConversationBody, Reject> {
    let id = peer.id;
    still_hosted(ctx, id).await?;
    if !ctx
        .store
        .remove_relation(id.0, request.application_id)
        .await?
    {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    Ok(ConversationBody::unsigned(
        ResponseType::RemoveRelatedIdentity(ps::RemoveRelatedIdentityResponse {}),
    ))
}

/// GetIdentityRelationshipsInformationRequest: the identity's cards through the type, validity
/// and issuer filters; an unknown identity simply has none.
pub(crate) async fn get_identity_relationships_information(
    ctx: &View,
    request: ps::GetIdentityRelationshipsInformationRequest,
    now: Now,
) -> Result<single_response::ResponseType, Reject> {
    if request.r#type.len() > MAX_CARD_TYPE_LEN {
        return Err(Reject::invalid("type"));
    }
    let kind = Wildcard::new(&request.r#type);
    let relations = match <[u8; 32]>::try_from(request.identity_network_id.as_slice()) {
        Ok(id) => ctx.store.relations(id).await?,
        Err(_) => Vec::new(),
    };
    let now = now.unix_ms;
    let relationships = relations
        .into_iter()
        .filter(|r| kind.matches(&r.card_type.to_lowercase()))
        .filter(|r| request.include_invalid || (r.valid_from_ms <= now && now <= r.valid_to_ms))
        .filter(|r| !request.specific_issuer || r.issuer_id == request.issuer_network_id)
        .filter_map(|r| {
            Some(ps::IdentityRelationship {
                card_application: Some(
                    ps::CardApplicationInformation::decode(r.card_application.as_slice()).ok()?,
                ),
                card_application_signature: r.card_application_signature,
                card: Some(ps::SignedRelationshipCard::decode(r.signed_card.as_slice()).ok()?),
            })
        })
        .collect();
    Ok(
        single_response::ResponseType::GetIdentityRelationshipsInformation(
            ps::GetIdentityRelationshipsInformationResponse { relationships },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::{customer, now};

    /// A card `issuer` gives `recipient`, valid around `now`, and the recipient's application.
    fn card(
        issuer: &ServerKey,
        recipient: &ServerKey,
        application_id: &[u8],
    ) -> (Vec<u8>, ps::AddRelatedIdentityRequest) {
        let valid_from = now().unix_ms - 1_000;
        let mut card = ps::RelationshipCard {
            card_id: vec![0; 32],
            version: VERSION_1_0_0.to_vec(),
            issuer_public_key: issuer.public_key().to_vec(),
            recipient_public_key: recipient.public_key().to_vec(),
            r#type: "Friend".into(),
            valid_from,
            valid_to: valid_from + 86_400_000,
        };
        card.card_id = sha256(&card.encode_to_vec()).to_vec();
        let signed = ps::SignedRelationshipCard {
            issuer_signature: issuer.sign(&card.card_id),
            card: Some(card.clone()),
        };
        let application = ps::CardApplicationInformation {
            application_id: application_id.to_vec(),
            card_id: card.card_id,
        };
        let signature = recipient.sign(&application.encode_to_vec());
        let request = ps::AddRelatedIdentityRequest {
            card_application: Some(application),
            signed_card: Some(signed),
        };
        (signature, request)
    }

    #[tokio::test]
    async fn a_card_is_stored_once_found_by_anyone_and_removed_by_its_application_id() {
        let (_dir, ctx) = testing::ctx();
        let recipient = ServerKey::generate();
        let (_session, peer) = customer(&ctx, &recipient, "Alice").await;
        let issuer = ServerKey::generate();
        let (signature, request) = card(&issuer, &recipient, b"app-1");
        add_related_identity(&ctx, peer.clone(), &signature, request.clone())
            .await
            .expect("added");
        let again = add_related_identity(&ctx, peer.clone(), &signature, request).await;
        assert_eq!(
            again.err(),
            Some(Reject::status(Status::ErrorAlreadyExists))
        );
        let (_, forged) = card(&issuer, &recipient, b"app-2");
        let bad = add_related_identity(&ctx, peer.clone(), &signature, forged).await;
        assert_eq!(
            bad.err(),
            Some(Reject::status(Status::ErrorInvalidSignature))
        );

        let lookup = ps::GetIdentityRelationshipsInformationRequest {
            identity_network_id: peer.id.0.to_vec(),
            ..Default::default()
        };
        let Ok(single_response::ResponseType::GetIdentityRelationshipsInformation(found)) =
            get_identity_relationships_information(&ctx, lookup.clone(), now()).await
        else {
            panic!("relationships");
        };
        assert_eq!(found.relationships.len(), 1);
        let remove = |id: &[u8]| ps::RemoveRelatedIdentityRequest {
            application_id: id.to_vec(),
        };
        remove_related_identity(&ctx, &peer, remove(b"app-1"))
            .await
            .expect("removed");
        let gone = remove_related_identity(&ctx, &peer, remove(b"app-1")).await;
        assert_eq!(gone.err(), Some(Reject::status(Status::ErrorNotFound)));
    }
}
