//! Neighbourhood initialisation between two real servers, beside redb's raw write rate of the
//! same records measured in the same run: `cargo bench --bench neighborhood`.
//!
//! Server B (in this process) hosts 20,000 signed profiles, each with its own thumbnail. Server A
//! (the release binary, a child process) learns B from a LOC stand-in and initialises from it:
//! every profile crosses TLS, is checked (fields, Ed25519 signature, thumbnail hash) and staged in
//! A's redb, then becomes searchable at Finish. The baseline writes the same records into a bare
//! redb table, one durable transaction per batch of the same size. A runs twice: in the systemd
//! unit's environment (the figures), and with the C library's defaults (for comparison).

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use iop_profile_server::config::Config;
use iop_profile_server::crypto::{random_bytes, sha256};
use iop_profile_server::role::Role;
use iop_profile_server::store::records::NeighborIdentity;
use iop_profile_server::wire::ps;
use iop_profile_server::wire::ps::single_request::RequestType as Single;
use iop_profile_server::wire::ps::single_response::ResponseType as Found;
use prost::Message as _;
use redb::TableDefinition;

mod common;
use common::kit::loc::{Generation, LocStandIn, announcement};
use common::kit::{Client, assert_status, single_body};
use common::{peak_kib, rss_kib, spawn_server_in};

const PROFILES: u32 = 20_000;
/// Profiles per type: searches for one type count up to their 10,000 cap.
const PER_TYPE: u32 = 2_000;
/// Records per baseline transaction: about one update batch of the initialisation.
const BASELINE_BATCH: usize = 150;
/// Spec §1.3: "no location" in a search.
const NO_LOCATION: i32 = 0x7FFF_FFFF;
const RAW: TableDefinition<([u8; 32], [u8; 32]), &[u8]> = TableDefinition::new("raw");

fn main() {
    common::run_selected("neighborhood", run());
}

async fn run() {
    let thumbnail = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/thumbnail.jpg"
    ))
    .expect("fixture");
    let records = profiles(&thumbnail);
    let b_dir = tempfile::tempdir().expect("temp dir");
    seed(b_dir.path(), &records);
    let b = start_in_process(b_dir.path()).await;
    // Both initialisations share B; the second does not gain from the first, since A starts
    // afresh and B reads the same files either way.
    let defaults = initialise(b, &[]).await;
    let environment = common::unit_environment();
    let unit = initialise(b, &environment).await;

    let raw = raw_redb_rate(&records);
    println!(
        "profiles shared: {PROFILES} with a thumbnail each ({} bytes)",
        thumbnail.len() + 20
    );
    println!("redb raw writes of the same records (baseline): {raw:.0} records/s");
    println!(
        "initialisation from a real server: {:.0} profiles/s, ratio {:.2}",
        unit.rate,
        unit.rate / raw
    );
    println!(
        "receiving server resident memory: {} KiB before, peak {} KiB, growth {:.1} MiB",
        unit.before,
        unit.peak,
        unit.growth_mib()
    );
    let settings: Vec<String> = environment
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    println!(
        "  the above in the systemd unit's environment ({}); with the C library's defaults: \
         {:.0} profiles/s, growth {:.1} MiB",
        settings.join(" "),
        defaults.rate,
        defaults.growth_mib()
    );
}

/// What one initialisation of A from B measured.
struct Initialisation {
    /// Profiles per second, from B's announcement until all are searchable on A.
    rate: f64,
    /// A's resident memory before, in KiB.
    before: u64,
    /// A's peak resident memory by the end, in KiB.
    peak: u64,
}

impl Initialisation {
    fn growth_mib(&self) -> f64 {
        f64::from(u32::try_from(self.peak.saturating_sub(self.before)).unwrap_or(u32::MAX)) / 1024.0
    }
}

