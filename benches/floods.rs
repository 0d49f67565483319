//! Floods a single client can throw at a node, replayed against the release binary.
//!
//! Run with `cargo bench --bench floods`. The server runs with its defaults, except that the
//! per-client limits also apply to loopback (`exempt_loopback = false`), since every client here
//! is local. For each flood it prints the server's peak resident memory growth during it
//! (VmHWM, reset before each flood through /proc/<pid>/clear_refs), the worst round trip of an
//! unrelated client that pings every 2 ms on its own connection throughout, and what the flood
//! got. At the end: resident memory 60 s after the last flood, against the idle figure. Then
//! the floods of hostile peers (`floods/peers.rs`), each against a fresh server: bytes it wrote
//! to disk, the unrelated client's worst ping, and what the flood got. `IOP_BENCH_PEERS_ONLY=1`
//! runs only those.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iop_profile_server::wire::ps::{self, single_request::RequestType};
use iop_profile_server::wire::{frame, request};

mod common;
#[path = "floods/peers.rs"]
mod peers;
use common::kit::{empty_update_items, unsolicited_search_results};
use common::{connect_tls, peak_kib, read_frame, rss_kib, spawn_server};
use tokio::io::AsyncWriteExt;

/// A pattern that costs milliseconds to compile (issue 11, defect 6).
const COSTLY_PATTERN: &str =
    r"\w{1,30}=\w{1,30}(,\w{1,30}){0,9};\w{1,30}=\w{1,30}(,\w{1,30}){0,9}ZZ";

fn main() {
    common::run_selected("floods", run());
}

