//! Search at scale: `cargo bench --bench search`.
//!
//! Generates 20,000 hosted and 100,000 neighbour profiles in a real redb store, then measures
//! the start-up index build (read + index), the index's memory per profile (resident growth of
//! this process while building), and p50/p99 latency of name-wildcard, type, radius and regex
//! searches over the whole index. The baseline, same run: the same queries as a plain scan over
//! the same profiles, decoded and lower-cased in a vector (what the server did before the
//! index), with the same matching rules; both must find the same number of profiles.

use std::time::{Duration, Instant};

use iop_profile_server::crypto::random_bytes;
use iop_profile_server::runtime::{build_search_index, search_index_of};
use iop_profile_server::search::{Query, Wildcard, compile_regex, decode_profile, distance_m};
use iop_profile_server::store::Store;
use iop_profile_server::store::records::PeerServer;
use iop_profile_server::store::records::{HostedIdentity, NeighborIdentity};
use iop_profile_server::store::{HOSTED_IDENTITIES, NEIGHBOR_IDENTITIES, NEIGHBORS};
use iop_profile_server::wire::ps;
use prost::Message as _;

mod common;

const HOSTED: u32 = 20_000;
const SHARED: u32 = 100_000;
const RUNS: usize = 60;
const WORDS: [&str; 16] = [
    "anna", "bela", "csilla", "david", "eszter", "ferenc", "gabor", "hanna", "istvan", "judit",
    "karoly", "laura", "mate", "nora", "oliver", "petra",
];
const HOBBIES: [&str; 8] = [
    "running", "cycling", "chess", "sailing", "hiking", "music", "cooking", "reading",
];

fn main() {
    common::run_selected("search", run());
}

fn number() -> u32 {
    u32::from_le_bytes(random_bytes())
}

fn profile(i: u32) -> ps::ProfileInformation {
    let word = WORDS[(i % 16) as usize];
    let hobbies: Vec<&str> = (0..=number() % 3)
        .map(|_| HOBBIES[(number() % 8) as usize])
        .collect();
    ps::ProfileInformation {
        version: vec![1, 0, 0],
        public_key: random_bytes::<32>().to_vec(),
        r#type: format!("Type {}", i % 20),
        name: format!("{word} {}", number() % 100_000),
        latitude: i32::try_from(number() % 180_000_000).unwrap_or(0) - 90_000_000,
        longitude: i32::try_from(number() % 360_000_000).unwrap_or(0) - 179_999_999,
        extra_data: format!("t={};l=city{}", hobbies.join(","), number() % 1000),
        ..Default::default()
    }
}

async fn generate(store: &Store) {
    store
        .write(|txn| {
            let mut hosted = txn.open_table(HOSTED_IDENTITIES)?;
            for i in 0..HOSTED {
                let record = HostedIdentity {
                    identity_type: format!("Type {}", i % 20),
                    initialized: true,
                    profile: profile(i).encode_to_vec(),
                    signature: vec![0; 64],
                    ..Default::default()
                };
                hosted.insert(random_bytes::<32>(), record.encode_to_vec().as_slice())?;
            }
            let mut shared = txn.open_table(NEIGHBOR_IDENTITIES)?;
            for i in 0..SHARED {
                let server = [u8::try_from(i % 100).unwrap_or(0); 32];
                let record = NeighborIdentity {
                    profile: profile(i).encode_to_vec(),
                    signature: vec![0; 64],
                    ..Default::default()
                };
                shared.insert(
                    (server, random_bytes::<32>()),
                    record.encode_to_vec().as_slice(),
                )?;
            }
            // The 100 servers are initialised neighbours: only their profiles are searchable.
            let mut neighbors = txn.open_table(NEIGHBORS)?;
            let initialised = PeerServer {
                initialized: true,
                ..Default::default()
            };
            for server in 0..100_u8 {
                neighbors.insert([server; 32], initialised.encode_to_vec().as_slice())?;
            }
            Ok(())
        })
        .await
        .expect("generate");
}

