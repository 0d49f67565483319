//! Hosting throughput of the release server, next to the cryptography it needs, measured in
//! the same run: `cargo bench --bench hosting`.
//!
//! - register + check-in, as a client does it: StartConversation and RegisterHosting on one TLS
//!   connection, then StartConversation and CheckIn on a second one. Between client and server
//!   that is 2 TLS handshakes, 5 Ed25519 signatures and 5 verifications; the bound is the time
//!   those take when measured alone in this run (bare rustls handshakes with the server's own
//!   certificate and cipher order, ed25519-dalek signing and verifying). RegisterHosting also
//!   commits to disk before it answers, which that bound leaves out; a second bound adds one
//!   durable redb commit of a small record on the same disk, also measured in this run; a
//!   third adds the flow's 4 request round trips, each costed as a sequential Ping on one of
//!   the server's TLS connections in this run;
//! - durable profile updates: sequential UpdateProfile on one connection, each committed to disk
//!   before its answer (1 signature made by the client, 1 verified by the server); then the same
//!   from 32 clients at once, whose writes share fsyncs (group commit), as a ratio to the
//!   sequential rate of the same run.

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, Verifier};
use iop_profile_server::crypto::random_bytes;
use iop_profile_server::net::tls;
use iop_profile_server::store::load_or_create_tls;
use iop_profile_server::wire::ps::{self, conversation_request::RequestType as Conv};
use iop_profile_server::wire::request;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod common;
use common::{call, connect_tls, spawn_server};

const IDENTITIES: u32 = 300;
const UPDATES: u32 = 500;
/// Clients updating their profiles at once, and the updates each sends.
const WRITERS: u32 = 32;
const UPDATES_PER_WRITER: u32 = 60;
const CRYPTO_ROUNDS: u32 = 2_000;
const HANDSHAKES: u32 = 300;
const COMMITS: u32 = 300;
const PINGS: u32 = 2_000;
/// TLS handshakes, signatures and verifications in one register + check-in flow.
const FLOW_HANDSHAKES: f64 = 2.0;
const FLOW_SIGNS: f64 = 5.0;
const FLOW_VERIFIES: f64 = 5.0;
/// Requests in one flow: StartConversation and RegisterHosting, StartConversation and CheckIn.
const FLOW_REQUESTS: f64 = 4.0;

