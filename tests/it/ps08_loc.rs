//! PS08 with the simulated LOC server L (spec/tests/PS08.md PS08018–PS08021, PS08023): the SUT is
//! the follower. L announces S, the SUT initialises with S, and the test script plays S's side of
//! the initialisation through [`SimLink`].
//!
//! Every use of L goes through [`Loc`], so its interface is adapted in one place.

use std::collections::BTreeSet;
use std::f64::consts::PI;
use std::time::Duration;

use iop_profile_server::crypto::sha256;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::loc;
use iop_profile_server::wire::ps::{
    self, conversation_response::ResponseType as ConvResp, shared_profile_update_item::ActionType,
};
use prost::Message as _;
use tokio::time::{sleep, timeout};

use crate::kit::loc::LocStandIn;
use crate::kit::*;
use crate::ps06::{base, search};

/// `[loc] reconnect_secs` of these tests.
const LOC_RECONNECT_SECS: u64 = 1;
/// W_loc = reconnect_secs + 5 s.
const W_LOC: Duration = Duration::from_secs(LOC_RECONNECT_SECS + 5);
/// W_start = init_delay_max_secs + action_interval_secs + 10 s.
const W_START: Duration = Duration::from_secs(1 + 10);
/// Earth radius of the expected-set computation (PS08020).
const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// L, and everything the tests ask of it.
struct Loc {
    stand_in: LocStandIn,
}

impl Loc {
    /// Starts L before the SUT, so that the SUT's first connection finds it.
    async fn start() -> Loc {
        Loc {
            stand_in: LocStandIn::start(Generation::V2).await,
        }
    }

    /// `[loc]` pointing at L.
    fn table(&self) -> String {
        format!(
            "address = \"127.0.0.1:{}\"\nreconnect_secs = {LOC_RECONNECT_SECS}",
            self.stand_in.port()
        )
    }

    /// Within W_loc the SUT registers and subscribes; then L waits 1 s more (PS08 §1.5).
    async fn wait_attached(&self) {
        timeout(W_LOC, self.stand_in.wait_attached(1))
            .await
            .expect("the SUT attaches to L within W_loc");
        sleep(Duration::from_secs(1)).await;
    }

    /// Pushes an add for S and waits for the SUT's ack.
    async fn add(&self, simulated: &SimServer, sid_s: &[u8]) {
        let acks = self.stand_in.seen().acks.len();
        self.stand_in
            .add_neighbor(node_info(simulated, sid_s, self.stand_in.port()))
            .await;
        self.wait_ack(acks).await;
    }

    /// Pushes a remove for S and waits for the SUT's ack.
    async fn remove(&self, sid_s: &[u8]) {
        let acks = self.stand_in.seen().acks.len();
        self.stand_in.remove_neighbor(sid_s).await;
        self.wait_ack(acks).await;
    }

