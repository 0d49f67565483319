//! The Prometheus endpoint (`[metrics] address`): `GET /metrics` over plain HTTP/1.1, answering
//! the counters of [`crate::metrics`] and the state of the observation snapshot as gauges.
//!
//! Deliberately small: a scraper sends one short request per connection. Requests are read up
//! to a fixed size and time, a few connections are served at once and the rest are closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::observe::{self, Peers, Snapshot, Usage};
use crate::context::Ctx;
use crate::metrics::Exposition;

/// Longest wait for a whole request head: a scraper sends its few hundred bytes at once, so a
/// connection that is slower only holds a reader's place.
const HEAD_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the answer to be written.
const WAIT: Duration = Duration::from_secs(5);
/// Largest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 4096;
/// Connections whose request head is awaited at once; more are closed at once. Each holds its
/// place for [`HEAD_WAIT`] at most, so idle or dripping connections cannot starve scrapes.
const MAX_READERS: usize = 64;
/// Expositions rendered at once; a request waits for its turn.
const MAX_SCRAPES: usize = 4;

/// Serves `/metrics` on `listener` until shutdown.
pub(crate) async fn serve(ctx: Arc<Ctx>, listener: TcpListener) {
    if let Ok(address) = listener.local_addr() {
        if !address.ip().is_loopback() {
            tracing::warn!(
                %address,
                "metrics.address is not a loopback address: anyone who can reach it reads the \
                 metrics"
            );
        }
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    let readers = Arc::new(Semaphore::new(MAX_READERS));
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(reader) = Arc::clone(&readers).try_acquire_owned() else {
            continue;
        };
        let (shared, scrapes) = (Arc::clone(&ctx), Arc::clone(&scrapes));
        ctx.spawn(async move {
            tokio::select! {
                () = shared.shutdown.cancelled() => {}
                () = answer(&shared, stream, reader, &scrapes) => {}
            }
        });
    }
}

/// Reads one request within [`HEAD_WAIT`], gives up its reader's place, and answers it when
/// a scrape slot is free; writing is bounded by [`WAIT`].
async fn answer(
    ctx: &Ctx,
    mut stream: TcpStream,
    reader: tokio::sync::OwnedSemaphorePermit,
    scrapes: &Semaphore,
) {
    let read = tokio::time::timeout(HEAD_WAIT, read_request(&mut stream)).await;
    drop(reader);
    let Ok(Some(target)) = read else {
        return;
    };
    let Ok(_scrape) = scrapes.acquire().await else {
        return;
    };
    let reply = match target {
        Target::Metrics => match exposition(ctx).await {
            Ok(text) => response("200 OK", Exposition::CONTENT_TYPE, &text),
            Err(error) => response(
                "500 Internal Server Error",
                "text/plain",
                &format!("{error}\n"),
            ),
        },
        Target::Other => response("404 Not Found", "text/plain", "try /metrics\n"),
        Target::NotGet => response("405 Method Not Allowed", "text/plain", "GET only\n"),
        Target::Malformed => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    let _ = tokio::time::timeout(WAIT, stream.write_all(reply.as_bytes())).await;
    let _ = tokio::time::timeout(WAIT, stream.shutdown()).await;
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Metrics,
    Other,
    NotGet,
    Malformed,
}

/// Reads a request head; `None` when the peer closed before sending one.
async fn read_request(stream: &mut TcpStream) -> Option<Target> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..read]);
        match parse_head(&head) {
            Some(target) => return Some(target),
            None if head.len() >= MAX_HEAD_BYTES => return Some(Target::Malformed),
            None => {}
        }
    }
}

/// The target of a complete request head; `None` while it is incomplete.
fn parse_head(head: &[u8]) -> Option<Target> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Target::Malformed),
        Ok(httparse::Status::Complete(_)) => Some(match (request.method, request.path) {
            (Some("GET"), Some(path)) if path.split('?').next() == Some("/metrics") => {
                Target::Metrics
            }
            (Some("GET"), _) => Target::Other,
            _ => Target::NotGet,
        }),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Every metric of the server now, as exposition text.
