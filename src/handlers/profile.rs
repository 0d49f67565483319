//! Profiles of hosted identities: UpdateProfile, GetProfileInformation, ProfileStats
//! (spec §4.8, §4.12, §4.17).

use prost::Message as _;

use super::ConversationBody;
use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::crypto::{NetworkId, verify};
use crate::profile_rules::{
    BadImage, MAX_PROFILE_IMAGE_LEN, MAX_THUMBNAIL_LEN, check_image, check_profile_fields,
};
use crate::session::Peer;
use crate::store::identities::ProfileUpdate;
use crate::store::records::HostedIdentity;
use crate::wire::Status;
use crate::wire::ps::{self, conversation_response::ResponseType, single_response};

/// UpdateProfileRequest: validates in the specified order, then replaces the stored profile.
pub(crate) async fn update_profile(
    ctx: &View,
    peer: Peer,
    signature: &[u8],
    request: ps::UpdateProfileRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let record = hosted_record(ctx, peer.id).await?;
    let profile = request.profile.unwrap_or_default();
    check_profile_fields(&profile, Some(&peer.public_key))
        .map_err(|field| Reject::invalid(format!("profile.{field}")))?;
    let profile_bytes = profile.encode_to_vec();
    if !verify(&peer.public_key, &profile_bytes, signature) {
        return Err(Reject::status(Status::ErrorInvalidSignature));
    }
    if !record.initialized && request.no_propagation {
        return Err(Reject::invalid("noPropagation"));
    }
    if profile.r#type != record.identity_type {
        return Err(Reject::invalid("profile.type"));
    }
    let profile_image = check_image(
        &profile.profile_image_hash,
        request.profile_image,
        MAX_PROFILE_IMAGE_LEN,
    )
    .map_err(|BadImage| Reject::invalid("profileImage"))?;
    let thumbnail_image = check_image(
        &profile.thumbnail_image_hash,
        request.thumbnail_image,
        MAX_THUMBNAIL_LEN,
    )
    .map_err(|BadImage| Reject::invalid("thumbnailImage"))?;
    let update = ProfileUpdate {
        profile: profile_bytes,
        signature: signature.to_vec(),
        profile_image,
        thumbnail_image,
        propagate: !request.no_propagation,
        now_ms: now.unix_ms,
    };
    if !ctx
        .catalog
        .update_profile(peer.id, update, &profile)
        .await?
    {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    Ok(ConversationBody::unsigned(ResponseType::UpdateProfile(
        ps::UpdateProfileResponse {},
    )))
}

/// The record of a hosted, non-cancelled identity, or NOT_FOUND.
async fn hosted_record(ctx: &View, id: NetworkId) -> Result<HostedIdentity, Reject> {
    match ctx.store.hosted_identity(id).await? {
        Some(record) if !record.cancelled => Ok(record),
        _ => Err(Reject::status(Status::ErrorNotFound)),
    }
}

/// GetProfileInformationRequest (spec §4.12).
pub(crate) async fn get_profile_information(
    ctx: &View,
    request: ps::GetProfileInformationRequest,
) -> Result<single_response::ResponseType, Reject> {
    let id = NetworkId::from_slice(&request.identity_network_id)
        .ok_or(Reject::status(Status::ErrorNotFound))?;
    let record = ctx
        .store
        .hosted_identity(id)
        .await?
        .ok_or(Reject::status(Status::ErrorNotFound))?;
    let answer = if record.cancelled {
        ps::GetProfileInformationResponse {
            is_hosted: false,
            is_target_profile_server_known: record.redirect_server_id.len() == 32,
            target_profile_server_network_id: record.redirect_server_id,
            ..Default::default()
        }
    } else if !record.initialized {
        return Err(Reject::status(Status::ErrorUninitialized));
    } else {
        hosted_answer(ctx, id, record, &request).await?
    };
    Ok(single_response::ResponseType::GetProfileInformation(answer))
}