/// Pings on its own connection until stopped; keeps the worst round trip in microseconds.
pub(crate) struct Pinger {
    stop: Arc<AtomicBool>,
    worst_us: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Pinger {
    pub(crate) fn start(port: u16) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let worst_us = Arc::new(AtomicU64::new(0));
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let ping = frame::encode(&request::single(
            1,
            RequestType::Ping(ps::PingRequest {
                payload: b"unrelated".to_vec(),
            }),
        ));
        let (stop_flag, worst) = (Arc::clone(&stop), Arc::clone(&worst_us));
        let thread = std::thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                stream.write_all(&ping).expect("ping sent");
                let mut header = [0u8; frame::HEADER_LEN];
                stream.read_exact(&mut header).expect("ping answered");
                let mut body = vec![0; frame::body_len(&header).expect("header")];
                stream.read_exact(&mut body).expect("ping answered");
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                worst.fetch_max(took, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Pinger {
            stop,
            worst_us,
            thread,
        }
    }

    /// The worst round trip since the last call.
    pub(crate) fn take_worst(&self) -> Duration {
        Duration::from_micros(self.worst_us.swap(0, Ordering::Relaxed))
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn reset_peak(pid: u32) {
    // "5" resets VmHWM to the current resident size (proc(5), clear_refs).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

async fn run() {
    if std::env::var_os("IOP_BENCH_PEERS_ONLY").is_none() {
        client_floods().await;
    }
    peer_floods().await;
}

/// The floods of one client, against one server.
async fn client_floods() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_server(dir.path(), "[limits]\nexempt_loopback = false");
    let (primary, tls_port) = (server.primary, server.tls);
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);
    let pinger = Pinger::start(primary);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = pinger.take_worst();

    println!("floods against the release binary (idle: {idle} KiB resident)");
    println!(
        "{:<44} {:>12} {:>14}  outcome",
        "flood", "peak growth", "worst ping"
    );
    let floods: [(&str, Flood); 4] = [
        (
            "17 connections holding header-only frames",
            Flood::HeaderOnly,
        ),
        ("40 amplification frames (1 MiB each)", Flood::Amplification),
        ("1,000 connections from one address", Flood::Connections),
        ("800 pipelined costly-regex searches", Flood::RegexStorm),
    ];
    for (name, flood) in floods {
        reset_peak(pid);
        let before = rss_kib(pid);
        let outcome = flood.run(primary, tls_port).await;
        let growth = peak_kib(pid).saturating_sub(before);
        let worst = pinger.take_worst();
        println!(
            "{name:<44} {:>8} KiB {:>11.1} ms  {outcome}",
            growth,
            worst.as_secs_f64() * 1000.0
        );
    }
    pinger.stop();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = rss_kib(pid);
    println!(
        "resident 60 s after the last flood: {after} KiB = {:.2} x idle (target <= 2)",
        as_f64(after) / as_f64(idle)
    );
}

/// The floods of hostile peers, each against a fresh server.
async fn peer_floods() {
    println!("\nfloods from peers, each against a fresh server for 30 s");
    println!(
        "{:<44} {:>12} {:>14}  outcome",
        "flood", "disk written", "worst ping"
    );
    let refresh = peers::refresh_flood().await;
    print_peer_flood("refresh items from a neighbour (2 conns)", &refresh);
    let churn = peers::initialisation_churn().await;
    print_peer_flood("initialisations restarted (4 followers)", &churn);
    let slow = peers::slow_followers().await;
    print_peer_flood("followers answering just in time (10)", &slow);
}

fn print_peer_flood(name: &str, outcome: &peers::Outcome) {
    println!(
        "{name:<44} {:>8} KiB {:>11.1} ms  {}",
        outcome.disk_bytes / 1024,
        outcome.worst_ping.as_secs_f64() * 1000.0,
        outcome.what
    );
}

fn as_f64(kib: u64) -> f64 {
    f64::from(u32::try_from(kib).unwrap_or(u32::MAX))
}

enum Flood {
    HeaderOnly,
    Amplification,
    Connections,
    RegexStorm,
}

impl Flood {
    async fn run(&self, primary: u16, tls_port: u16) -> String {
        match self {
            Flood::HeaderOnly => header_only(primary).await,
            Flood::Amplification => amplification(primary).await,
            Flood::Connections => connections(primary).await,
            Flood::RegexStorm => regex_storm(tls_port).await,
        }
    }
}

async fn header_only(port: u16) -> String {
    let mut held = Vec::new();
    for _ in 0..17 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(&[0x0D, 0xFB, 0xFF, 0x0F, 0x00])
            .await
            .expect("header");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    format!("{} connections held 3 s", held.len())
}

async fn amplification(port: u16) -> String {
    let frames = [empty_update_items(), unsolicited_search_results()];
    let mut refused = 0;
    for i in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        if stream.write_all(&frames[i % 2]).await.is_err() {
            continue;
        }
        let body = read_frame(&mut stream).await;
        let answer: ps::Message = frame::decode_body(&body).expect("decodes");
        if let Some(ps::message::MessageType::Response(response)) = answer.message_type
            && response.status == iop_profile_server::wire::Status::ErrorProtocolViolation as i32
        {
            refused += 1;
        }
    }
    format!("{refused} of 40 refused as protocol violations")
}

async fn connections(port: u16) -> String {
    let mut open = Vec::new();
    for _ in 0..1000 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            open.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut served = 0;
    for stream in &mut open {
        let ping = frame::encode(&request::single(
            2,
            RequestType::Ping(ps::PingRequest::default()),
        ));
        if stream.write_all(&ping).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(2), read_frame_or_close(stream))
                .await
                .unwrap_or(false)
        {
            served += 1;
        }
    }
    format!("{served} of 1000 served, the rest closed")
}

async fn read_frame_or_close(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).await.is_ok()
}

async fn regex_storm(tls_port: u16) -> String {
    let mut stream = connect_tls(tls_port).await;
    let mut bytes = Vec::new();
    for id in 1..=800 {
        bytes.extend(frame::encode(&request::single(
            id,
            RequestType::ProfileSearch(ps::ProfileSearchRequest {
                max_response_record_count: 10,
                max_total_record_count: 10,
                extra_data: COSTLY_PATTERN.into(),
                latitude: 0x7FFF_FFFF,
                ..Default::default()
            }),
        )));
    }
    stream.write_all(&bytes).await.expect("searches sent");
    let (mut answered, mut busy) = (0, 0);
    while answered < 800 {
        let body = read_frame(&mut stream).await;
        let answer: ps::Message = frame::decode_body(&body).expect("decodes");
        if let Some(ps::message::MessageType::Response(response)) = answer.message_type
            && response.status == iop_profile_server::wire::Status::ErrorBusy as i32
        {
            busy += 1;
        }
        answered += 1;
    }
    format!("800 answered, {busy} of them ERROR_BUSY")
}