    async fn wait_ack(&self, before: usize) {
        let acked = async {
            while self.stand_in.seen().acks.len() <= before {
                sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(T_READ, acked)
            .await
            .expect("the SUT acks the push within T_read");
    }
}

/// The NodeInfo L announces for S (PS08 §1.5).
fn node_info(simulated: &SimServer, sid_s: &[u8], loc_port: u16) -> loc::NodeInfo {
    loc::NodeInfo {
        node_id: sid_s.to_vec(),
        contact: Some(loc::NodeContact {
            ip_address: LOOPBACK.to_vec(),
            node_port: loc_port.into(),
            client_port: loc_port.into(),
        }),
        location: Some(loc::GpsLocation {
            latitude: 1_000_000,
            longitude: 2_000_000,
        }),
        services: vec![loc::ServiceInfo {
            r#type: iop_profile_server::wire::loc_service::ServiceType::profile_name(),
            port: simulated.primary_port.into(),
            service_data: sid_s.to_vec(),
        }],
    }
}

/// The SUT attached to L, and S with a fresh key.
pub(crate) struct Setup {
    pub(crate) server: TestServer,
    loc: Loc,
    pub(crate) simulated: SimServer,
    pub(crate) sid_s: Vec<u8>,
    /// S's key pair, for S's own connections to the SUT once it is a neighbour.
    pub(crate) identity: Identity,
}

impl Setup {
    /// Step 1 of every LOC test: L, the SUT, ListRoles, S, attachment.
    pub(crate) async fn start() -> Setup {
        Setup::start_with("").await
    }

    /// [`Setup::start`] with `extra` configuration tables for the SUT.
    pub(crate) async fn start_with(extra: &str) -> Setup {
        let loc = Loc::start().await;
        let options = Options {
            loc: loc.table(),
            extra: extra.into(),
            ..crate::ps08::options("")
        };
        let server = TestServer::start(&options).await;
        list_roles(&server).await;
        let key = Identity::random();
        let sid_s = key.network_id();
        let simulated = SimServer::start(key.clone(), server.network_id().to_vec()).await;
        loc.wait_attached().await;
        Setup {
            server,
            loc,
            simulated,
            sid_s,
            identity: key,
        }
    }

    /// L pushes an add; within W_start the SUT sends its Start to S, which answers OK.
    pub(crate) async fn announce(&mut self) -> SimLink {
        self.loc.add(&self.simulated, &self.sid_s).await;
        let link = self.simulated.handover(W_START).await;
        assert_eq!(
            link.start.primary_port,
            u32::from(self.server.port(Role::Primary))
        );
        assert_eq!(
            link.start.sr_neighbor_port,
            u32::from(self.server.port(Role::SrNeighbor))
        );
        link
    }
}

pub(crate) fn signed_all(wanted: Vec<(Identity, Update)>) -> Vec<Hosted> {
    wanted
        .into_iter()
        .map(|(identity, update)| Hosted::signed(identity, update))
        .collect()
}

/// S sends one batch and requires the SUT's answer to be OK with an update response.
pub(crate) async fn send_batch(link: &mut SimLink, items: Vec<ps::SharedProfileUpdateItem>) {
    let answer = link.call(update_request(items)).await;
    assert_status(&answer, Status::Ok);
    let (_, body) = conversation_body(answer);
    assert!(matches!(body, ConvResp::NeighborhoodSharedProfileUpdate(_)));
}

/// S sends Finish and requires an OK Finish response.
pub(crate) async fn finish(link: &mut SimLink) {
    let answer = link.call(finish_request()).await;
    assert_status(&answer, Status::Ok);
    let (_, body) = conversation_body(answer);
    assert!(matches!(
        body,
        ConvResp::FinishNeighborhoodInitialization(_)
    ));
}

/// PS06's base search B with `thumbnails` and `max` as both record counts.
pub(crate) fn search_all(thumbnails: bool, max: u32) -> ps::ProfileSearchRequest {
    ps::ProfileSearchRequest {
        include_thumbnail_images: thumbnails,
        max_response_record_count: max,
        ..base(max)
    }
}

/// Every result is a neighbour profile of S that matches its signed state; returns their ids.
fn shared_results(
    found: &ps::ProfileSearchResponse,
    sid_s: &[u8],
    profiles: &[Hosted],
    thumbnails: bool,
) -> BTreeSet<Vec<u8>> {
    let mut ids = BTreeSet::new();
    for entry in &found.profiles {
        assert!(!entry.is_hosted && !entry.is_online);
        assert_eq!(entry.hosting_server_network_id, sid_s);
        let signed = entry.signed_profile.as_ref().expect("signed profile");
        let key = &signed.decode_profile().expect("profile").public_key;
        let owner = profiles
            .iter()
            .find(|profile| &profile.profile.public_key == key)
            .expect("one of S's profiles");
        if !thumbnails {
            assert!(entry.thumbnail_image.is_empty());
        }
        let thumbnail = if thumbnails {
            &entry.thumbnail_image
        } else {
            &owner.thumbnail
        };
        assert_matches(signed, thumbnail, owner);
        assert!(ids.insert(sha256(key).to_vec()), "a profile appears twice");
    }
    ids
}

/// `covered_servers` is {SID, SID_S}.
fn assert_covered(found: &ps::ProfileSearchResponse, setup: &Setup) {
    let covered: BTreeSet<Vec<u8>> = found.covered_servers.iter().cloned().collect();
    let sid = setup.server.network_id().to_vec();
    assert_eq!(covered, BTreeSet::from([sid, setup.sid_s.clone()]));
}

#[tokio::test(start_paused = true)]
async fn ps08018_loc_announces_a_neighbor_with_no_profiles() {
    let mut setup = Setup::start().await;
    let mut link = setup.announce().await;
    finish(&mut link).await;
    let log = setup.simulated.drain();
    assert!(
        log.asked_roles(),
        "the SUT asks S's primary port for its roles"
    );
}

#[tokio::test(start_paused = true)]
async fn ps08019_loc_neighbor_shares_7_profiles_and_search_returns_them() {
    let mut setup = Setup::start().await;
    let profiles = signed_all(standard_set(&Images::jpeg()));
    let mut link = setup.announce().await;
    send_batch(&mut link, profiles.iter().map(add_item).collect()).await;
    finish(&mut link).await;

    let mut client = Client::tls(setup.server.port(Role::ClNonCustomer)).await;
    client.start_conversation(1).await;
    let found = search(&mut client, 2, search_all(true, 100)).await;
    assert_eq!(found.total_record_count, 7);
    assert_eq!(found.max_response_record_count, 100);
    assert_eq!(found.profiles.len(), 7);
    assert_covered(&found, &setup);
    let ids = shared_results(&found, &setup.sid_s, &profiles, true);
    assert_eq!(ids.len(), 7);
}

/// A point less than `radius` metres from `centre` (degrees), on a uniform bearing and a uniform
/// distance, normalised and quantised to micro-degrees, truncating (PS08020 "Placing a point").
fn place(centre: (f64, f64), radius: f64) -> (i32, i32) {
    let bearing = uniform(0.0, 2.0 * PI);
    let angle = uniform(0.0, radius) / EARTH_RADIUS_M;
    let (lat1, lon1) = (centre.0.to_radians(), centre.1.to_radians());
    let lat2 = (lat1.sin() * angle.cos() + lat1.cos() * angle.sin() * bearing.cos()).asin();
    let lon2 = lon1
        + (bearing.sin() * angle.sin() * lat1.cos()).atan2(angle.cos() - lat1.sin() * lat2.sin());
    let mut longitude = lon2.to_degrees();
    while longitude > 180.0 {
        longitude -= 360.0;
    }
    while longitude <= -180.0 {
        longitude += 360.0;
    }
    (quantise(lat2.to_degrees()), quantise(longitude))
}

#[expect(clippy::cast_possible_truncation, reason = "degrees × 10^6 fit in i32")]
fn quantise(degrees: f64) -> i32 {
    (degrees * 1_000_000.0).trunc() as i32
}

fn degrees(micro: (i32, i32)) -> (f64, f64) {
    (f64::from(micro.0) / 1e6, f64::from(micro.1) / 1e6)
}

/// Haversine distance in metres between two points in micro-degrees.
fn distance(a: (i32, i32), b: (i32, i32)) -> f64 {
    let (a, b) = (degrees(a), degrees(b));
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let d_lat = lat2 - lat1;
    let d_lon = (b.1 - a.1).to_radians();
    let h = (d_lat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (d_lon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Uniform in [low, high).
#[expect(clippy::cast_precision_loss, reason = "53 random bits are plenty")]
fn uniform(low: f64, high: f64) -> f64 {
    low + (high - low) * (below(1 << 53) as f64 / (1u64 << 53) as f64)
}

/// A random whole radius in metres, strictly between `low` and `high`.
fn radius(low: u32, high: u32) -> u32 {
    low + 1 + u32::try_from(below(u64::from(high - low - 1))).expect("fits")
}

const ANCHORS: [(f64, f64); 15] = [
    (0.0, 0.0),
    (89.9, 0.0),
    (-89.9, 0.0),
    (40.0, 0.0),
    (0.0, 179.9),
    (89.9, 179.9),
    (-89.9, 179.9),
    (40.0, 179.9),
    (0.0, -179.9),
    (89.9, -179.9),
    (-89.9, -179.9),
    (40.0, -179.9),
    (0.0, 50.0),
    (89.9, 50.0),
    (-89.9, 50.0),
];

#[tokio::test(start_paused = true)]
async fn ps08020_loc_neighbor_shares_600_profiles_and_location_search_is_exact() {
    let mut setup = Setup::start().await;
    let r2 = radius(20_000, 150_000);
    let r1 = radius(5_000, r2 * 4 / 5);
    let r3 = radius(r2 * 3 / 2, 500_000);
    let mut centres: Vec<(i32, i32)> = ANCHORS.iter().map(|&a| place(a, f64::from(r2))).collect();
    centres.extend((0..5).map(|_| random_location()));
    let mut wanted = random_profiles(600, &Images::png());
    let rings = centres.iter().flat_map(|&c| [r1, r2, r3].map(|r| (c, r)));
    for ((centre, r), chunk) in rings.zip(wanted.chunks_mut(10)) {
        for (_, update) in chunk {
            let (latitude, longitude) = place(degrees(centre), f64::from(r));
            update.profile.latitude = latitude;
            update.profile.longitude = longitude;
        }
    }
    let profiles = signed_all(wanted);

    let mut link = setup.announce().await;
    let mut sent = 0;
    while sent < profiles.len() {
        let size = usize::try_from(1 + below(100))
            .expect("fits")
            .min(profiles.len() - sent);
        send_batch(
            &mut link,
            profiles[sent..sent + size].iter().map(add_item).collect(),
        )
        .await;
        sent += size;
    }
    finish(&mut link).await;

    let mut client = Client::tls(setup.server.port(Role::ClNonCustomer)).await;
    let everything = search(&mut client, 1, search_all(false, 1000)).await;
    assert_eq!(everything.total_record_count, 600);
    assert_covered(&everything, &setup);
    assert_eq!(
        shared_results(&everything, &setup.sid_s, &profiles, false).len(),
        600
    );
    let mut id = 2;
    for &centre in &centres {
        let far = u32::try_from(1_000_000 + below(9_000_000)).expect("fits");
        for r in [r1, r2, r3, far] {
            let request = ps::ProfileSearchRequest {
                latitude: centre.0,
                longitude: centre.1,
                radius: r,
                ..search_all(false, 1000)
            };
            let found = search(&mut client, id, request).await;
            id += 1;
            assert_eq!(found.max_response_record_count, 1000);
            check_circle(&found, &setup.sid_s, &profiles, centre, f64::from(r));
        }
    }
}

/// The results are exactly the profiles closer than `radius`; within 1 m of it is don't-care.
fn check_circle(
    found: &ps::ProfileSearchResponse,
    sid_s: &[u8],
    profiles: &[Hosted],
    centre: (i32, i32),
    radius: f64,
) {
    let ids = shared_results(found, sid_s, profiles, false);
    assert_eq!(found.total_record_count as usize, ids.len());
    for profile in profiles {
        let d = distance(
            centre,
            (profile.profile.latitude, profile.profile.longitude),
        );
        let returned = ids.contains(&profile.network_id());
        if d < radius - 1.0 {
            assert!(
                returned,
                "{} at {d:.0} m of {radius} m is missing",
                profile.profile.name
            );
        } else if d > radius + 1.0 {
            assert!(
                !returned,
                "{} at {d:.0} m of {radius} m is returned",
                profile.profile.name
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ps08021_loc_neighbor_exceeds_20000_profiles() {
    const CAP: usize = 20_000;
    let mut setup = Setup::start().await;
    let profiles = signed_all(random_profiles(20_500, &Images::png()));
    let mut link = setup.announce().await;
    let mut sent = 0;
    loop {
        let size = usize::try_from(100 + below(50)).expect("fits");
        let items: Vec<_> = profiles[sent..sent + size].iter().map(add_item).collect();
        let answer = link.call(update_request(items)).await;
        if sent + size <= CAP {
            assert_status(&answer, Status::Ok);
            sent += size;
        } else {
            assert_invalid(&answer, &format!("{}.add", CAP - sent));
            break;
        }
    }
    link.close();

    let mut client = Client::tls(setup.server.port(Role::ClNonCustomer)).await;
    let found = search(&mut client, 1, search_all(true, 100)).await;
    assert_eq!(found.total_record_count, 0);
    assert_eq!(found.max_response_record_count, 100);
    assert!(found.profiles.is_empty());
}

/// Baseline batch B of PS08023: profiles 1–7 with PNG images, each with its owner.
struct Baseline {
    profiles: Vec<Hosted>,
    pp: Vec<u8>,
}

impl Baseline {
    /// B with round `round`'s modification, and the detail the SUT must answer.
    fn round(&self, round: u32) -> (Vec<ps::SharedProfileUpdateItem>, String) {
        let mut profiles = self.profiles.clone();
        let mut corrupt = None;
        let detail = self.modify(round, &mut profiles, &mut corrupt);
        let mut items: Vec<_> = profiles.iter().map(|p| add_item(&resign(p))).collect();
        if let Some(corrupt) = corrupt {
            let mut corrupted = resign(&profiles[2]);
            corrupt(&mut corrupted.signature);
            items[2] = add_item(&corrupted);
        }
        let action = match round {
            25 => Some(ActionType::Change(ps::SharedProfileChangeItem {
                signed_profile: Some(signed_profile(&profiles[2])),
                thumbnail_image: Vec::new(),
            })),
            26 => Some(ActionType::Delete(ps::SharedProfileDeleteItem {
                identity_network_id: profiles[0].network_id(),
            })),
            _ => None,
        };
        if let Some(action) = action {
            items[2].action_type = Some(action);
        }
        (items, detail)
    }

    /// The table of PS08023: changes `profiles` (or arms a signature corruption) for `round`
    /// and gives the detail. Rounds 25 and 26 replace item 2 afterwards.
    fn modify(&self, round: u32, profiles: &mut [Hosted], corrupt: &mut Option<Corrupt>) -> String {
        let p3 = &mut profiles[2].profile;
        match round {
            2 => set(&mut p3.version, vec![1, 0], "version"),
            3 => set(&mut p3.version, vec![0, 0, 0], "version"),
            4 => set(&mut p3.public_key, vec![b'a'; 300], "publicKey"),
            5 => {
                profiles[2] = profiles[0].clone();
                "2.add.signedProfile.profile.publicKey".into()
            }
            6 => set(&mut p3.r#type, "a".repeat(70), "type"),
            7 => set(&mut p3.r#type, "ɐ".repeat(50), "type"),
            8 => set(&mut p3.r#type, String::new(), "type"),
            9 => set(&mut p3.name, "a".repeat(70), "name"),
            10 => set(&mut p3.name, "ɐ".repeat(50), "name"),
            11 => set(&mut p3.latitude, 987_654_321, "latitude"),
            12 => set(&mut p3.longitude, 987_654_321, "longitude"),
            13 => set(&mut p3.extra_data, "a".repeat(270), "extraData"),
            14 => set(&mut p3.extra_data, "ɐ".repeat(150), "extraData"),
            15 => set(&mut p3.profile_image_hash, vec![0x01], "profileImageHash"),
            16 => set(
                &mut p3.profile_image_hash,
                vec![0x12; 50],
                "profileImageHash",
            ),
            17 => set(
                &mut p3.thumbnail_image_hash,
                vec![0x01],
                "thumbnailImageHash",
            ),
            18 => set(
                &mut p3.thumbnail_image_hash,
                vec![0x12; 50],
                "thumbnailImageHash",
            ),
            19 => corrupt_with(corrupt, |s| *s = vec![0x01]),
            20 => corrupt_with(corrupt, |s| *s = vec![0x12; 50]),
            21 => corrupt_with(corrupt, |s| s[0] ^= 0x12),
            22..=24 => {
                self.bad_thumbnail(&mut profiles[3], round);
                "3.add.thumbnailImage".into()
            }
            25 | 26 => "2.actionType".into(),
            27 => set(&mut p3.name, String::new(), "name"),
            other => panic!("no round {other}"),
        }
    }

    /// Rounds 22–24: profile 4 with a thumbnail that does not fit its (re-signed) hash.
    fn bad_thumbnail(&self, profile: &mut Hosted, round: u32) {
        let hash = &mut profile.profile.thumbnail_image_hash;
        match round {
            22 => hash[0] ^= 0x12,
            23 => {
                *hash = sha256(&[0x01]).to_vec();
                profile.thumbnail = vec![0x01];
            }
            _ => {
                *hash = sha256(&self.pp).to_vec();
                profile.thumbnail.clone_from(&self.pp);
            }
        }
    }
}

/// A corruption of item 2's valid signature.
type Corrupt = fn(&mut Vec<u8>);

/// Sets a profile field of item 2 and gives that field's detail.
fn set<T>(field: &mut T, value: T, name: &str) -> String {
    *field = value;
    format!("2.add.signedProfile.profile.{name}")
}

/// Arms a corruption of item 2's signature and gives its detail.
fn corrupt_with(slot: &mut Option<Corrupt>, corrupt: Corrupt) -> String {
    *slot = Some(corrupt);
    "2.add.signedProfile.signature".into()
}

/// The profile signed by its owner over its encoding as sent (PS08023 signing rule).
fn resign(profile: &Hosted) -> Hosted {
    let mut signed = profile.clone();
    signed.signature = profile.identity.sign(&profile.profile.encode_to_vec());
    signed
}

#[tokio::test(start_paused = true)]
async fn ps08023_invalid_items_one_per_round_with_loc_remove_and_re_add() {
    let mut setup = Setup::start().await;
    let images = Images::png();
    let baseline = Baseline {
        profiles: signed_all(standard_set(&images)),
        pp: images.profile,
    };
    for round in 2..=27 {
        let mut link = setup.announce().await;
        let (items, detail) = baseline.round(round);
        let answer = link.call(update_request(items)).await;
        assert_invalid(&answer, &detail);
        link.close();
        setup.loc.remove(&setup.sid_s).await;
        let log = setup.simulated.drain();
        assert_eq!(log.starts.len(), 1, "round {round}: one Start, no retry");
    }
}