fn main() {
    common::run_selected("hosting", run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_server(dir.path(), "[limits]\nmax_hosted_identities = 20000");
    let (sign, verify) = ed25519_costs();
    let handshake = bare_handshake_cost(dir.path()).await;
    let commit = durable_commit_cost(dir.path());
    let round_trip = request_round_trip_cost(server.tls).await;
    let bound = handshake.mul_f64(FLOW_HANDSHAKES)
        + sign.mul_f64(FLOW_SIGNS)
        + verify.mul_f64(FLOW_VERIFIES);

    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..IDENTITIES {
        clients.push(register_and_check_in(server.tls).await);
    }
    let flow = started.elapsed() / IDENTITIES;
    let flows = 1.0 / flow.as_secs_f64();
    let pairs = 1.0 / (sign + verify).as_secs_f64();

    let mut writers = clients.split_off(clients.len() - WRITERS as usize);
    let started = Instant::now();
    update_profiles(&mut writers[0], UPDATES).await;
    let updates = f64::from(UPDATES) / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            tokio::spawn(async move { update_profiles(&mut writer, UPDATES_PER_WRITER).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let total = f64::from(UPDATES_PER_WRITER * WRITERS);
    let concurrent = total / started.elapsed().as_secs_f64();

    println!(
        "baselines: bare TLS handshake {:.0} us ({:.0}/s), Ed25519 sign {:.1} us, verify {:.1} us, \
         durable redb commit {:.0} us, sequential TLS ping {:.0} us",
        micros(handshake),
        1.0 / handshake.as_secs_f64(),
        micros(sign),
        micros(verify),
        micros(commit),
        micros(round_trip)
    );
    println!(
        "register + check-in flows/s ({IDENTITIES}, 2 TLS connections each): {flows:>9.1}   \
         {:.0} us per flow; bound (2 handshakes + 5 signs + 5 verifies) {:.0} us: ratio {:.2}",
        micros(flow),
        micros(bound),
        bound.as_secs_f64() / flow.as_secs_f64()
    );
    println!(
        "  with RegisterHosting's durable commit in the bound ({:.0} us): ratio {:.2}",
        micros(bound + commit),
        (bound + commit).as_secs_f64() / flow.as_secs_f64()
    );
    let full = bound + commit + round_trip.mul_f64(FLOW_REQUESTS);
    println!(
        "  and with the flow's 4 request round trips ({:.0} us): ratio {:.2}",
        micros(full),
        full.as_secs_f64() / flow.as_secs_f64()
    );
    println!(
        "durable profile updates/s ({UPDATES}, sequential):       {updates:>9.1}   \
         ratio to pairs/1: {:.3}",
        updates / pairs
    );
    println!(
        "durable profile updates/s ({WRITERS} clients at once):     {concurrent:>9.1}   \
         ratio to sequential: {:.2} (target >= 5)",
        concurrent / updates
    );
}

/// `count` signed UpdateProfile requests from a checked-in client, each awaited.
async fn update_profiles(client: &mut Client, count: u32) {
    let (key, stream) = client;
    for i in 0..count {
        let profile = ps::ProfileInformation {
            version: vec![1, 0, 0],
            public_key: key.verifying_key().to_bytes().to_vec(),
            r#type: "Bench".into(),
            name: format!("update {i}"),
            ..Default::default()
        };
        let signature = key.sign(&profile.encode_to_vec()).to_bytes().to_vec();
        let body = Conv::UpdateProfile(ps::UpdateProfileRequest {
            profile: Some(profile),
            ..Default::default()
        });
        call(stream, &request::conversation(100 + i, signature, body)).await;
    }
}

/// A checked-in client: its key and its TLS connection.
type Client = (
    SigningKey,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
);

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// The time of one signature and of one verification with ed25519-dalek, the code the server
/// runs.
fn ed25519_costs() -> (Duration, Duration) {
    let key = SigningKey::from_bytes(&random_bytes());
    let public = key.verifying_key();
    let message = [7u8; 64];
    let started = Instant::now();
    let signatures: Vec<_> = (0..CRYPTO_ROUNDS).map(|_| key.sign(&message)).collect();
    let sign = started.elapsed() / CRYPTO_ROUNDS;
    let started = Instant::now();
    for signature in &signatures {
        assert!(public.verify(&message, signature).is_ok());
    }
    (sign, started.elapsed() / CRYPTO_ROUNDS)
}

/// The time of one durable redb commit of a small record, in a database of its own beside the
/// server's (same disk).
fn durable_commit_cost(data_dir: &std::path::Path) -> Duration {
    const TABLE: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("bench");
    let db = redb::Database::builder()
        .set_cache_size(1 << 20)
        .create(data_dir.join("commit-bench.redb"))
        .expect("bench database");
    let record = [0x42u8; 200];
    let started = Instant::now();
    for i in 0..COMMITS {
        let txn = db.begin_write().expect("begin");
        txn.open_table(TABLE)
            .expect("table")
            .insert(i, record.as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    started.elapsed() / COMMITS
}

/// The time of one request and its answer on a TLS connection to the server, one at a time:
/// Ping, the cheapest request there is.
async fn request_round_trip_cost(port: u16) -> Duration {
    let mut stream = connect_tls(port).await;
    let ping = |id| {
        request::single(
            id,
            ps::single_request::RequestType::Ping(ps::PingRequest {
                payload: vec![0x42; 8],
            }),
        )
    };
    call(&mut stream, &ping(0)).await;
    let started = Instant::now();
    for id in 1..=PINGS {
        call(&mut stream, &ping(id)).await;
    }
    started.elapsed() / PINGS
}

/// The time of one bare TLS handshake over loopback: the server's certificate and cipher order
/// (read from its data directory), the same client configuration, a server on a thread of its
/// own (as the server process has), one byte echoed so that both sides finished.
async fn bare_handshake_cost(data_dir: &std::path::Path) -> Duration {
    let material = load_or_create_tls(data_dir).expect("the server's certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&material).expect("config"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            listener.set_nonblocking(true).expect("non-blocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            for _ in 0..HANDSHAKES {
                let (tcp, _) = listener.accept().await.expect("accept");
                tcp.set_nodelay(true).expect("nodelay");
                let mut stream = acceptor.accept(tcp).await.expect("handshake");
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.expect("byte");
                stream.write_all(&byte).await.expect("echo");
                stream.flush().await.expect("flush");
            }
        });
    });
    let started = Instant::now();
    for _ in 0..HANDSHAKES {
        let mut stream = connect_tls(port).await;
        stream.write_all(b"x").await.expect("byte");
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("echo");
    }
    started.elapsed() / HANDSHAKES
}

/// StartConversation with `key`; checks the server's signature. Returns the server's key and
/// its challenge.
async fn start_conversation(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    key: &SigningKey,
) -> (Vec<u8>, Vec<u8>) {
    let client_challenge = random_bytes::<32>();
    let start = Conv::Start(ps::StartConversationRequest {
        supported_versions: vec![vec![1, 0, 0]],
        public_key: key.verifying_key().to_bytes().to_vec(),
        client_challenge: client_challenge.to_vec(),
    });
    let answer = call(stream, &request::conversation(1, Vec::new(), start)).await;
    let Some(ps::response::ConversationType::ConversationResponse(ps::ConversationResponse {
        response_type: Some(ps::conversation_response::ResponseType::Start(started)),
        signature,
    })) = answer.conversation_type
    else {
        panic!("no StartConversationResponse");
    };
    assert!(iop_profile_server::crypto::verify(
        &started.public_key,
        &client_challenge,
        &signature
    ));
    (started.public_key, started.challenge)
}

/// RegisterHosting on one connection, then CheckIn on a second; returns the checked-in one.
async fn register_and_check_in(port: u16) -> Client {
    let key = SigningKey::from_bytes(&random_bytes());
    let public = key.verifying_key().to_bytes().to_vec();
    let mut stream = connect_tls(port).await;
    let (server_key, _) = start_conversation(&mut stream, &key).await;
    let contract = ps::HostingPlanContract {
        identity_public_key: public,
        start_time: iop_profile_server::clock::unix_ms(),
        identity_type: "Bench".into(),
        ..Default::default()
    };
    let signature = key.sign(&contract.encode_to_vec()).to_bytes().to_vec();
    let contract_bytes = contract.encode_to_vec();
    let register = Conv::RegisterHosting(ps::RegisterHostingRequest {
        contract: Some(contract),
    });
    let answer = call(&mut stream, &request::conversation(2, signature, register)).await;
    let Some(ps::response::ConversationType::ConversationResponse(registered)) =
        answer.conversation_type
    else {
        panic!("no RegisterHostingResponse");
    };
    assert!(iop_profile_server::crypto::verify(
        &server_key,
        &contract_bytes,
        &registered.signature
    ));
    drop(stream);
    let mut stream = connect_tls(port).await;
    let (_, challenge) = start_conversation(&mut stream, &key).await;
    let check_in = ps::CheckInRequest { challenge };
    let signature = key.sign(&check_in.encode_to_vec()).to_bytes().to_vec();
    call(
        &mut stream,
        &request::conversation(3, signature, Conv::CheckIn(check_in)),
    )
    .await;
    (key, stream)
}