/// Server A (the release binary, in `environment`) learns B from a LOC stand-in of its own and
/// initialises from it; A stops when this returns.
async fn initialise(b: ([u8; 32], u16), environment: &[(String, String)]) -> Initialisation {
    let loc = LocStandIn::start(Generation::V2).await;
    let a_dir = tempfile::tempdir().expect("temp dir");
    let a = spawn_server_in(
        a_dir.path(),
        &format!(
            "{}[neighborhood]\ninit_delay_max_secs = 0\n",
            loc.config("string")
        ),
        environment,
    );
    loc.wait_attached(1).await;
    let pid = a.child.id();
    let before = rss_kib(pid);
    let started = Instant::now();
    loc.add_neighbor(announcement(&b.0, b.1)).await;
    let mut client = Client::tls(a.tls).await;
    while searchable(&mut client).await < PROFILES {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Initialisation {
        rate: f64::from(PROFILES) / started.elapsed().as_secs_f64(),
        before,
        peak: peak_kib(pid),
    }
}

/// One profile of B: its key, its profile and signature, its own thumbnail.
struct Record {
    key: SigningKey,
    profile: Vec<u8>,
    signature: Vec<u8>,
    thumbnail: Vec<u8>,
}

/// 20,000 signed profiles, each with a distinct JPEG thumbnail (a comment segment numbers it).
fn profiles(jpeg: &[u8]) -> Vec<Record> {
    (0..PROFILES)
        .map(|i| {
            let key = SigningKey::from_bytes(&random_bytes());
            let mut thumbnail = jpeg[..2].to_vec();
            let comment = format!("bench {i:08}");
            let len = u16::try_from(comment.len() + 2).expect("short");
            thumbnail.extend([0xFF, 0xFE]);
            thumbnail.extend(len.to_be_bytes());
            thumbnail.extend(comment.as_bytes());
            thumbnail.extend(&jpeg[2..]);
            let profile = ps::ProfileInformation {
                version: vec![1, 0, 0],
                public_key: key.verifying_key().to_bytes().to_vec(),
                r#type: format!("t{}", i / PER_TYPE),
                name: format!("Bench {i}"),
                latitude: 48_000_000,
                longitude: 16_000_000,
                extra_data: "l=Vienna;t=bench".into(),
                thumbnail_image_hash: sha256(&thumbnail).to_vec(),
                ..Default::default()
            }
            .encode_to_vec();
            let signature = key.sign(&profile).to_bytes().to_vec();
            Record {
                key,
                profile,
                signature,
                thumbnail,
            }
        })
        .collect()
}

/// Writes B's hosted identities straight into its database.
fn seed(dir: &std::path::Path, records: &[Record]) {
    let identities: Vec<common::Seeded> = records
        .iter()
        .map(|record| common::Seeded {
            public_key: record.key.verifying_key().to_bytes().to_vec(),
            identity_type: "bench".into(),
            profile: record.profile.clone(),
            signature: record.signature.clone(),
            thumbnail: record.thumbnail.clone(),
        })
        .collect();
    common::seed_hosted(dir, &identities);
}

/// B, in this process; returns its network id and primary port.
async fn start_in_process(dir: &std::path::Path) -> ([u8; 32], u16) {
    let text = format!(
        "data_dir = {:?}\nbind_address = \"127.0.0.1\"\ntest_mode = true\n\
         [[listener]]\nport = 0\nroles = [\"primary\"]\n\
         [[listener]]\nport = 0\nroles = [\"sr_neighbor\", \"cl_non_customer\", \"cl_customer\"]\n\
         [limits]\nmax_hosted_identities = 20000\n",
        dir.display().to_string()
    );
    let config = Config::parse(&text).expect("config");
    let server = iop_profile_server::runtime::start(config)
        .await
        .expect("B starts");
    let id = server.network_id().0;
    let port = server.port_of(Role::Primary).expect("primary");
    // B runs until the process ends.
    std::mem::forget(server);
    (id, port)
}

/// How many of B's profiles A's search finds: one count per type (each below the cap).
async fn searchable(client: &mut Client) -> u32 {
    let mut total = 0;
    for kind in 0..PROFILES / PER_TYPE {
        let request = ps::ProfileSearchRequest {
            r#type: format!("t{kind}"),
            max_response_record_count: 1,
            max_total_record_count: 10_000,
            latitude: NO_LOCATION,
            longitude: NO_LOCATION,
            ..Default::default()
        };
        let answer = client
            .single(kind + 1, Single::ProfileSearch(request))
            .await;
        assert_status(&answer, iop_profile_server::wire::Status::Ok);
        if let Found::ProfileSearch(found) = single_body(answer) {
            total += found.total_record_count;
        }
    }
    total
}

/// Records per second redb takes for the same rows A stores, in durable transactions of
/// [`BASELINE_BATCH`], with A's default page cache.
fn raw_redb_rate(records: &[Record]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = redb::Builder::new()
        .set_cache_size(4 << 20)
        .create(dir.path().join("raw.redb"))
        .expect("db");
    let server = [7u8; 32];
    let rows: Vec<([u8; 32], Vec<u8>)> = records
        .iter()
        .map(|r| {
            let row = NeighborIdentity {
                profile: r.profile.clone(),
                signature: r.signature.clone(),
                thumbnail_image_hash: sha256(&r.thumbnail).to_vec(),
                thumbnail: r.thumbnail.clone(),
                ..Default::default()
            };
            (
                sha256(&r.key.verifying_key().to_bytes()),
                row.encode_to_vec(),
            )
        })
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(BASELINE_BATCH) {
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(RAW).expect("table");
            for (id, row) in chunk {
                table.insert((server, *id), row.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    f64::from(PROFILES) / started.elapsed().as_secs_f64()
}
