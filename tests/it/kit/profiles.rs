//! PS08 §2.3 fixtures: the image pairs, the standard profile set, the random profile recipe and
//! the change recipe. Pure data and randomness; talking to the server belongs to `customer`.

use std::sync::atomic::{AtomicU32, Ordering};

use iop_profile_server::crypto::random_bytes;

use super::client::Identity;
use super::customer::{Hosted, Update, fixture};

/// Largest profile image (PS08 §2.3).
const MAX_PROFILE_IMAGE: usize = 20_480;
/// Largest thumbnail (PS08 §2.3).
const MAX_THUMBNAIL: usize = 5_120;

/// The image pair of a test, "images P/T" in PS08.
#[derive(Clone)]
pub struct Images {
    /// P: the profile image.
    pub profile: Vec<u8>,
    /// T: the thumbnail.
    pub thumbnail: Vec<u8>,
}

impl Images {
    /// PJ/TJ. TJ is 4.5 KB so that 1,000 thumbnails exceed one 1 MiB frame (PS08004).
    pub fn jpeg() -> Images {
        let images = Images {
            profile: fixture("profile.jpg"),
            thumbnail: fixture("thumbnail-large.jpg"),
        };
        assert!(images.profile.len() <= MAX_PROFILE_IMAGE);
        assert!(images.thumbnail.len() <= MAX_THUMBNAIL);
        images
    }

    /// PP/TP. PP is over 5,120 bytes, too big for a thumbnail (PS08023 round 24).
    pub fn png() -> Images {
        let images = Images {
            profile: fixture("profile.png"),
            thumbnail: tp(),
        };
        let size = images.profile.len();
        assert!(size > MAX_THUMBNAIL && size <= MAX_PROFILE_IMAGE);
        images
    }
}

/// TP, the small PNG the change recipe uses for both images.
pub fn tp() -> Vec<u8> {
    let image = fixture("thumbnail.png");
    assert!(image.len() <= MAX_THUMBNAIL);
    image
}

/// Decimal degrees as text to micro-degrees: exact, truncating toward zero, never through
/// floating-point multiplication (PS08 §2.3).
pub fn micro_degrees(text: &str) -> i32 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect();
    let whole: i32 = whole.parse().expect("whole degrees");
    let fraction: i32 = fraction.parse().expect("fraction digits");
    let value = whole * 1_000_000 + fraction;
    if negative { -value } else { value }
}

/// One row of the standard profile set.
struct Row {
    kind: &'static str,
    name: &'static str,
    latitude: &'static str,
    longitude: &'static str,
    images: bool,
    extra: &'static str,
}

const STANDARD: [Row; 7] = [
    Row {
        kind: "Profile Type A",
        name: "Shanghai 1",
        latitude: "31.23",
        longitude: "121.47",
        images: true,
        extra: "",
    },
    Row {
        kind: "Profile Type A",
        name: "Mumbai 1",
        latitude: "18.96",
        longitude: "72.82",
        images: true,
        extra: "t=running,Cycling,ice hockey,water polo",
    },
    Row {
        kind: "Profile Type A",
        name: "Karachi",
        latitude: "24.86",
        longitude: "67.01",
        images: false,
        extra: "l=Karachi,PK;a=iop://185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969;t=traveling,cycling,running",
    },
    Row {
        kind: "Profile Type B",
        name: "Buenos Aires",
        latitude: "-34.61",
        longitude: "-58.37",
        images: true,
        extra: "",
    },
    Row {
        kind: "Profile Type B",
        name: "Shanghai 2",
        latitude: "31.231",
        longitude: "121.47",
        images: false,
        extra: "running",
    },
    Row {
        kind: "Profile Type C",
        name: "Mumbai 2",
        latitude: "18.961",
        longitude: "72.82",
        images: true,
        extra: "MTg1ZjhkYjMyMjcxZmUyNWY1NjFhNmZjOTM4YjJlMjY0MzA2ZWMzMDRlZGE1MTgwMDdkMTc2NDgyNjM4MTk2OQ==",
    },
    Row {
        kind: "Profile Type C",
        name: "Mumbai 3",
        latitude: "18.961",
        longitude: "72.82",
        images: false,
        extra: "t=running;l=Mumbai,IN",
    },
];

