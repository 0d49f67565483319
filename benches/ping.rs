//! Ping round trips and resident memory of the real server binary.
//!
//! Run with `cargo bench --bench ping`. Figures are printed as ratios against baselines measured
//! in the same run, because this machine is noisy:
//! - ping round trips per second on one plain connection, against a raw echo server that reads
//!   and writes the same 5-byte framing without any protocol work;
//! - resident memory of the idle server, and with 1,000 idle TLS connections.

use std::time::{Duration, Instant};

use iop_profile_server::wire::ps::{self, single_request::RequestType};
use iop_profile_server::wire::{frame, request};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{connect_tls, read_frame, rss_kib, spawn_server};

const ROUND_TRIPS: u32 = 20_000;
const IDLE_TLS_CONNECTIONS: u32 = 1_000;

fn main() {
    common::run_selected("ping", run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_server(dir.path(), "[limits]\nmax_connections = 1100");
    let (primary, tls_port) = (server.primary, server.tls);
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    let echo_port = spawn_echo_server();
    // Warm both up, then measure each twice, interleaved, and keep the better run of each.
    let _ = ping_rate(echo_port, 2_000).await;
    let _ = ping_rate(primary, 2_000).await;
    let mut echo = 0f64;
    let mut ours = 0f64;
    for _ in 0..2 {
        echo = echo.max(ping_rate(echo_port, ROUND_TRIPS).await);
        ours = ours.max(ping_rate(primary, ROUND_TRIPS).await);
    }

    let connections = open_idle_tls(tls_port, IDLE_TLS_CONNECTIONS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_rss = rss_kib(pid);
    drop(connections);

    println!("ping round trips/s, one plain connection ({ROUND_TRIPS} sequential):");
    println!("  raw echo server (baseline): {echo:>10.0}");
    println!(
        "  iop-profile-server:         {ours:>10.0}   ratio {:.2}",
        ours / echo
    );
    println!("resident memory of the server process:");
    println!(
        "  idle:                       {:>7.1} MiB",
        kib_to_mib(idle_rss)
    );
    println!(
        "  {IDLE_TLS_CONNECTIONS} idle TLS connections:  {:>7.1} MiB   ({:.1} KiB per connection)",
        kib_to_mib(loaded_rss),
        f64::from(u32::try_from(loaded_rss.saturating_sub(idle_rss)).unwrap_or(u32::MAX))
            / f64::from(IDLE_TLS_CONNECTIONS)
    );
}

fn kib_to_mib(kib: u64) -> f64 {
    f64::from(u32::try_from(kib).unwrap_or(u32::MAX)) / 1024.0
}

/// A server that answers every frame with the same bytes: framing cost only.
fn spawn_echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                tokio::spawn(async move {
                    let mut header = [0u8; frame::HEADER_LEN];
                    while socket.read_exact(&mut header).await.is_ok() {
                        let Ok(len) = frame::body_len(&header) else {
                            return;
                        };
                        let mut body = vec![0; len];
                        if socket.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let mut reply = header.to_vec();
                        reply.extend_from_slice(&body);
                        if socket.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    port
}

async fn ping_rate(port: u16, round_trips: u32) -> f64 {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let started = Instant::now();
    for id in 0..round_trips {
        let ping = request::single(
            id,
            RequestType::Ping(ps::PingRequest {
                payload: b"bench".to_vec(),
            }),
        );
        socket
            .write_all(&frame::encode(&ping))
            .await
            .expect("write");
        read_frame(&mut socket).await;
    }
    f64::from(round_trips) / started.elapsed().as_secs_f64()
}

async fn open_idle_tls(port: u16, count: u32) -> Vec<impl AsyncWrite> {
    let mut connections = Vec::new();
    for id in 0..count {
        let mut stream = connect_tls(port).await;
        let ping = request::single(id, RequestType::Ping(ps::PingRequest::default()));
        stream
            .write_all(&frame::encode(&ping))
            .await
            .expect("write");
        read_frame(&mut stream).await;
        connections.push(stream);
    }
    connections
}