/// The `percent`-th percentile (nearest rank) in milliseconds.
fn percentile(sorted: &[Duration], percent: usize) -> f64 {
    let rank = ((sorted.len() - 1) * percent).div_ceil(100);
    sorted[rank].as_secs_f64() * 1000.0
}

fn query(name: &str, kind: &str, location: Option<(i32, i32, u32)>, regex: &str) -> Query {
    Query {
        kind: Wildcard::new(kind),
        name: Wildcard::new(name),
        location,
        extra_data: (!regex.is_empty()).then(|| compile_regex(regex).expect("valid regex")),
        hosted_only: false,
        max_total: 10_000,
    }
}

/// One profile as the plain scan sees it.
struct Plain {
    kind: String,
    name: String,
    point: (i32, i32),
    extra_data: String,
}

/// Every readable profile of `records`, ready for the plain scan.
fn plain_rows(records: &[iop_profile_server::store::IndexRecord]) -> Vec<Plain> {
    records
        .iter()
        .filter_map(|record| decode_profile(&record.profile))
        .map(|profile| Plain {
            kind: profile.r#type.to_lowercase(),
            name: profile.name.to_lowercase(),
            point: (profile.latitude, profile.longitude),
            extra_data: profile.extra_data,
        })
        .collect()
}

/// How many profiles a plain scan finds for `query`, up to its limit.
fn plain_scan(rows: &[Plain], query: &Query) -> usize {
    rows.iter()
        .filter(|row| query.kind.matches(&row.kind) && query.name.matches(&row.name))
        .filter(|row| {
            query.location.is_none_or(|(lat, lon, radius)| {
                distance_m(lat, lon, row.point.0, row.point.1) <= f64::from(radius)
            })
        })
        .filter(|row| {
            query
                .extra_data
                .as_ref()
                .is_none_or(|regex| regex.is_match(&row.extra_data))
        })
        .take(query.max_total)
        .count()
}

/// p50 and p99 of `RUNS` runs of `search`, and what its last run returned.
fn timed(mut search: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut found = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        found = search();
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 50), percentile(&times, 99), found)
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    generate(&store).await;
    let started = Instant::now();
    let search = build_search_index(&store).await.expect("index");
    let build = started.elapsed();
    drop(search);
    // Memory: load the records first, so only the index's own growth is measured.
    let records = store.index_records().expect("records");
    let plain = plain_rows(&records);
    let pid = std::process::id();
    let before = common::rss_kib(pid);
    let search = search_index_of(records);
    let after = common::rss_kib(pid);
    let (hosted, shared) = search.len();
    let profiles = u32::try_from(hosted + shared).unwrap_or(u32::MAX);
    let per_profile =
        f64::from(u32::try_from(after.saturating_sub(before) * 1024).unwrap_or(u32::MAX))
            / f64::from(profiles);

    let cases: [(&str, Query); 5] = [
        (
            "name wildcard *ann* (contains)",
            query("*nna 1*", "", None, ""),
        ),
        ("type exact", query("", "Type 7", None, "")),
        (
            "radius 100 km",
            query("", "", Some((47_497_900, 19_040_200, 100_000)), ""),
        ),
        (
            "regex over all",
            query("", "", None, "(^|;)t=(|[^=]+,)sailing,chess([;,]|$)"),
        ),
        (
            "name + type + radius 2000 km",
            query("anna*", "type 1*", Some((0, 0, 2_000_000)), ""),
        ),
    ];
    println!("index: {hosted} hosted + {shared} neighbour profiles");
    println!(
        "start-up index build (read redb + index): {:.0} ms",
        build.as_secs_f64() * 1000.0
    );
    println!("index memory per profile (RSS growth, records preloaded): {per_profile:.0} bytes");
    for (label, query) in cases {
        let (p50, p99, matches) = timed(|| search.run(&query).0.len());
        let (_, scan_p99, scanned) = timed(|| plain_scan(&plain, &query));
        assert_eq!(matches, scanned, "{label}: index and plain scan disagree");
        println!(
            "{label:<32} p50 {p50:>6.2} ms   p99 {p99:>6.2} ms   ({matches} matches); \
             plain scan p99 {scan_p99:>6.2} ms: {:.1}x",
            scan_p99 / p99
        );
    }
}
