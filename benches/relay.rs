//! Relay throughput and memory of the release server: `cargo bench --bench relay`.
//!
//! - the baselines, same run: pings per second on TLS connections to the server, each keeping
//!   16 pings of 256 bytes in flight (the relay's window and message size), on one connection
//!   and on 100 at once;
//! - relayed messages per second through one relay, the sender keeping up to 16 unacknowledged,
//!   against the one-connection baseline;
//! - relayed messages per second through 100 relays at once, against the 100-connection one;
//! - resident memory per open relay (its two relay connections plus the callee's control one);
//! - the server's CPU time per ping and per relayed message (one connection, one relay). A
//!   relayed message is two TLS records in and two out on the server where a ping is one and
//!   one, and clients and server share the machine's cores: the CPU ratio says what throughput
//!   ratio the work alone allows.

use std::time::{Duration, Instant};

use iop_profile_server::wire::ps::{self, single_request::RequestType};
use iop_profile_server::wire::{Status, request};

mod common;
use common::kit::{
    ANSWER_TIMEOUT, Client, Incoming, OpenCall, ack_message, incoming, open_call, send_message,
};
use common::{Server, cpu_ns, rss_kib, spawn_server};

const PINGS: u32 = 5_000;
/// Bytes of each relayed message and each baseline ping.
const MESSAGE: usize = 256;
const ONE_RELAY_MESSAGES: u32 = 5_000;
const RELAYS: u32 = 100;
const PER_RELAY_MESSAGES: u32 = 200;
const WINDOW: u32 = 16;

fn main() {
    common::run_selected("relay", run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = spawn_server(
        dir.path(),
        "[limits]\nmax_relays = 200\nmax_connections = 1000",
    );
    let pid = server.child.id();
    let cpu_before = cpu_ns(pid);
    let pings = ping_rate(&server, 1, PINGS).await;
    let ping_cpu = per_message_us(cpu_ns(pid) - cpu_before, PINGS);
    let many_pings = ping_rate(&server, RELAYS, PER_RELAY_MESSAGES).await;

    let call = open_call(&server).await;
    let cpu_before = cpu_ns(pid);
    let started = Instant::now();
    pump(call, ONE_RELAY_MESSAGES).await;
    let one = f64::from(ONE_RELAY_MESSAGES) / started.elapsed().as_secs_f64();
    let relay_cpu = per_message_us(cpu_ns(pid) - cpu_before, ONE_RELAY_MESSAGES);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let mut calls = Vec::new();
    for _ in 0..RELAYS {
        calls.push(open_call(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(pid);
    let started = Instant::now();
    let pumps: Vec<_> = calls
        .into_iter()
        .map(|call| pump(call, PER_RELAY_MESSAGES))
        .collect();
    futures_join_all(pumps).await;
    let total = RELAYS * PER_RELAY_MESSAGES;
    let many = f64::from(total) / started.elapsed().as_secs_f64();

    let grown = u32::try_from(after.saturating_sub(before)).unwrap_or(u32::MAX);
    let per_relay = f64::from(grown) / f64::from(RELAYS);
    println!(
        "pings/s, window {WINDOW}, {MESSAGE} bytes (baselines): 1 connection {pings:.0}, \
         {RELAYS} connections {many_pings:.0}"
    );
    println!(
        "relayed messages/s, 1 relay (window {WINDOW}):         {one:>9.0}   ratio {:.2}",
        one / pings
    );
    println!(
        "relayed messages/s, {RELAYS} relays at once:          {many:>9.0}   ratio {:.2}",
        many / many_pings
    );
    println!("resident memory per open relay (3 TLS connections): {per_relay:>7.1} KiB");
    println!(
        "server CPU per message: ping {ping_cpu:.1} us, relayed {relay_cpu:.1} us: ratio {:.2}",
        ping_cpu / relay_cpu
    );
}

/// Microseconds of `ns` spread over `messages`.
fn per_message_us(ns: u64, messages: u32) -> f64 {
    Duration::from_nanos(ns).as_secs_f64() * 1e6 / f64::from(messages)
}

/// Pings per second over `connections` TLS connections at once, `count` on each, every one
/// keeping WINDOW pings of MESSAGE bytes in flight.
async fn ping_rate(server: &Server, connections: u32, count: u32) -> f64 {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Client::tls(server.tls).await);
    }
    let started = Instant::now();
    futures_join_all(
        clients
            .into_iter()
            .map(|c| pipelined_pings(c, count))
            .collect(),
    )
    .await;
    f64::from(connections * count) / started.elapsed().as_secs_f64()
}

/// Sends `count` pings, at most WINDOW unanswered, as `pump` sends relayed messages.
async fn pipelined_pings(client: Client, count: u32) {
    let (mut read, mut write) = client.split();
    let (mut sent, mut answered) = (0u32, 0u32);
    while answered < count {
        while sent < count && sent - answered < WINDOW {
            let ping = RequestType::Ping(ps::PingRequest {
                payload: vec![0x55; MESSAGE],
            });
            write
                .send(&request::single(sent, ping))
                .await
                .expect("send");
            sent += 1;
        }
        match incoming(read.receive().await) {
            Incoming::Answer(status) => assert_eq!(status, Status::Ok),
            Incoming::Delivery(..) => panic!("the server sends no requests here"),
        }
        answered += 1;
    }
}

/// Sends `count` messages from the caller to the callee, at most WINDOW unacknowledged.
async fn pump(call: OpenCall, count: u32) {
    let OpenCall {
        e_app,
        r_app,
        tr,
        e_ctl,
        ..
    } = call;
    let (mut r_read, mut r_write) = r_app.split();
    let (mut e_read, mut e_write) = e_app.split();
    let sender = async {
        let (mut sent, mut answered) = (0u32, 0u32);
        while answered < count {
            while sent < count && sent - answered < WINDOW {
                r_write
                    .send(&send_message(sent + 2, &tr, &[0x55; MESSAGE]))
                    .await
                    .expect("send");
                sent += 1;
            }
            match incoming(r_read.receive().await) {
                Incoming::Answer(status) => {
                    assert_eq!(status, Status::Ok);
                    answered += 1;
                }
                Incoming::Delivery(..) => panic!("the callee sends nothing"),
            }
        }
    };
    let receiver = async {
        for _ in 0..count {
            match incoming(
                tokio::time::timeout(ANSWER_TIMEOUT, e_read.receive())
                    .await
                    .expect("delivery"),
            ) {
                Incoming::Delivery(id, _) => e_write.send(&ack_message(id)).await.expect("ack"),
                Incoming::Answer(_) => panic!("the callee sent nothing"),
            }
        }
    };
    tokio::join!(sender, receiver);
    drop(e_ctl);
}

/// Runs every future to completion concurrently on this task.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|future| future.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
