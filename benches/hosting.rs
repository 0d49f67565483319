//! Hosting throughput of the release server, next to the Ed25519 work it needs, measured in
//! the same run: `cargo bench --bench hosting`.
//!
//! - register + check-in: one TLS connection per identity running StartConversation,
//!   RegisterHosting and CheckIn (4 signatures made and 4 verified between client and server);
//! - durable profile updates: sequential UpdateProfile on one connection, each committed to disk
//!   before its answer (1 signature made by the client, 1 verified by the server).

use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey, Verifier};
use iop_profile_server::crypto::random_bytes;
use iop_profile_server::wire::ps::{self, conversation_request::RequestType as Conv};
use iop_profile_server::wire::request;
use prost::Message as _;

mod common;
use common::{call, connect_tls, spawn_server};

const IDENTITIES: u32 = 300;
const UPDATES: u32 = 500;
const CRYPTO_ROUNDS: u32 = 2_000;

fn main() {
    common::run_selected("hosting", run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_server(dir.path(), "[limits]\nmax_hosted_identities = 20000");
    let pairs = ed25519_pairs_per_second();

    let started = Instant::now();
    let mut last = None;
    for _ in 0..IDENTITIES {
        last = Some(register_and_check_in(server.tls).await);
    }
    let flows = f64::from(IDENTITIES) / started.elapsed().as_secs_f64();

    let (key, mut stream) = last.expect("at least one identity");
    let started = Instant::now();
    for i in 0..UPDATES {
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
        call(
            &mut stream,
            &request::conversation(100 + i, signature, body),
        )
        .await;
    }
    let updates = f64::from(UPDATES) / started.elapsed().as_secs_f64();

    println!("Ed25519 sign+verify pairs/s (baseline, this process): {pairs:>9.0}");
    println!(
        "register + check-in flows/s ({IDENTITIES}, 1 TLS connection each): {flows:>9.1}   \
         ratio to pairs/4: {:.2}",
        flows / (pairs / 4.0)
    );
    println!(
        "durable profile updates/s ({UPDATES}, sequential):       {updates:>9.1}   \
         ratio to pairs/1: {:.3}",
        updates / pairs
    );
}

/// Sign-then-verify pairs per second with ed25519-dalek, the same code the server runs.
fn ed25519_pairs_per_second() -> f64 {
    let key = SigningKey::from_bytes(&random_bytes());
    let public = key.verifying_key();
    let message = [7u8; 64];
    let started = Instant::now();
    for _ in 0..CRYPTO_ROUNDS {
        let signature = key.sign(&message);
        assert!(public.verify(&message, &signature).is_ok());
    }
    f64::from(CRYPTO_ROUNDS) / started.elapsed().as_secs_f64()
}

async fn register_and_check_in(
    port: u16,
) -> (
    SigningKey,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let key = SigningKey::from_bytes(&random_bytes());
    let public = key.verifying_key().to_bytes().to_vec();
    let mut stream = connect_tls(port).await;
    let client_challenge = random_bytes::<32>();
    let start = Conv::Start(ps::StartConversationRequest {
        supported_versions: vec![vec![1, 0, 0]],
        public_key: public.clone(),
        client_challenge: client_challenge.to_vec(),
    });
    let answer = call(&mut stream, &request::conversation(1, Vec::new(), start)).await;
    let Some(ps::response::ConversationType::ConversationResponse(ps::ConversationResponse {
        response_type: Some(ps::conversation_response::ResponseType::Start(started)),
        signature,
    })) = answer.conversation_type
    else {
        panic!("no StartConversationResponse");
    };
    let server_key = started.public_key.clone();
    assert!(iop_profile_server::crypto::verify(
        &server_key,
        &client_challenge,
        &signature
    ));
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
    let check_in = ps::CheckInRequest {
        challenge: started.challenge,
    };
    let signature = key.sign(&check_in.encode_to_vec()).to_bytes().to_vec();
    call(
        &mut stream,
        &request::conversation(3, signature, Conv::CheckIn(check_in)),
    )
    .await;
    (key, stream)
}
