//! A property test over the whole receiving path (framing, decode cost, decoding, the role and
//! conversation gates, the handlers): frames built from valid requests, then mutated, are sent
//! to a real server. Whatever arrives, the server answers with a well-formed frame within the
//! protocol's size or closes the connection, and keeps serving: a fresh Ping is answered after
//! every case.

use iop_profile_server::role::Role;
use iop_profile_server::wire::{Status, frame, ps, request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout};

use crate::kit::{Client, Identity, Options, TestServer, assert_status};

/// Valid requests of many kinds, as the seeds the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    use ps::conversation_request::RequestType as Conv;
    use ps::single_request::RequestType as Single;
    let identity = Identity::random();
    let singles = [
        Single::Ping(ps::PingRequest {
            payload: b"seed".to_vec(),
        }),
        Single::ListRoles(ps::ListRolesRequest::default()),
        Single::ProfileStats(ps::ProfileStatsRequest::default()),
        Single::ProfileSearch(ps::ProfileSearchRequest {
            max_response_record_count: 10,
            max_total_record_count: 100,
            name: "*a*".into(),
            extra_data: "(x|y)+".into(),
            latitude: 0x7FFF_FFFF,
            ..Default::default()
        }),
        Single::GetProfileInformation(ps::GetProfileInformationRequest {
            identity_network_id: identity.network_id(),
            include_profile_image: true,
            ..Default::default()
        }),
    ];
    let conversations = [
        Conv::Start(ps::StartConversationRequest {
            supported_versions: vec![vec![1, 0, 0]],
            public_key: identity.public_key(),
            client_challenge: vec![7; 32],
        }),
        Conv::NeighborhoodSharedProfileUpdate(ps::NeighborhoodSharedProfileUpdateRequest {
            items: vec![ps::SharedProfileUpdateItem::default(); 3],
        }),
        Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
            service_names: vec!["chat".into(), "files".into()],
        }),
    ];
    let mut seeds: Vec<Vec<u8>> = singles
        .into_iter()
        .map(|body| frame::encode(&request::single(1, body)))
        .collect();
    seeds.extend(
        conversations
            .into_iter()
            .map(|body| frame::encode(&request::conversation(2, vec![9; 64], body))),
    );
    seeds
}

/// One way to damage a frame.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (index modulo length).
    Set(usize, u8),
    /// Cut the frame at (index modulo length).
    Truncate(usize),
    /// Insert bytes at (index modulo length).
    Insert(usize, Vec<u8>),
    /// Fix the header's length to the body actually sent.
    FixLength,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        2 => Just(Mutation::FixLength),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Set(i, b) => {
                if let Some(byte) = bytes.get_mut(i % len) {
                    *byte = *b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Insert(i, extra) => {
                let at = (i % len).min(bytes.len());
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::FixLength => {
                if bytes.len() >= frame::HEADER_LEN {
                    let body = u32::try_from(bytes.len() - frame::HEADER_LEN).unwrap_or(0);
                    bytes[1..frame::HEADER_LEN].copy_from_slice(&body.to_le_bytes());
                }
            }
        }
    }
    bytes
}

/// Sends `bytes`, then reads what comes back until the server closes, goes quiet or has sent
/// a whole frame; on the plain port every frame it sends must be well-formed and within the
/// protocol's size limit (on the TLS port the answer is TLS's: an alert or nothing).
async fn exchange(port: u16, bytes: &[u8], plain: bool) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    // The server may close before reading everything: a failed write is an allowed answer.
    let _ = stream.write_all(bytes).await;
    if !plain {
        let mut scratch = [0u8; 4096];
        let _ = timeout(Duration::from_millis(150), stream.read(&mut scratch)).await;
        return Ok(());
    }
    let mut header = [0u8; frame::HEADER_LEN];
    match timeout(Duration::from_millis(150), stream.read_exact(&mut header)).await {
        // Quiet (waiting for the rest of a frame) or closed: both are fine.
        Err(_) | Ok(Err(_)) => return Ok(()),
        Ok(Ok(_)) => {}
    }
    let len = frame::body_len(&header).map_err(|e| format!("server sent {e}"))?;
    let mut body = vec![0; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("server sent a partial frame: {e}"))?;
    frame::decode_body::<ps::Message>(&body).map_err(|e| format!("server sent {e}"))?;
    Ok(())
}

#[test]
fn mutated_frames_never_break_the_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(TestServer::start(&Options::default()));
    let ports = [server.port(Role::Primary), server.port(Role::ClNonCustomer)];
    let seeds = seeds();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 1..6),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(seed, mutations, tls_port)| {
            let bytes = apply(seeds[seed].clone(), &mutations);
            // The TLS port sees the bytes as a broken handshake; the primary port parses them.
            let port = ports[usize::from(tls_port)];
            runtime
                .block_on(exchange(port, &bytes, !tls_port))
                .map_err(TestCaseError::fail)?;
            let still_serving = runtime.block_on(async {
                let mut client = Client::plain(ports[0]).await;
                client.ping(1, b"alive").await
            });
            prop_assert_eq!(
                Status::try_from(still_serving.status).ok(),
                Some(Status::Ok)
            );
            Ok(())
        })
        .expect("the server survives every mutated frame");
    runtime.block_on(async {
        let mut client = Client::plain(ports[0]).await;
        assert_status(&client.ping(2, b"end").await, Status::Ok);
    });
}

/// The seed corpus of the coverage-guided target (`fuzz/`, cargo-fuzz on nightly) holds the
/// request bodies above; the inputs it keeps are replayed here on the stable toolchain.
#[tokio::test]
async fn the_fuzz_corpus_is_answered_or_closed() {
    let server = TestServer::start(&Options::default()).await;
    let port = server.port(Role::Primary);
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/serve");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&corpus).expect("the corpus is committed") {
        let body = std::fs::read(entry.expect("entry").path()).expect("read");
        let mut bytes = vec![frame::MARKER];
        bytes.extend_from_slice(&u32::try_from(body.len()).expect("small").to_le_bytes());
        bytes.extend_from_slice(&body);
        exchange(port, &bytes, true)
            .await
            .expect("a valid answer or a close");
        replayed += 1;
    }
    assert!(replayed >= seeds().len());
    let mut client = Client::plain(port).await;
    assert_status(&client.ping(1, b"after the corpus").await, Status::Ok);
}