pub(crate) async fn exposition(ctx: &Ctx) -> Result<String, crate::store::StoreError> {
    let snapshot = observe::snapshot(ctx).await?;
    let mut out = Exposition::default();
    ctx.metrics.write(&mut out);
    out.histogram(
        "iop_store_write_duration_seconds",
        "Time a durable database write took from being queued to being on disk.",
        ctx.store.write_latency(),
    );
    out.single(
        "iop_store_write_batches_total",
        "counter",
        "Durable write batches committed, one fsync each.",
        ctx.store.write_batches(),
    );
    gauges(&snapshot, &mut out);
    Ok(out.into_text())
}

/// The observation snapshot as gauges.
fn gauges(snapshot: &Snapshot, out: &mut Exposition) {
    out.family("iop_info", "gauge", "The server's version and network id.");
    let labels = [
        ("version", snapshot.version.as_str()),
        ("network_id", snapshot.network_id.as_str()),
    ];
    out.sample("iop_info", &labels, 1);
    let plain = [
        (
            "iop_uptime_seconds",
            "Seconds since the server started.",
            snapshot.uptime_secs,
        ),
        (
            "iop_hosted_identities",
            "Hosted identities, cancelled ones awaiting purge included.",
            snapshot.hosted,
        ),
        (
            "iop_online_identities",
            "Hosted identities checked in now.",
            snapshot.online,
        ),
        (
            "iop_cancelled_identities",
            "Cancelled hosting agreements awaiting purge.",
            snapshot.cancelled,
        ),
        (
            "iop_queued_actions",
            "Neighbourhood actions waiting for delivery to followers.",
            snapshot.queued_actions,
        ),
    ];
    for (name, help, value) in plain {
        out.single(name, "gauge", help, value);
    }
    let used = [
        (
            "iop_connections",
            "Open connections, against limits.max_connections.",
            snapshot.connections,
        ),
        (
            "iop_inflight_bytes",
            "Incoming frame bytes held, against limits.max_inflight_bytes.",
            snapshot.inflight_bytes,
        ),
        (
            "iop_relays",
            "Calls alive, against limits.max_relays.",
            snapshot.relays,
        ),
        (
            "iop_search_cache_bytes",
            "Cached search results, against limits.search_cache_bytes.",
            snapshot.search_cache_bytes,
        ),
    ];
    for (name, help, usage) in used {
        usage_gauges(out, name, help, usage);
    }
    peer_gauges(
        out,
        "iop_neighbours",
        "Servers whose profiles this server keeps, by state.",
        snapshot.neighbors,
    );
    peer_gauges(
        out,
        "iop_followers",
        "Servers that receive this server's profiles, by state.",
        snapshot.followers,
    );
    out.family(
        "iop_peers_not_answering",
        "gauge",
        "Neighbours and followers whose last attempt to reach them failed.",
    );
    for (side, peers) in [
        ("neighbours", snapshot.neighbors),
        ("followers", snapshot.followers),
    ] {
        out.sample(
            "iop_peers_not_answering",
            &[("side", side)],
            peers.not_answering,
        );
    }
    out.family(
        "iop_link_up",
        "gauge",
        "1 when the local daemon answers, 0 when not; absent when not configured.",
    );
    for (link, state) in [("loc", &snapshot.loc), ("can", &snapshot.can)] {
        if state != "off" {
            out.sample("iop_link_up", &[("link", link)], u8::from(state == "ok"));
        }
    }
}

fn usage_gauges(out: &mut Exposition, name: &str, help: &str, usage: Usage) {
    out.single(name, "gauge", help, usage.used);
    out.single(
        &format!("{name}_limit"),
        "gauge",
        "The configured limit.",
        usage.limit,
    );
}

fn peer_gauges(out: &mut Exposition, name: &str, help: &str, peers: Peers) {
    out.family(name, "gauge", help);
    out.sample(name, &[("state", "initialized")], peers.initialized);
    out.sample(name, &[("state", "initializing")], peers.initializing);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_metrics_is_served() {
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Target::Metrics)
        );
        assert_eq!(
            parse_head(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Some(Target::Metrics)
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Some(Target::Other));
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Target::NotGet)
        );
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n"),
            Some(Target::Malformed)
        );
    }
}
