//! Search beyond PS06: neighbour profiles (seeded through the store, as the neighbourhood
//! feature will write them), hosted-first order, covered servers, the index across restarts
//! and cancellations.

use iop_profile_server::crypto::sha256;
use iop_profile_server::role::Role;
use iop_profile_server::store::NewImage;
use iop_profile_server::store::Store;
use iop_profile_server::store::records::NeighborIdentity;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use prost::Message as _;

use crate::kit::*;
use crate::ps06::base;

const NEIGHBOR: [u8; 32] = [0x4E; 32];

fn shared_profile(name: &str, kind: &str) -> ps::ProfileInformation {
    let identity = Identity::random();
    ps::ProfileInformation {
        name: name.into(),
        r#type: kind.into(),
        ..default_profile(&identity)
    }
}

/// A data directory holding neighbour profiles (one with a thumbnail, one `<INTERNAL>`).
async fn seeded_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // A database is only served beside its identity.
    iop_profile_server::store::load_or_create_identity(dir.path()).expect("identity");
    let store = Store::open(dir.path(), 1 << 20).expect("open store");
    let thumbnail = fixture("thumbnail.jpg");
    for (name, kind, with_thumbnail) in [
        ("Remote Alice", "Chat", true),
        ("Remote Bob", "Chat", false),
        ("Hidden", "<INTERNAL>", false),
    ] {
        let mut profile = shared_profile(name, kind);
        let image = with_thumbnail.then(|| NewImage {
            hash: sha256(&thumbnail),
            data: thumbnail.clone(),
        });
        profile.thumbnail_image_hash = image.as_ref().map(|i| i.hash.to_vec()).unwrap_or_default();
        let record = NeighborIdentity {
            profile: profile.encode_to_vec(),
            signature: vec![1; 64],
            thumbnail_image_hash: profile.thumbnail_image_hash.clone(),
            hosting_server_id: NEIGHBOR.to_vec(),
            refreshed_at_ms: now_ms(),
            thumbnail: image.map(|i| i.data).unwrap_or_default(),
            identity_type: profile.r#type.clone(),
        };
        let id = sha256(&profile.public_key);
        store
            .put_neighbor_identity(NEIGHBOR, id, record)
            .await
            .expect("seed");
    }
    dir
}

async fn search(
    client: &mut Client,
    request: ps::ProfileSearchRequest,
) -> ps::ProfileSearchResponse {
    let answer = client.single(1, Single::ProfileSearch(request)).await;
    assert_status(&answer, Status::Ok);
    let ResponseType::ProfileSearch(result) = single_body(answer) else {
        panic!("not a search")
    };
    result
}

fn names(result: &ps::ProfileSearchResponse) -> Vec<String> {
    result
        .profiles
        .iter()
        .filter_map(|p| p.signed_profile.as_ref()?.decode_profile().map(|p| p.name))
        .collect()
}

#[tokio::test]
async fn neighbor_profiles_follow_hosted_ones() {
    let server = TestServer::start_in(seeded_dir().await, &Options::default()).await;
    let mut local = new_customer(&server).await;
    let mut update = Update::new(&local.identity);
    update.profile.r#type = "Test Type".into();
    update.profile.name = "Local Carol".into();
    assert_status(&local.update_profile(3, &update).await, Status::Ok);

    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let result = search(&mut client, base(100)).await;
    assert_eq!(
        result.total_record_count, 3,
        "the <INTERNAL> placeholder is hidden"
    );
    assert_eq!(names(&result)[0], "Local Carol", "hosted profiles first");
    let first = &result.profiles[0];
    assert!(first.is_hosted && first.is_online && first.hosting_server_network_id.is_empty());
    for remote in &result.profiles[1..] {
        assert!(!remote.is_hosted && !remote.is_online);
        assert_eq!(remote.hosting_server_network_id, NEIGHBOR);
    }
    let alice = result.profiles.iter().find(|p| {
        p.signed_profile
            .as_ref()
            .and_then(ps::SignedProfileInformation::decode_profile)
            .is_some_and(|p| p.name == "Remote Alice")
    });
    assert_eq!(
        alice.expect("Alice found").thumbnail_image,
        fixture("thumbnail.jpg")
    );
    assert_eq!(
        result.covered_servers,
        vec![server.network_id().to_vec(), NEIGHBOR.to_vec()]
    );

    let hosted_only = search(
        &mut client,
        ps::ProfileSearchRequest {
            include_hosted_only: true,
            ..base(100)
        },
    )
    .await;
    assert_eq!(names(&hosted_only), ["Local Carol"]);
    assert_eq!(
        hosted_only.covered_servers,
        vec![server.network_id().to_vec()]
    );
    // Enough hosted matches: the neighbourhood is not consulted.
    let capped = search(
        &mut client,
        ps::ProfileSearchRequest {
            max_response_record_count: 1,
            ..base(1)
        },
    )
    .await;
    assert_eq!(capped.covered_servers.len(), 1);
}

#[tokio::test]
async fn the_index_follows_updates_cancellations_and_restarts() {
    let mut server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let mut update = Update::new(&customer.identity);
    update.profile.name = "Before".into();
    assert_status(&customer.update_profile(3, &update).await, Status::Ok);
    update.profile.name = "After".into();
    assert_status(&customer.update_profile(4, &update).await, Status::Ok);
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let by_name = |name: &str| ps::ProfileSearchRequest {
        name: name.into(),
        ..base(100)
    };
    assert_eq!(
        search(&mut client, by_name("Before"))
            .await
            .total_record_count,
        0
    );
    assert_eq!(
        search(&mut client, by_name("after"))
            .await
            .total_record_count,
        1
    );
    drop(client);

    server.restart().await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    assert_eq!(
        search(&mut client, by_name("After"))
            .await
            .total_record_count,
        1,
        "rebuilt at start"
    );
    let mut customer = check_in(&server, &customer.identity).await;
    let cancel = Conv::CancelHostingAgreement(ps::CancelHostingAgreementRequest::default());
    assert_status(
        &customer.conversation(3, Vec::new(), cancel).await,
        Status::Ok,
    );
    assert_eq!(
        search(&mut client, by_name("After"))
            .await
            .total_record_count,
        0
    );
}

#[tokio::test]
async fn a_new_search_discards_the_previous_cache() {
    let server = TestServer::start(&Options::default()).await;
    for name in ["One", "Two", "Three"] {
        let mut customer = new_customer(&server).await;
        let mut update = Update::new(&customer.identity);
        update.profile.name = name.into();
        assert_status(&customer.update_profile(3, &update).await, Status::Ok);
    }
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let paged = search(
        &mut client,
        ps::ProfileSearchRequest {
            max_response_record_count: 1,
            ..base(100)
        },
    )
    .await;
    assert_eq!(paged.total_record_count, 3);
    let part = |index| {
        Single::ProfileSearchPart(ps::ProfileSearchPartRequest {
            record_index: index,
            record_count: 1,
        })
    };
    assert_status(&client.single(2, part(2)).await, Status::Ok);
    // A search whose results all fit leaves nothing to page through.
    search(&mut client, base(100)).await;
    assert_status(&client.single(3, part(0)).await, Status::ErrorNotAvailable);
}
