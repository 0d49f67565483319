//! The checks every `ProfileInformation` passes wherever it comes from, a customer's
//! UpdateProfile or a neighbour's shared item (spec §4.8, §4.19): field limits, image checks.
//! Pure: no storage, no clock.

use crate::crypto::sha256;
use crate::images;
use crate::store::identities::NewImage;
use crate::wire::ps;
use crate::wire::{MAX_PUBLIC_KEY_LEN, VERSION_1_0_0, is_valid_latitude, is_valid_longitude};

/// Spec §4.5, §4.8: identity types are 1 to 64 bytes.
pub(crate) const MAX_TYPE_LEN: usize = 64;
/// Spec §4.8: names are 1 to 64 bytes.
const MAX_NAME_LEN: usize = 64;
/// Spec §4.8: extra data is at most 200 bytes.
const MAX_EXTRA_DATA_LEN: usize = 200;
/// Spec §4.8: profile images are at most 20,480 bytes.
pub(crate) const MAX_PROFILE_IMAGE_LEN: usize = 20_480;
/// Spec §4.8, §4.19: thumbnails are at most 5,120 bytes.
pub(crate) const MAX_THUMBNAIL_LEN: usize = 5_120;

/// The field checks of a `ProfileInformation` shared with neighbourhood updates (spec §4.8
/// steps 2–10), returning the camelCase path below `profile` of the first bad field. With
/// `owner`, the public key must also be that key (step 3).
pub(crate) fn check_profile_fields(
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
pub(crate) struct BadImage;

/// Checks image bytes against the hash the profile names (spec §4.8 steps 14 and 15).
/// `Ok(None)` when the profile has no such image.
pub(crate) fn check_image(
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
