//! The flood `.ci/vm-test` sends from the host to the packaged server in the emulated arm64
//! Debian, running the Raspberry Pi Zero 2 W profile under that profile's MemoryMax. Ignored in
//! the ordinary run: it needs the VM's forwarded ports in `IOP_VM_PRIMARY_PORT` and
//! `IOP_VM_TLS_PORT`. The VM test checks the other half inside the guest (no OOM kill, no
//! restart, the cgroup's memory peak).

use crate::kit::*;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, single_request::RequestType as Single};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// Clients that keep searching through the whole flood, on connections opened before it.
const SEARCHERS: usize = 4;
/// Flood connections open at once.
const AT_ONCE: usize = 300;

fn port_from_env(name: &str) -> u16 {
    let text = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run .ci/vm-test"));
    text.parse()
        .unwrap_or_else(|_| panic!("{name}={text} is not a port"))
}

fn search_request() -> Single {
    Single::ProfileSearch(ps::ProfileSearchRequest {
        max_response_record_count: 10,
        max_total_record_count: 100,
        latitude: 0x7FFF_FFFF,
        longitude: 0x7FFF_FFFF,
        ..Default::default()
    })
}

/// One flood connection: idle, a 1 MiB frame that stops a quarter of the way in, or the whole
/// amplification frame, held for 2 s. Returns whether the connection was made (the host's
/// user-mode network accepts it even when the server then refuses it).
async fn flood_connection(primary: u16, kind: usize, frame: Arc<Vec<u8>>) -> bool {
    let connect = TcpStream::connect(("127.0.0.1", primary));
    let Ok(Ok(mut tcp)) = timeout(Duration::from_secs(10), connect).await else {
        return false;
    };
    let sent = match kind % 3 {
        0 => Ok(()),
        1 => tcp.write_all(&frame[..frame.len() / 4]).await,
        _ => tcp.write_all(&frame).await,
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    sent.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the VM of .ci/vm-test"]
async fn vm_flood_the_zero_2w_profile_keeps_answering_searches() {
    let primary = port_from_env("IOP_VM_PRIMARY_PORT");
    let tls = port_from_env("IOP_VM_TLS_PORT");
    let connections: usize = std::env::var("IOP_VM_FLOOD_CONNECTIONS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3000);

    let mut searchers = Vec::new();
    for _ in 0..SEARCHERS {
        let mut client = Client::tls(tls).await;
        client.start_conversation(1).await;
        assert_status(&client.single(2, search_request()).await, Status::Ok);
        searchers.push(client);
    }

    let flooding = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicU64::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let mut search_tasks = Vec::new();
    for mut client in searchers {
        let (flooding, answered, slowest_ms) =
            (flooding.clone(), answered.clone(), slowest_ms.clone());
        search_tasks.push(tokio::spawn(async move {
            let mut id = 3;
            while flooding.load(Ordering::Relaxed) {
                let started = Instant::now();
                // Client::single fails the test unless the answer comes within 10 s.
                assert_status(&client.single(id, search_request()).await, Status::Ok);
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                slowest_ms.fetch_max(ms, Ordering::Relaxed);
                answered.fetch_add(1, Ordering::Relaxed);
                id += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    let started = Instant::now();
    let frame = Arc::new(empty_update_items());
    let slots = Arc::new(Semaphore::new(AT_ONCE));
    let connected = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::with_capacity(connections);
    for kind in 0..connections {
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let (frame, connected) = (frame.clone(), connected.clone());
        flood.push(tokio::spawn(async move {
            if flood_connection(primary, kind, frame).await {
                connected.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for task in flood {
        task.await.expect("flood connection task");
    }
    flooding.store(false, Ordering::Relaxed);
    for task in search_tasks {
        task.await.expect("every search answered in time");
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered >= SEARCHERS as u64, "{answered} searches answered");

    // Once the flood has gone, a new client is served again.
    let mut client = Client::plain(primary).await;
    assert_status(&client.ping(1, b"after the flood").await, Status::Ok);

    println!(
        "flood: {connections} connections ({AT_ONCE} at once) in {flood_secs:.1} s, \
         {} connected; {answered} searches answered during it, slowest {} ms",
        connected.load(Ordering::Relaxed),
        slowest_ms.load(Ordering::Relaxed),
    );
}
