//! PS06: profile search (spec/tests/PS06.md).

use std::collections::BTreeSet;
use std::time::Duration;

use iop_profile_server::crypto::verify;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, single_request::RequestType as Single, single_response::ResponseType,
};
use prost::Message as _;
use tokio::time::sleep;

use crate::kit::*;

const NO_LOCATION: i32 = 0x7FFF_FFFF;

/// A change to the base search request.
type Change = fn(&mut ps::ProfileSearchRequest);
const RX1: &str = "(^|;)t=(|[^=]+,)running([;,]|$)";
const RX2: &str = ".+";

/// Base search request B.
pub fn base(max_total: u32) -> ps::ProfileSearchRequest {
    ps::ProfileSearchRequest {
        include_hosted_only: false,
        include_thumbnail_images: true,
        max_response_record_count: 100,
        max_total_record_count: max_total,
        latitude: NO_LOCATION,
        longitude: NO_LOCATION,
        ..Default::default()
    }
}

struct Row {
    kind: &'static str,
    name: &'static str,
    latitude: i32,
    longitude: i32,
    extra: &'static str,
    images: bool,
}

const ROWS: [Row; 7] = [
    Row {
        kind: "Profile Type A",
        name: "Shanghai 1",
        latitude: 31_230_000,
        longitude: 121_470_000,
        extra: "",
        images: true,
    },
    Row {
        kind: "Profile Type A",
        name: "Mumbai 1",
        latitude: 18_960_000,
        longitude: 72_820_000,
        extra: "t=running,Cycling,ice hockey,water polo",
        images: true,
    },
    Row {
        kind: "Profile Type A",
        name: "Karachi",
        latitude: 24_860_000,
        longitude: 67_010_000,
        extra: "l=Karachi,PK;a=iop://185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969;t=traveling,cycling,running",
        images: false,
    },
    Row {
        kind: "Profile Type B",
        name: "Buenos Aires",
        latitude: -34_610_000,
        longitude: -58_370_000,
        extra: "",
        images: true,
    },
    Row {
        kind: "Profile Type B",
        name: "Shanghai 2",
        latitude: 31_231_000,
        longitude: 121_470_000,
        extra: "running",
        images: false,
    },
    Row {
        kind: "Profile Type C",
        name: "Mumbai 2",
        latitude: 18_961_000,
        longitude: 72_820_000,
        extra: "MTg1ZjhkYjMyMjcxZmUyNWY1NjFhNmZjOTM4YjJlMjY0MzA2ZWMzMDRlZGE1MTgwMDdkMTc2NDgyNjM4MTk2OQ==",
        images: true,
    },
    Row {
        kind: "Profile Type C",
        name: "Mumbai 3",
        latitude: 18_961_000,
        longitude: 72_820_000,
        extra: "t=running;l=Mumbai,IN",
        images: false,
    },
];

/// The seven profiles as sent, index n-1 for Pn.
async fn data_set(server: &TestServer) -> Vec<ps::ProfileInformation> {
    let mut profiles = Vec::new();
    for row in &ROWS {
        let identity = Identity::random();
        register(server, &identity, row.kind).await;
        let mut client = check_in(server, &identity).await;
        let mut update = Update::new(&identity);
        if row.images {
            update = update
                .with_profile_image(fixture("profile.jpg"))
                .with_thumbnail(fixture("thumbnail.jpg"));
        }
        update.profile.r#type = row.kind.into();
        update.profile.name = row.name.into();
        update.profile.latitude = row.latitude;
        update.profile.longitude = row.longitude;
        update.profile.extra_data = row.extra.into();
        assert_status(&client.update_profile(3, &update).await, Status::Ok);
        profiles.push(update.profile);
    }
    // U registers only and must never appear.
    register(server, &Identity::random(), "Profile Type B").await;
    profiles
}

/// Maps each returned entry to its row number (1-based), checking the Pn conditions.
fn rows_of(
    entries: &[ps::ProfileQueryInformation],
    sent: &[ps::ProfileInformation],
    thumbnails: bool,
) -> Vec<usize> {
    entries
        .iter()
        .map(|entry| {
            assert!(entry.is_hosted && !entry.is_online);
            let signed = entry.signed_profile.as_ref().expect("signed profile");
            let profile = signed.decode_profile().expect("profile");
            let n = sent
                .iter()
                .position(|p| *p == profile)
                .expect("one of the data set")
                + 1;
            assert!(verify(
                &profile.public_key,
                &profile.encode_to_vec(),
                &signed.signature
            ));
            let expect_thumbnail = thumbnails && ROWS[n - 1].images;
            assert_eq!(
                entry.thumbnail_image.is_empty(),
                !expect_thumbnail,
                "thumbnail of P{n}"
            );
            if expect_thumbnail {
                assert_eq!(entry.thumbnail_image, fixture("thumbnail.jpg"));
            }
            n
        })
        .collect()
}

