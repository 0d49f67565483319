//! Shared by the benchmarks: the release server as a child process, and a minimal client.
// Each benchmark binary compiles this module and uses a different part of it.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use iop_profile_server::net::tls;
use iop_profile_server::wire::{frame, ps};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Runs `bench` on a single-threaded runtime, unless `cargo bench` was asked for another one.
pub fn run_selected(name: &str, bench: impl std::future::Future<Output = ()>) {
    if !selected(name) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench);
}

/// Whether this bench should run, given `cargo bench` filter arguments.
pub fn selected(name: &str) -> bool {
    !std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != name)
}

/// The integration tests' kit: protocol client, call helpers, server process.
#[path = "../../tests/it/kit/mod.rs"]
pub mod kit;
pub use kit::process::ServerProcess as Server;

/// Environment variables the server may take from its surroundings; the benches set each
/// one explicitly, so a developer's shell does not change what they measure.
const SERVER_ENVIRONMENT: [&str; 1] = ["MALLOC_ARENA_MAX"];

/// The `Environment=` settings of the systemd unit that the packages install.
pub fn unit_environment() -> Vec<(String, String)> {
    include_str!("../../systemd/iop-profile-server.service")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .filter_map(|setting| setting.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Starts the release binary on `dir` with `extra` TOML appended, in the environment the
/// systemd unit gives the service, and waits until it serves.
pub fn spawn_server(dir: &Path, extra: &str) -> Server {
    spawn_server_in(dir, extra, &unit_environment())
}

/// Like [`spawn_server`], with `environment` instead of the unit's (empty: the C library's
/// defaults).
pub fn spawn_server_in(dir: &Path, extra: &str, environment: &[(String, String)]) -> Server {
    let mut command = kit::server_command();
    for name in SERVER_ENVIRONMENT {
        command.env_remove(name);
    }
    command.envs(environment.iter().map(|(name, value)| (name, value)));
    Server::start_with_command(dir, extra, command)
}

/// CPU time a process has used so far, all its threads, in nanoseconds
/// (`/proc/<pid>/task/*/schedstat`, exact where `/proc/<pid>/stat` counts 10 ms ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS of a process in KiB: its resident memory now.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// VmHWM of a process in KiB: its peak resident memory so far.
pub fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

use kit::status_kib;

/// A hosted identity written straight into a server's database before the server starts.
pub struct Seeded {
    /// Its public key.
    pub public_key: Vec<u8>,
    /// The identity type of its hosting agreement.
    pub identity_type: String,
    /// Its encoded `ProfileInformation`.
    pub profile: Vec<u8>,
    /// The owner's signature of `profile`.
    pub signature: Vec<u8>,
    /// Its thumbnail (empty: none).
    pub thumbnail: Vec<u8>,
}

/// Writes `identities` as initialised hosted identities into the database in `dir`, in one
/// transaction, creating the server key first (data is only served beside its identity);
/// image files are written without fsync: setup, not measurement. Returns the server's
/// network id.
pub fn seed_hosted(dir: &Path, identities: &[Seeded]) -> [u8; 32] {
    use iop_profile_server::crypto::sha256;
    use iop_profile_server::store::records::HostedIdentity;
    use iop_profile_server::store::{
        DATABASE_FILE, HOSTED_IDENTITIES, IMAGES, Store, image_path, load_or_create_identity,
    };
    use prost::Message as _;

    let key = load_or_create_identity(dir).expect("identity");
    drop(Store::open(dir, 64 << 20).expect("store"));
    let db = redb::Database::create(dir.join(DATABASE_FILE)).expect("db");
    let txn = db.begin_write().expect("txn");
    {
        let mut hosted = txn.open_table(HOSTED_IDENTITIES).expect("table");
        let mut refs = txn.open_table(IMAGES).expect("table");
        for seeded in identities {
            let mut thumbnail_image_hash = Vec::new();
            if !seeded.thumbnail.is_empty() {
                let hash = sha256(&seeded.thumbnail);
                let path = image_path(dir, &hash);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
                std::fs::write(&path, &seeded.thumbnail).expect("image");
                refs.insert(hash, 1).expect("ref");
                thumbnail_image_hash = hash.to_vec();
            }
            let identity = HostedIdentity {
                identity_type: seeded.identity_type.clone(),
                initialized: true,
                profile: seeded.profile.clone(),
                signature: seeded.signature.clone(),
                thumbnail_image_hash,
                expires_at_ms: i64::MAX,
                public_key: seeded.public_key.clone(),
                ..Default::default()
            };
            hosted
                .insert(
                    sha256(&seeded.public_key),
                    identity.encode_to_vec().as_slice(),
                )
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
    key.network_id().0
}

/// Opens a TLS connection that accepts the server's self-signed certificate.
pub async fn connect_tls(port: u16) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(tls::client_config().expect("client config"));
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    connector
        .connect(tls::any_server_name(), tcp)
        .await
        .expect("handshake")
}

/// Reads one frame body.
pub async fn read_frame<S: AsyncRead + Unpin>(socket: &mut S) -> Vec<u8> {
    let mut header = [0u8; frame::HEADER_LEN];
    socket.read_exact(&mut header).await.expect("header");
    let mut body = vec![0; frame::body_len(&header).expect("valid header")];
    socket.read_exact(&mut body).await.expect("body");
    body
}

/// Sends a message and returns the response, which must be OK.
pub async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    message: &ps::Message,
) -> ps::Response {
    socket
        .write_all(&frame::encode(message))
        .await
        .expect("write");
    let answer: ps::Message = frame::decode_body(&read_frame(socket).await).expect("decodes");
    let Some(ps::message::MessageType::Response(response)) = answer.message_type else {
        panic!("expected a response");
    };
    assert_eq!(response.status, 0, "request failed: {}", response.details);
    response
}
