//! PS04: the customer lifecycle across both client ports (spec/tests/PS04.md).

use std::collections::BTreeSet;

use iop_profile_server::crypto::{sha256, verify};
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use prost::Message as _;

use crate::kit::*;

const LAYOUTS: [Layout; 2] = [Layout::Shared, Layout::Split];

fn xor_first(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes[0] ^= 0x12;
    bytes
}

/// Register K, then SC on a new clCustomer connection.
async fn registered_and_started(server: &TestServer) -> Client {
    let identity = Identity::random();
    register(server, &identity, "Test Type").await;
    let mut client = Client::tls(server.port(Role::ClCustomer)).await;
    client.identity = identity;
    client.start_conversation(1).await;
    client
}

#[tokio::test]
async fn ps04001_register_and_check_in_on_separate_ports() {
    let server = TestServer::start(&Options::layout(Layout::Split)).await;
    let identity = Identity::random();
    register(&server, &identity, "Test Type").await;
    check_in(&server, &identity).await;
}

#[tokio::test]
async fn ps04002_register_and_check_in_on_one_connection() {
    let server = TestServer::start(&Options::layout(Layout::Shared)).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::Ok);
    assert_status(&client.check_in(3).await, Status::Ok);
}

#[tokio::test]
async fn ps04003_check_in_with_corrupted_signature() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = registered_and_started(&server).await;
        let request = ps::CheckInRequest {
            challenge: client.server_challenge.clone(),
        };
        let signature = xor_first(client.identity.sign(&request.encode_to_vec()));
        let answer = client
            .conversation(2, signature, Conv::CheckIn(request))
            .await;
        assert_status(&answer, Status::ErrorInvalidSignature);
    }
}

#[tokio::test]
async fn ps04004_check_in_with_corrupted_challenge() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = registered_and_started(&server).await;
        let request = ps::CheckInRequest {
            challenge: xor_first(client.server_challenge.clone()),
        };
        let signature = client.identity.sign(&request.encode_to_vec());
        let answer = client
            .conversation(2, signature, Conv::CheckIn(request))
            .await;
        assert_invalid(&answer, "challenge");
    }
}

fn assert_signed_profile(
    info: &ps::GetProfileInformationResponse,
    expected: &ps::ProfileInformation,
) {
    let signed = info.signed_profile.as_ref().expect("signed profile");
    let profile = signed.decode_profile().expect("profile");
    assert_eq!(&profile, expected);
    assert!(verify(
        &expected.public_key,
        &profile.encode_to_vec(),
        &signed.signature
    ));
}

#[tokio::test]
async fn ps04006_initialise_read_back_add_images_remove_profile_image() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = new_customer(&server).await;
        let id = client.identity.network_id();
        let mut update = Update::new(&client.identity);
        update.profile.name = "Test Identity".into();
        assert_status(&client.update_profile(3, &update).await, Status::Ok);

        let info = profile_information(
            client
                .profile_information(4, id.clone(), false, false)
                .await,
        );
        assert!(info.is_hosted && info.is_online);
        assert_signed_profile(&info, &update.profile);
        assert!(info.profile_image.is_empty() && info.thumbnail_image.is_empty());

        let (image, thumbnail) = (fixture("profile.jpg"), fixture("thumbnail.jpg"));
        let mut update = Update::new(&client.identity)
            .with_profile_image(image.clone())
            .with_thumbnail(thumbnail.clone());
        update.profile.name = "Test Identity Renamed".into();
        update.profile.latitude = -1;
        update.profile.longitude = -2;
        update.profile.extra_data = "a=b".into();
        assert_status(&client.update_profile(5, &update).await, Status::Ok);
        let info =
            profile_information(client.profile_information(6, id.clone(), true, false).await);
        assert!(info.is_hosted && info.is_online);
        assert_signed_profile(&info, &update.profile);
        assert_eq!(info.profile_image, image);
        assert_eq!(info.thumbnail_image, thumbnail);

        update.profile.profile_image_hash.clear();
        update.profile_image.clear();
        assert_status(&client.update_profile(7, &update).await, Status::Ok);
        let info = profile_information(client.profile_information(8, id, true, false).await);
        assert_signed_profile(&info, &update.profile);
        assert!(info.profile_image.is_empty());
        assert_eq!(info.thumbnail_image, thumbnail);
    }
}

/// One PS04007 row: a change to the UP defaults and the expected answer.
struct Row {
    id: u32,
    change: fn(&mut Update, &Fixtures),
    bad_signature: Option<fn(Vec<u8>) -> Vec<u8>>,
    expected: Expected,
}

enum Expected {
    Signature,
    Invalid(&'static [&'static str]),
}

struct Fixtures {
    image: Vec<u8>,
    thumbnail: Vec<u8>,
    big: Vec<u8>,
    not_image: Vec<u8>,
}

fn no_change(_: &mut Update, _: &Fixtures) {}