/// Profiles 1–7 of the standard set, each for a fresh identity, in order.
pub fn standard_set(images: &Images) -> Vec<(Identity, Update)> {
    STANDARD
        .iter()
        .map(|row| {
            let identity = Identity::random();
            let mut update = Update::new(&identity);
            if row.images {
                update = with_images(update, images);
            }
            let profile = &mut update.profile;
            profile.r#type = row.kind.into();
            profile.name = row.name.into();
            profile.latitude = micro_degrees(row.latitude);
            profile.longitude = micro_degrees(row.longitude);
            profile.extra_data = row.extra.into();
            (identity, update)
        })
        .collect()
}

/// Numbers the `Identity#NNNN` names, unique within the test binary.
static NAMES: AtomicU32 = AtomicU32::new(0);

/// `count` fresh identities with random profiles: the recipe, images with probability 0.8.
pub fn random_profiles(count: usize, images: &Images) -> Vec<(Identity, Update)> {
    (0..count).map(|_| random_profile(images, 80)).collect()
}

/// Like [`random_profiles`], but every profile has both images (PS08004).
pub fn random_profiles_with_images(count: usize, images: &Images) -> Vec<(Identity, Update)> {
    (0..count).map(|_| random_profile(images, 100)).collect()
}

/// The random profile recipe for a fresh identity, with images in `image_percent` % of cases.
fn random_profile(images: &Images, image_percent: u64) -> (Identity, Update) {
    let identity = Identity::random();
    let mut update = Update::new(&identity);
    if chance(image_percent) {
        update = with_images(update, images);
    }
    let profile = &mut update.profile;
    profile.r#type = "test".into();
    profile.name = format!("Identity#{:04}", NAMES.fetch_add(1, Ordering::Relaxed));
    (profile.latitude, profile.longitude) = random_location();
    if chance(60) {
        let len = 1 + below(119);
        let bytes: Vec<u8> = (0..len).map(|_| random_bytes::<1>()[0]).collect();
        profile.extra_data = base64(&bytes);
    }
    (identity, update)
}

/// The change recipe (PS08 §2.3) applied to `current`: the full new state to send.
pub fn change_recipe(current: &Hosted) -> Update {
    let mut update = current.update();
    let mut changed = false;
    if chance(20) {
        update.profile.name += "-change";
        changed = true;
    }
    if chance(20) {
        let old = (update.profile.latitude, update.profile.longitude);
        while (update.profile.latitude, update.profile.longitude) == old {
            (update.profile.latitude, update.profile.longitude) = random_location();
        }
        changed = true;
    }
    if chance(20) {
        let both = Images {
            profile: tp(),
            thumbnail: tp(),
        };
        update = with_images(update, &both);
        changed = true;
    }
    if chance(20) || !changed {
        change_extra_data(&mut update);
    }
    update
}

/// The recipe's extra_data change: its first 10 characters + `-change`, or `new value`.
fn change_extra_data(update: &mut Update) {
    let extra = &mut update.profile.extra_data;
    *extra = if extra.is_empty() {
        "new value".into()
    } else {
        extra.chars().take(10).collect::<String>() + "-change"
    };
}

fn with_images(update: Update, images: &Images) -> Update {
    update
        .with_profile_image(images.profile.clone())
        .with_thumbnail(images.thumbnail.clone())
}

/// A uniformly random valid location in micro-degrees: latitude in [−90°, 90°], longitude in
/// (−180°, 180°].
pub fn random_location() -> (i32, i32) {
    let latitude = i32::try_from(below(180_000_001)).expect("fits") - 90_000_000;
    let longitude = i32::try_from(below(360_000_000)).expect("fits") - 179_999_999;
    (latitude, longitude)
}

/// A random number in `0..bound` (the modulo bias of 64 random bits is negligible here).
pub fn below(bound: u64) -> u64 {
    u64::from_le_bytes(random_bytes()) % bound
}

/// True with probability `percent` / 100.
pub fn chance(percent: u64) -> bool {
    below(100) < percent
}

/// `count` distinct indices of `0..len`, in random order.
pub fn pick(len: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..len).collect();
    assert!(count <= len, "only {len} to pick {count} from");
    for i in 0..count {
        let j = i + usize::try_from(below((len - i) as u64)).expect("fits");
        all.swap(i, j);
    }
    all.truncate(count);
    all
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_degrees_are_exact_and_truncated() {
        assert_eq!(micro_degrees("31.23"), 31_230_000);
        assert_eq!(micro_degrees("-34.61"), -34_610_000);
        assert_eq!(micro_degrees("18.961"), 18_961_000);
        assert_eq!(micro_degrees("-0.1234567"), -123_456);
        assert_eq!(micro_degrees("180"), 180_000_000);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
