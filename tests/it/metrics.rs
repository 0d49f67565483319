//! `[metrics]`: the Prometheus endpoint of a running server, read over HTTP and parsed as
//! exposition text; every metric family it serves is the documented set of `docs/metrics.md`.

use std::collections::{BTreeMap, BTreeSet};

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, single_request::RequestType as Single};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::kit::*;

/// One sample: its metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    /// The value as written.
    text: String,
}

/// Exposition text parsed and checked line by line: every sample belongs to a family declared
/// by a `# TYPE` line before it, names and label names are valid, values are numbers.
#[derive(Debug, Default)]
struct Parsed {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label = \"value\"");
        assert!(valid_name(name), "label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escaped character").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.expect("a metric name");
            assert!(valid_name(name), "{line}");
            if keyword == Some("TYPE") {
                let kind = rest.expect("a type");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    parsed.types.insert(name.into(), kind.into()).is_none(),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "{line}");
        assert!(
            family_of(name, &parsed.types).is_some(),
            "undeclared: {line}"
        );
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "not a number: {line}"
        );
        parsed.samples.push(Sample {
            name: name.into(),
            labels,
            text: value.into(),
        });
    }
    parsed
}

impl Parsed {
    /// The value of a sample that counts something (a whole number).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
            .text
            .parse()
            .unwrap_or_else(|_| panic!("{name} {labels:?} is not a whole number"))
    }

    /// Checks that each histogram's buckets grow and end in its count.
    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            let buckets: Vec<u64> = self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
                .map(|s| s.text.parse().expect("a bucket counts"))
                .collect();
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{family}");
            let inf = self.value(&format!("{family}_bucket"), &[("le", "+Inf")]);
            assert_eq!(inf, self.value(&format!("{family}_count"), &[]), "{family}");
        }
    }
}

/// GETs `path` from the metrics port; returns the status line, the headers and the body.
pub(crate) async fn get(port: u16, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.into(), headers.into(), body.into())
}

/// The metric families `docs/metrics.md` documents (the first column of its tables).
fn documented_families() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_connections_and_searches_in_documented_names() {
    let port = free_port();
    let options = Options {
        extra: format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"),
        ..Options::default()
    };
    let server = TestServer::start(&options).await;

    let mut primary = Client::plain(server.port(Role::Primary)).await;
    for id in 1..=3 {
        assert_status(&primary.ping(id, b"x").await, Status::Ok);
    }
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::Ok);
    let search = ps::ProfileSearchRequest {
        max_response_record_count: 10,
        max_total_record_count: 100,
        latitude: 0x7FFF_FFFF,
        longitude: 0x7FFF_FFFF,
        ..Default::default()
    };
    assert_status(
        &client.single(3, Single::ProfileSearch(search)).await,
        Status::Ok,
    );
    // A request on the wrong role is counted with its refusal.
    let list = Single::ListRoles(ps::ListRolesRequest {});
    assert_status(&client.single(4, list).await, Status::ErrorBadRole);

    let (status, headers, body) = get(port, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let parsed = parse(&body);
    parsed.check_histograms();

    let ok = |kind| [("type", kind), ("status", "STATUS_OK")];
    assert_eq!(parsed.value("iop_requests_total", &ok("Ping")), 3);
    assert_eq!(
        parsed.value("iop_requests_total", &ok("RegisterHosting")),
        1
    );
    let bad_role = [("type", "ListRoles"), ("status", "ERROR_BAD_ROLE")];
    assert_eq!(parsed.value("iop_requests_total", &bad_role), 1);
    assert_eq!(parsed.value("iop_connections_accepted_total", &[]), 2);
    assert_eq!(parsed.value("iop_connections", &[]), 2);
    assert_eq!(parsed.value("iop_connections_limit", &[]), 1000);
    assert_eq!(parsed.value("iop_hosted_identities", &[]), 1);
    assert_eq!(parsed.value("iop_search_duration_seconds_count", &[]), 1);
    assert!(parsed.value("iop_store_write_duration_seconds_count", &[]) >= 1);
    assert!(parsed.value("iop_received_bytes_total", &[]) > 0);
    assert!(parsed.value("iop_sent_bytes_total", &[]) > 0);
    let info = parsed
        .samples
        .iter()
        .find(|s| s.name == "iop_info")
        .expect("iop_info");
    assert_eq!(info.labels["network_id"], hex::encode(server.network_id()));

    let served: BTreeSet<String> = parsed.types.keys().cloned().collect();
    let documented = documented_families();
    // LOC and CAN are not configured here, so their link gauges are the only ones left empty.
    assert_eq!(served, documented, "served vs docs/metrics.md");

    drop(client);
    drop(primary);
    let (status, _, _) = get(port, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

// Paused time: the idle rule fires when the runtime has nothing else to do, without a wait.
#[tokio::test(start_paused = true)]
async fn a_connection_closed_for_idling_is_counted_as_a_timeout() {
    let port = free_port();
    let options = Options {
        extra: format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"),
        ..Options::short_idle(Layout::Shared)
    };
    let server = TestServer::start(&options).await;
    let mut idle = Client::plain(server.port(Role::Primary)).await;
    assert!(
        idle.is_closed_within(std::time::Duration::from_secs(60))
            .await
    );
    let parsed = parse(&get(port, "/metrics").await.2);
    let idle_closed = [("reason", "timeout_idle")];
    assert_eq!(
        parsed.value("iop_connections_closed_total", &idle_closed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn issue25_idle_and_dripping_connections_do_not_starve_scrapes() {
    let port = free_port();
    let options = Options {
        extra: format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"),
        ..Options::default()
    };
    let _server = TestServer::start(&options).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    // Six clients that send a byte every half second, and connect again when cut off.
    let mut drips = Vec::new();
    for _ in 0..6 {
        drips.push(tokio::spawn(async move {
            loop {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                while stream.write_all(b"G").await.is_ok() {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for _ in 0..10 {
        let (status, _, body) = get(port, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("iop_connections_accepted_total"), "{body}");
    }
    drips.iter().for_each(tokio::task::JoinHandle::abort);
}