#[expect(clippy::too_many_lines, reason = "the table of PS04007 is one list")]
fn ps04007_rows() -> Vec<Row> {
    use Expected::Invalid;
    let row = |id, change, expected| Row {
        id,
        change,
        bad_signature: None,
        expected,
    };
    let sig = |id, bad: fn(Vec<u8>) -> Vec<u8>| Row {
        id,
        change: no_change,
        bad_signature: Some(bad),
        expected: Expected::Signature,
    };
    vec![
        sig(3, xor_first),
        sig(4, |_| vec![1, 2, 3]),
        sig(5, |_| vec![0x12; 300]),
        row(
            6,
            |u, _| u.no_propagation = true,
            Invalid(&["noPropagation"]),
        ),
        row(
            7,
            |u, _| u.profile.version = vec![0, 0, 0],
            Invalid(&["profile.version"]),
        ),
        row(
            8,
            |u, _| u.profile.version = vec![255, 0, 0],
            Invalid(&["profile.version"]),
        ),
        row(
            9,
            |u, _| u.profile.version = vec![1, 2],
            Invalid(&["profile.version"]),
        ),
        row(
            10,
            |u, _| u.profile.public_key = vec![1, 2, 3],
            Invalid(&["profile.publicKey"]),
        ),
        row(
            11,
            |u, _| u.profile.public_key = xor_first(u.profile.public_key.clone()),
            Invalid(&["profile.publicKey"]),
        ),
        row(
            12,
            |u, _| u.profile.r#type = "Different Type".into(),
            Invalid(&["profile.type"]),
        ),
        row(
            13,
            |u, _| u.profile.r#type = "a".repeat(100),
            Invalid(&["profile.type"]),
        ),
        row(
            14,
            |u, _| u.profile.name = String::new(),
            Invalid(&["profile.name"]),
        ),
        row(
            15,
            |u, _| u.profile.name = "a".repeat(100),
            Invalid(&["profile.name"]),
        ),
        row(
            16,
            |u, _| u.profile.name = "ɐ".repeat(50),
            Invalid(&["profile.name"]),
        ),
        row(
            17,
            |u, _| u.profile.latitude = -90_000_001,
            Invalid(&["profile.latitude"]),
        ),
        row(
            18,
            |u, _| u.profile.longitude = 180_000_001,
            Invalid(&["profile.longitude"]),
        ),
        row(
            19,
            |u, _| {
                u.profile.latitude = -90_000_001;
                u.profile.longitude = 180_000_001;
            },
            Invalid(&["profile.latitude", "profile.longitude"]),
        ),
        row(
            20,
            |u, _| u.profile.extra_data = "a".repeat(300),
            Invalid(&["profile.extraData"]),
        ),
        row(
            21,
            |u, _| u.profile.extra_data = "ɐ".repeat(150),
            Invalid(&["profile.extraData"]),
        ),
        row(
            22,
            |u, _| u.profile.profile_image_hash = vec![1],
            Invalid(&["profile.profileImageHash"]),
        ),
        row(
            23,
            |u, _| u.profile.profile_image_hash = vec![0x12; 35],
            Invalid(&["profile.profileImageHash"]),
        ),
        row(
            24,
            |u, _| u.profile.thumbnail_image_hash = vec![1],
            Invalid(&["profile.thumbnailImageHash"]),
        ),
        row(
            25,
            |u, _| u.profile.thumbnail_image_hash = vec![0x12; 35],
            Invalid(&["profile.thumbnailImageHash"]),
        ),
        row(
            26,
            |u, f| {
                u.profile.profile_image_hash = sha256(b"test").to_vec();
                u.profile_image.clone_from(&f.image);
            },
            Invalid(&["profileImage"]),
        ),
        row(
            27,
            |u, f| *u = u.clone().with_profile_image(f.big.clone()),
            Invalid(&["profileImage"]),
        ),
        row(
            28,
            |u, f| *u = u.clone().with_profile_image(f.not_image.clone()),
            Invalid(&["profileImage"]),
        ),
        row(
            29,
            |u, f| {
                u.profile.thumbnail_image_hash = sha256(b"test").to_vec();
                u.thumbnail_image.clone_from(&f.thumbnail);
            },
            Invalid(&["thumbnailImage"]),
        ),
        row(
            30,
            |u, f| *u = u.clone().with_thumbnail(f.big.clone()),
            Invalid(&["thumbnailImage"]),
        ),
        row(
            31,
            |u, f| *u = u.clone().with_thumbnail(f.not_image.clone()),
            Invalid(&["thumbnailImage"]),
        ),
    ]
}

#[tokio::test]
async fn ps04007_invalid_updates_on_an_uninitialised_profile() {
    let fixtures = Fixtures {
        image: fixture("profile.jpg"),
        thumbnail: fixture("thumbnail.jpg"),
        big: fixture("big.jpg"),
        not_image: fixture("noimg.bin"),
    };
    assert!(fixtures.big.len() > 20_480 && fixtures.thumbnail.len() <= 5_120);
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = new_customer(&server).await;
        for row in ps04007_rows() {
            let mut update = Update::new(&client.identity);
            (row.change)(&mut update, &fixtures);
            let (mut signature, body) = update.signed(&client.identity);
            if let Some(bad) = row.bad_signature {
                signature = bad(signature);
            }
            let answer = client.conversation(row.id, signature, body).await;
            match row.expected {
                Expected::Signature => assert_status(&answer, Status::ErrorInvalidSignature),
                Expected::Invalid(details) => {
                    assert_status(&answer, Status::ErrorInvalidValue);
                    assert!(
                        details.contains(&answer.details.as_str()),
                        "row {}: {:?}",
                        row.id,
                        answer.details
                    );
                }
            }
        }
        // The profile stayed uninitialised throughout.
        let id = client.identity.network_id();
        let answer = client.profile_information(40, id, false, false).await;
        assert_status(&answer, Status::ErrorUninitialized);
    }
}