/// ProfileSearch with `id`, which must be answered OK with a search response.
pub async fn search(
    client: &mut Client,
    id: u32,
    request: ps::ProfileSearchRequest,
) -> ps::ProfileSearchResponse {
    let answer = client.single(id, Single::ProfileSearch(request)).await;
    assert_status(&answer, Status::Ok);
    let ResponseType::ProfileSearch(result) = single_body(answer) else {
        panic!("not a search answer")
    };
    result
}

async fn part(client: &mut Client, id: u32, index: u32, count: u32) -> ps::Response {
    let request = ps::ProfileSearchPartRequest {
        record_index: index,
        record_count: count,
    };
    client.single(id, Single::ProfileSearchPart(request)).await
}

fn set(rows: &[usize]) -> BTreeSet<usize> {
    rows.iter().copied().collect()
}

#[expect(clippy::too_many_lines, reason = "PS06001 is one long scripted test")]
#[tokio::test(start_paused = true)]
async fn ps06001_search_seven_profiles() {
    let server = TestServer::start(&Options::default()).await;
    let sent = data_set(&server).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let steps: Vec<(u32, Change, &[usize])> = vec![
        (1, |_| {}, &[1, 2, 3, 4, 5, 6, 7]),
        (2, |r| r.r#type = "*Type B".into(), &[4, 5]),
        (3, |r| r.r#type = "Profile Type C".into(), &[6, 7]),
        (4, |r| r.name = "Mumbai *".into(), &[2, 6, 7]),
        (5, |r| r.name = "*ai*".into(), &[1, 2, 4, 5, 6, 7]),
        (
            6,
            |r| (r.latitude, r.longitude, r.radius) = (18_961_000, 72_820_000, 10),
            &[6, 7],
        ),
        (
            7,
            |r| (r.latitude, r.longitude, r.radius) = (18_961_000, 72_820_000, 5000),
            &[2, 6, 7],
        ),
        (
            8,
            |r| (r.latitude, r.longitude, r.radius) = (-12_345_678, 12_345_678, 5000),
            &[],
        ),
        (9, |r| r.extra_data = "no profiles".into(), &[]),
        (10, |r| r.extra_data = RX1.into(), &[2, 3, 7]),
        (16, |r| r.r#type = "profile*".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (17, |r| r.r#type = "*file*".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (18, |r| r.r#type = "**".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (19, |r| r.r#type = "*".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (20, |r| r.name = "*1".into(), &[1, 2]),
        (21, |r| r.name = "Shanghai 1".into(), &[1]),
        (22, |r| r.name = "**".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (23, |r| r.name = "*".into(), &[1, 2, 3, 4, 5, 6, 7]),
        (
            24,
            |r| {
                r.r#type = "*Type A".into();
                r.name = "*ai*".into();
                r.extra_data = "water".into();
            },
            &[2],
        ),
    ];
    for (id, change, expected) in steps {
        let mut request = base(100);
        change(&mut request);
        let result = search(&mut client, id, request).await;
        assert_eq!(
            result.total_record_count as usize,
            expected.len(),
            "search {id}"
        );
        assert_eq!(result.max_response_record_count, 100);
        assert_eq!(
            set(&rows_of(&result.profiles, &sent, true)),
            set(expected),
            "search {id}"
        );
        assert!(
            result
                .covered_servers
                .contains(&server.network_id().to_vec())
        );
    }

    // Paging (public step 12).
    let paged = || ps::ProfileSearchRequest {
        extra_data: RX2.into(),
        max_response_record_count: 2,
        ..base(100)
    };
    let first = search(&mut client, 11, paged()).await;
    assert_eq!(
        (first.total_record_count, first.max_response_record_count),
        (5, 2)
    );
    let mut seen = rows_of(&first.profiles, &sent, true);
    for (id, index, count) in [(12, 2, 2), (13, 4, 1)] {
        let answer = part(&mut client, id, index, count).await;
        assert_status(&answer, Status::Ok);
        let ResponseType::ProfileSearchPart(slice) = single_body(answer) else {
            panic!("not a part")
        };
        assert_eq!((slice.record_index, slice.record_count), (index, count));
        seen.extend(rows_of(&slice.profiles, &sent, true));
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(set(&seen), set(&[2, 3, 5, 6, 7]));
    let whole = part(&mut client, 14, 0, 5).await;
    let ResponseType::ProfileSearchPart(whole) = single_body(whole) else {
        panic!("not a part")
    };
    assert_eq!(
        set(&rows_of(&whole.profiles, &sent, true)),
        set(&[2, 3, 5, 6, 7])
    );

    // Capped by the total limit, no thumbnails (public step 13).
    let capped = ps::ProfileSearchRequest {
        extra_data: RX1.into(),
        include_thumbnail_images: false,
        max_response_record_count: 2,
        ..base(2)
    };
    let result = search(&mut client, 15, capped).await;
    assert_eq!(
        (result.total_record_count, result.max_response_record_count),
        (2, 2)
    );
    let rows = rows_of(&result.profiles, &sent, false);
    assert_eq!(set(&rows).len(), 2);
    assert!(rows.iter().all(|n| [2, 3, 7].contains(n)));

    // Part validation and cache lifetime (public step 23).
    let again = search(&mut client, 25, paged()).await;
    assert_eq!(again.total_record_count, 5);
    sleep(Duration::from_secs(15)).await;
    assert_invalid(&part(&mut client, 26, 8, 2).await, "recordIndex");
    sleep(Duration::from_secs(15)).await;
    assert_invalid(&part(&mut client, 27, 4, 5).await, "recordCount");
    sleep(Duration::from_secs(22)).await;
    assert_invalid(&part(&mut client, 28, 0, 500).await, "recordCount");
    let late = part(&mut client, 29, 0, 5).await;
    assert_status(&late, Status::Ok);
    let ResponseType::ProfileSearchPart(late) = single_body(late) else {
        panic!("not a part")
    };
    assert_eq!(
        set(&rows_of(&late.profiles, &sent, true)),
        set(&[2, 3, 5, 6, 7])
    );
}

#[tokio::test(start_paused = true)]
async fn ps06002_search_on_an_empty_database() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let result = search(&mut client, 1, base(1000)).await;
    assert_eq!(result.total_record_count, 0);
    assert_eq!(result.max_response_record_count, 100);
    assert!(result.profiles.is_empty());
}

#[expect(clippy::too_many_lines, reason = "the table of PS06004 is one list")]
#[tokio::test(start_paused = true)]
async fn ps06004_invalid_searches_then_part_without_cache() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let rows: Vec<(u32, Change, &str)> = vec![
        (
            1,
            |r| r.max_response_record_count = 0,
            "maxResponseRecordCount",
        ),
        (
            2,
            |r| r.max_response_record_count = 200,
            "maxResponseRecordCount",
        ),
        (
            3,
            |r| {
                (
                    r.include_thumbnail_images,
                    r.max_response_record_count,
                    r.max_total_record_count,
                ) = (false, 1200, 2000);
            },
            "maxResponseRecordCount",
        ),
        (
            4,
            |r| (r.max_response_record_count, r.max_total_record_count) = (50, 25),
            "maxResponseRecordCount",
        ),
        (
            5,
            |r| (r.max_response_record_count, r.max_total_record_count) = (50, 1001),
            "maxTotalRecordCount",
        ),
        (
            6,
            |r| {
                (
                    r.include_thumbnail_images,
                    r.max_response_record_count,
                    r.max_total_record_count,
                ) = (false, 50, 10_010);
            },
            "maxTotalRecordCount",
        ),
        (7, |r| r.r#type = "a".repeat(70), "type"),
        (8, |r| r.r#type = "ɐ".repeat(50), "type"),
        (9, |r| r.name = "a".repeat(70), "name"),
        (10, |r| r.name = "ɐ".repeat(50), "name"),
        (
            11,
            |r| (r.latitude, r.longitude, r.radius) = (-90_000_001, 1, 1),
            "latitude",
        ),
        (
            12,
            |r| (r.latitude, r.longitude, r.radius) = (90_000_001, 1, 1),
            "latitude",
        ),
        (
            13,
            |r| (r.latitude, r.longitude, r.radius) = (1, -180_000_000, 1),
            "longitude",
        ),
        (
            14,
            |r| (r.latitude, r.longitude, r.radius) = (1, 180_000_001, 1),
            "longitude",
        ),
        (
            15,
            |r| (r.latitude, r.longitude, r.radius) = (1, 1, 0),
            "radius",
        ),
        (16, |r| r.extra_data = "a".repeat(300), "extraData"),
        (17, |r| r.extra_data = "ɐ".repeat(150), "extraData"),
        (
            18,
            |r| r.extra_data = "(^|;)key=([^=]+;)?va(?'alpha')lue($|,|;)".into(),
            "extraData",
        ),
        (
            19,
            |r| r.extra_data = "iuawhefiuhawef\\aaerwergj".into(),
            "extraData",
        ),
        (
            20,
            |r| r.extra_data = "aerghearg\\beraarg".into(),
            "extraData",
        ),
        (
            21,
            |r| r.extra_data = "afewafawefwaef\\".into(),
            "extraData",
        ),
        (
            22,
            |r| r.extra_data = "(^|;)key=([^=]+;)?(?<double>A)B<double>($|,|;)".into(),
            "extraData",
        ),
        (
            23,
            |r| r.extra_data = "(^|;)key=rai??n($|,|;)".into(),
            "extraData",
        ),
    ];
    for (id, change, details) in rows {
        let mut request = base(1000);
        change(&mut request);
        let answer = client.single(id, Single::ProfileSearch(request)).await;
        assert_invalid(&answer, details);
    }
    assert_status(
        &part(&mut client, 24, 10, 20).await,
        Status::ErrorNotAvailable,
    );
}