async fn hosted_answer(
    ctx: &View,
    id: NetworkId,
    record: HostedIdentity,
    request: &ps::GetProfileInformationRequest,
) -> Result<ps::GetProfileInformationResponse, Reject> {
    let online = ctx.hub.registry.online(id);
    let mut answer = ps::GetProfileInformationResponse {
        is_hosted: true,
        is_online: online.is_some(),
        // The bytes the client signed, as stored (spec §3.4).
        signed_profile: Some(ps::SignedProfileInformation {
            profile: record.profile,
            signature: record.signature,
        }),
        ..Default::default()
    };
    if request.include_profile_image {
        answer.profile_image = image(ctx, &record.profile_image_hash).await?;
    }
    if request.include_thumbnail_image {
        answer.thumbnail_image = image(ctx, &record.thumbnail_image_hash).await?;
    }
    if request.include_application_services {
        answer.application_services = online
            .map(|(_, services)| services.names())
            .unwrap_or_default();
    }
    Ok(answer)
}

/// The bytes of the image with `hash`; empty when there is none.
async fn image(ctx: &View, hash: &[u8]) -> Result<Vec<u8>, Reject> {
    let Ok(hash) = <[u8; 32]>::try_from(hash) else {
        return Ok(Vec::new());
    };
    Ok(ctx.store.image(hash).await?.unwrap_or_default())
}

/// ProfileStatsRequest: initialised, non-cancelled hosted profiles by type (spec §4.17).
pub(crate) async fn profile_stats(ctx: &View) -> Result<single_response::ResponseType, Reject> {
    let stats = ctx
        .store
        .profile_stats()
        .await?
        .into_iter()
        .map(|(identity_type, count)| ps::ProfileStatsItem {
            identity_type,
            count,
        })
        .collect();
    Ok(single_response::ResponseType::ProfileStats(
        ps::ProfileStatsResponse { stats },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::{customer, now, profile};

    fn information(id: NetworkId) -> ps::GetProfileInformationRequest {
        ps::GetProfileInformationRequest {
            identity_network_id: id.0.to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_signed_profile_is_kept_as_signed_and_a_bad_signature_changes_nothing() {
        let (_dir, ctx) = testing::ctx();
        let key = ServerKey::generate();
        let (_session, peer) = customer(&ctx, &key, "Alice").await;
        let renamed = profile(&key, "Alicia");
        let update = ps::UpdateProfileRequest {
            profile: Some(renamed.clone()),
            ..Default::default()
        };
        let forged = ServerKey::generate().sign(&renamed.encode_to_vec());
        let answer = update_profile(&ctx, peer.clone(), &forged, update, now()).await;
        assert_eq!(
            answer.err().map(|r| r.status),
            Some(Status::ErrorInvalidSignature)
        );
        let Ok(single_response::ResponseType::GetProfileInformation(found)) =
            get_profile_information(&ctx, information(peer.id)).await
        else {
            panic!("profile information");
        };
        assert!(found.is_hosted && found.is_online);
        let signed = found.signed_profile.expect("signed profile");
        assert_eq!(signed.profile, profile(&key, "Alice").encode_to_vec());
        assert!(crate::crypto::verify(
            key.public_key(),
            &signed.profile,
            &signed.signature
        ));
        let Ok(single_response::ResponseType::ProfileStats(stats)) = profile_stats(&ctx).await
        else {
            panic!("stats");
        };
        assert_eq!(stats.stats.len(), 1);
        assert_eq!(stats.stats[0].count, 1);
    }

    #[tokio::test]
    async fn an_unknown_identity_is_not_found() {
        let (_dir, ctx) = testing::ctx();
        let answer = get_profile_information(&ctx, information(NetworkId([5; 32]))).await;
        assert_eq!(answer.err(), Some(Reject::status(Status::ErrorNotFound)));
    }
}
