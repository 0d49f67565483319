//! Frame bodies sent, each in a correct 5-byte header, to a real server running in this
//! process: framing, decode cost, decoding, the role and conversation gates and the handlers
//! all run on every input. A panic anywhere aborts (cargo-fuzz builds with panic=abort), and the
//! server must answer within a second or close.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use iop_profile_server::config::Config;
use iop_profile_server::role::Role;
use iop_profile_server::runtime::{self, RunningServer};
use iop_profile_server::wire::frame;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

struct Harness {
    runtime: Runtime,
    _server: RunningServer,
    _dir: tempfile::TempDir,
    port: u16,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n\
             [[listener]]\nport = 0\nroles = [\"primary\"]\n\
             [[listener]]\nport = 0\nroles = [\"sr_neighbor\", \"cl_non_customer\", \"cl_customer\", \"cl_app_service\"]\n",
            dir.path().display().to_string()
        );
        let config = Config::parse(&config).expect("config");
        let server = runtime.block_on(runtime::start(config)).expect("server");
        let port = server.port_of(Role::Primary).expect("primary");
        Harness {
            runtime,
            _server: server,
            _dir: dir,
            port,
        }
    })
}

async fn exchange(port: u16, body: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut bytes = vec![frame::MARKER];
    bytes.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(body);
    if stream.write_all(&bytes).await.is_err() {
        return;
    }
    let mut header = [0u8; frame::HEADER_LEN];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut header)).await;
    if let Ok(Ok(_)) = read {
        let len = frame::body_len(&header).expect("the server writes valid headers");
        let mut answer = vec![0; len];
        stream
            .read_exact(&mut answer)
            .await
            .expect("a whole answer");
    }
}

fuzz_target!(|body: &[u8]| {
    if body.len() > frame::MAX_BODY_LEN {
        return;
    }
    let harness = harness();
    harness.runtime.block_on(exchange(harness.port, body));
});