#[tokio::test]
async fn ps04008_verified_identity_cannot_update() {
    let server = TestServer::start(&Options::layout(Layout::Shared)).await;
    let identity = Identity::random();
    register(&server, &identity, "Test Type").await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.identity = identity;
    client.start_conversation(1).await;
    assert_status(&client.verify_identity(2).await, Status::Ok);
    let update = Update::new(&client.identity);
    assert_status(
        &client.update_profile(3, &update).await,
        Status::ErrorUnauthorized,
    );
}

fn cancel(redirect: bool, target: Vec<u8>) -> Conv {
    Conv::CancelHostingAgreement(ps::CancelHostingAgreementRequest {
        redirect_to_new_profile_server: redirect,
        new_profile_server_network_id: target,
    })
}

#[tokio::test]
async fn ps04009_cancel_with_redirect() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = new_customer(&server).await;
        assert_status(
            &client
                .conversation(3, Vec::new(), cancel(true, sha256_test()))
                .await,
            Status::Ok,
        );
        let id = client.identity.network_id();
        let info = profile_information(client.profile_information(4, id, false, false).await);
        assert!(!info.is_hosted);
        assert!(info.is_target_profile_server_known);
        assert_eq!(info.target_profile_server_network_id, sha256_test());
    }
}

#[tokio::test]
async fn ps04010_cancel_with_malformed_redirect() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = new_customer(&server).await;
        let answer = client
            .conversation(3, Vec::new(), cancel(true, b"test".to_vec()))
            .await;
        assert_invalid(&answer, "newProfileServerNetworkId");
    }
}

#[tokio::test]
async fn ps04012_update_without_check_in() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = registered_and_started(&server).await;
        let update = Update::new(&client.identity);
        assert_status(
            &client.update_profile(2, &update).await,
            Status::ErrorUnauthorized,
        );
    }
}

#[tokio::test]
async fn ps04014_check_in_with_truncated_signature() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = registered_and_started(&server).await;
        let request = ps::CheckInRequest {
            challenge: client.server_challenge.clone(),
        };
        let signature = client.identity.sign(&request.encode_to_vec())[..32].to_vec();
        let answer = client
            .conversation(2, signature, Conv::CheckIn(request))
            .await;
        assert_status(&answer, Status::ErrorInvalidSignature);
    }
}

/// Registers, checks in and initialises an identity of `identity_type`.
async fn initialised(server: &TestServer, identity_type: &str) {
    let identity = Identity::random();
    register(server, &identity, identity_type).await;
    let mut client = check_in(server, &identity).await;
    let mut update = Update::new(&identity);
    update.profile.r#type = identity_type.into();
    assert_status(&client.update_profile(3, &update).await, Status::Ok);
}

async fn stats(client: &mut Client, id: u32) -> BTreeSet<(String, u64)> {
    let answer = client
        .single(id, Single::ProfileStats(ps::ProfileStatsRequest {}))
        .await;
    assert_status(&answer, Status::Ok);
    let ResponseType::ProfileStats(stats) = single_body(answer) else {
        panic!("not stats")
    };
    stats
        .stats
        .into_iter()
        .map(|i| (i.identity_type, u64::from(i.count)))
        .collect()
}

fn set(items: &[(&str, u64)]) -> BTreeSet<(String, u64)> {
    items.iter().map(|(t, c)| ((*t).to_owned(), *c)).collect()
}

#[tokio::test]
async fn ps04016_profile_stats_count_initialised_profiles_by_type() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        for identity_type in [
            "Type A",
            "Type A",
            "Type B",
            "Type B",
            "Type B",
            "Type Alpha",
            "Type A B",
            "Type Beta",
        ] {
            initialised(&server, identity_type).await;
        }
        register(&server, &Identity::random(), "Type Omega").await;
        let mut observer = Client::tls(server.port(Role::ClNonCustomer)).await;
        let expected = set(&[
            ("Type A", 2),
            ("Type B", 3),
            ("Type Alpha", 1),
            ("Type A B", 1),
            ("Type Beta", 1),
        ]);
        assert_eq!(stats(&mut observer, 1).await, expected);
        initialised(&server, "Type A B").await;
        initialised(&server, "Type C").await;
        let expected = set(&[
            ("Type A", 2),
            ("Type B", 3),
            ("Type Alpha", 1),
            ("Type A B", 2),
            ("Type Beta", 1),
            ("Type C", 1),
        ]);
        assert_eq!(stats(&mut observer, 2).await, expected);
    }
}
