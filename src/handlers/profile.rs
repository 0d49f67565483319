//! Profiles of hosted identities: UpdateProfile, GetProfileInformation, ProfileStats
//! (spec §4.8, §4.12, §4.17).

use prost::Message as _;

use super::hosting::MAX_TYPE_LEN;
use super::reject::Reject;
use super::{ConversationBody, authenticated_peer};
use crate::clock::Now;
use crate::context::Ctx;
use crate::crypto::{NetworkId, sha256, verify};
use crate::images;
use crate::session::Session;
use crate::store::identities::{NewImage, ProfileUpdate};
use crate::store::records::HostedIdentity;
use crate::wire::ps::{self, conversation_response::ResponseType, single_response};
use crate::wire::{
    MAX_PUBLIC_KEY_LEN, Status, VERSION_1_0_0, is_valid_latitude, is_valid_longitude,
};

/// Spec §4.8 limits.
const MAX_NAME_LEN: usize = 64;
const MAX_EXTRA_DATA_LEN: usize = 200;
const MAX_PROFILE_IMAGE_LEN: usize = 20_480;
const MAX_THUMBNAIL_LEN: usize = 5_120;

/// The field checks of a `ProfileInformation` shared with neighbourhood updates (spec §4.8
/// steps 2–10), returning the camelCase path below `profile` of the first bad field. With
/// `owner`, the public key must also be that key (step 3).
pub fn check_profile_fields(
    profile: &ps::ProfileInformation,
    owner: Option<&[u8]>,
) -> Result<(), &'static str> {
    let within = |text: &str, max| !text.is_empty() && text.len() <= max;
    if profile.version != VERSION_1_0_0 {
        return Err("version");
    }
    let key = profile.public_key.as_slice();
    if key.is_empty() || key.len() > MAX_PUBLIC_KEY_LEN || owner.is_some_and(|o| o != key) {
        return Err("publicKey");
    }
    if !within(&profile.r#type, MAX_TYPE_LEN) {
        return Err("type");
    }
    if !within(&profile.name, MAX_NAME_LEN) {
        return Err("name");
    }
    if !is_valid_latitude(profile.latitude) {
        return Err("latitude");
    }
    if !is_valid_longitude(profile.longitude) {
        return Err("longitude");
    }
    if profile.extra_data.len() > MAX_EXTRA_DATA_LEN {
        return Err("extraData");
    }
    if !matches!(profile.profile_image_hash.len(), 0 | 32) {
        return Err("profileImageHash");
    }
    if !matches!(profile.thumbnail_image_hash.len(), 0 | 32) {
        return Err("thumbnailImageHash");
    }
    Ok(())
}

/// Image bytes that are too large, not a PNG/JPEG, or do not match the profile's hash.
#[derive(Debug, PartialEq, Eq)]
pub struct BadImage;

/// Checks image bytes against the hash the profile names (spec §4.8 steps 14 and 15).
/// `Ok(None)` when the profile has no such image.
pub fn check_image(
    hash: &[u8],
    data: Vec<u8>,
    max_len: usize,
) -> Result<Option<NewImage>, BadImage> {
    if data.len() > max_len {
        return Err(BadImage);
    }
    let Ok(hash) = <[u8; 32]>::try_from(hash) else {
        return Ok(None);
    };
    if images::detect(&data).is_none() || sha256(&data) != hash {
        return Err(BadImage);
    }
    Ok(Some(NewImage { hash, data }))
}

/// UpdateProfileRequest: validates in the specified order, then replaces the stored profile.
pub async fn update_profile(
    ctx: &Ctx,
    session: &Session,
    signature: &[u8],
    request: ps::UpdateProfileRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let peer = authenticated_peer(session)?;
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
    if !ctx.store.update_profile(peer.id, update).await? {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    ctx.search
        .update(|index| index.upsert_hosted(peer.id.0, &profile));
    Ok(ConversationBody::unsigned(ResponseType::UpdateProfile(
        ps::UpdateProfileResponse {},
    )))
}

/// The record of a hosted, non-cancelled identity, or NOT_FOUND.
async fn hosted_record(ctx: &Ctx, id: NetworkId) -> Result<HostedIdentity, Reject> {
    match ctx.store.hosted_identity(id).await? {
        Some(record) if !record.cancelled => Ok(record),
        _ => Err(Reject::status(Status::ErrorNotFound)),
    }
}

/// GetProfileInformationRequest (spec §4.12).
pub async fn get_profile_information(
    ctx: &Ctx,
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
    ctx: &Ctx,
    id: NetworkId,
    record: HostedIdentity,
    request: &ps::GetProfileInformationRequest,
) -> Result<ps::GetProfileInformationResponse, Reject> {
    let profile = ps::ProfileInformation::decode(record.profile.as_slice()).map_err(|_| {
        tracing::error!(%id, "stored profile does not decode");
        Reject::status(Status::ErrorInternal)
    })?;
    let online = ctx.registry.online(id);
    let mut answer = ps::GetProfileInformationResponse {
        is_hosted: true,
        is_online: online.is_some(),
        signed_profile: Some(ps::SignedProfileInformation {
            profile: Some(profile),
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
async fn image(ctx: &Ctx, hash: &[u8]) -> Result<Vec<u8>, Reject> {
    let Ok(hash) = <[u8; 32]>::try_from(hash) else {
        return Ok(Vec::new());
    };
    Ok(ctx.store.image(hash).await?.unwrap_or_default())
}

/// ProfileStatsRequest: initialised, non-cancelled hosted profiles by type (spec §4.17).
pub async fn profile_stats(ctx: &Ctx) -> Result<single_response::ResponseType, Reject> {
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
