//! The server against a real IPFS node as its CAN node: the js-ipfs daemon (npm `ipfs` 0.66.1,
//! installed by `npm ci` in tests/can-ipfs), run offline on loopback with a repository of its
//! own. Every answer here comes from the real daemon; only what the server sends is ours.
//!
//! The tests need Node.js and that install, so they are ignored by a plain `cargo test` (the
//! summary counts them as ignored, with the reason); CI installs the package and runs them with
//! `cargo test --locked --test it can_ipfs -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iop_profile_server::can::peer_id;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::can::{CanIdentityData, CanKeyValue, CanProfileServerContact};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

use crate::can::{object_for, server_key};
use crate::kit::*;

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/can-ipfs");
/// What the daemon prints once its API answers.
const READY: &str = "Daemon is ready";
/// Longest wait for the daemon to start, or for the server to reach a state through it.
const PATIENCE: Duration = Duration::from_secs(90);
const IGNORED: &str = "needs Node.js and `npm ci` in tests/can-ipfs; CI runs it with --ignored";

/// One js-ipfs daemon with its own repository, offline, its API on a loopback port.
struct JsIpfs {
    repo: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl JsIpfs {
    /// Creates the repository (no bootstrap, no discovery, no gateway, no swarm listeners: the
    /// node talks to nobody) and starts the daemon.
    async fn start() -> JsIpfs {
        let jsipfs = Path::new(PACKAGE).join("node_modules/.bin/jsipfs");
        assert!(
            jsipfs.exists(),
            "{} is missing: {IGNORED}",
            jsipfs.display()
        );
        let repo = tempfile::tempdir().expect("repository directory");
        let init = jsipfs_command(repo.path())
            .args(["init", "--profile", "test", "--emptyRepo"])
            .stdout(Stdio::null())
            .status()
            .expect("jsipfs init runs");
        assert!(init.success(), "jsipfs init failed");
        let port = free_port().await;
        configure(repo.path(), port);
        let mut node = JsIpfs {
            repo,
            port,
            child: None,
        };
        node.run().await;
        node
    }

    /// Starts the daemon on the existing repository and waits until it is ready.
    async fn run(&mut self) {
        let log = self.repo.path().join("daemon.log");
        let out = std::fs::File::create(&log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        let child = jsipfs_command(self.repo.path())
            .args(["daemon", "--offline"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("jsipfs daemon starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            if printed.contains(READY) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the daemon never got ready: {printed}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon as an operator would (`shutdown`, which releases the repository's
    /// lock; a kill after 20 s); its repository stays.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), self.api("shutdown", "")).await;
        let started = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(20) {
            sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POSTs `command` with `arg` and no body, as a harness independent of the server's client.
    async fn api(&self, command: &str, arg: &str) -> (u16, serde_json::Value, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to the daemon");
        let request = format!(
            "POST /api/v0/{command}?arg={arg}&timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.expect("reply");
        let head_end = find(&reply, b"\r\n\r\n").expect("an HTTP head") + 4;
        let head = String::from_utf8_lossy(&reply[..head_end]).to_ascii_lowercase();
        let status = head[9..12].parse().expect("a status code");
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&reply[head_end..])
        } else {
            reply[head_end..].to_vec()
        };
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, json, body)
    }

    /// What `/ipns/<name of key>` resolves to, once it does.
    async fn resolved(&self, key: &[u8], not: Option<&str>) -> String {
        let arg = format!("/ipns/{}", peer_id(key));
        let started = Instant::now();
        loop {
            let (status, reply, _) = self.api("name/resolve", &arg).await;
            let path = reply["Path"].as_str().unwrap_or_default().to_owned();
            if status == 200 && Some(path.as_str()) != not {
                return path;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "never resolved: {status} {reply}"
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// The contact object at `path`.
    async fn contact(&self, path: &str) -> CanProfileServerContact {
        let (status, _, bytes) = self.api("cat", path).await;
        assert_eq!(status, 200, "cat {path}");
        CanProfileServerContact::decode(bytes.as_slice()).expect("a contact object")
    }

    /// Whether the object at `path` is pinned.
    async fn pinned(&self, path: &str) -> bool {
        let (status, reply, _) = self.api("pin/ls", path).await;
        status == 200
            && reply["Keys"]
                .as_object()
                .is_some_and(|keys| !keys.is_empty())
    }

    /// Waits until the object at `path` is pinned (or not).
    async fn until_pinned(&self, path: &str, wanted: bool) {
        let started = Instant::now();
        while self.pinned(path).await != wanted {
            assert!(started.elapsed() < PATIENCE, "{path} pinned: {}", !wanted);
            sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for JsIpfs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn jsipfs_command(repo: &Path) -> Command {
    let mut command = Command::new(Path::new(PACKAGE).join("node_modules/.bin/jsipfs"));
    command.env("IPFS_PATH", repo).current_dir(PACKAGE);
    command
}

/// Points the repository's API at `port` on loopback and turns off everything that would talk
/// to other machines or bind other ports.
fn configure(repo: &Path, port: u16) {
    let file: PathBuf = repo.join("config");
    let text = std::fs::read_to_string(&file).expect("the repository's config");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("JSON config");
    let addresses = &mut config["Addresses"];
    addresses["API"] = format!("/ip4/127.0.0.1/tcp/{port}").into();
    addresses["Gateway"] = "".into();
    addresses["RPC"] = "".into();
    addresses["Swarm"] = serde_json::json!([]);
    addresses["Delegates"] = serde_json::json!([]);
    config["Bootstrap"] = serde_json::json!([]);
    config["Discovery"] = serde_json::json!({
        "MDNS": { "Enabled": false, "Interval": 10 },
        "webRTCStar": { "Enabled": false }
    });
    config["Pubsub"]["Enabled"] = false.into();
    let text = serde_json::to_string_pretty(&config).expect("JSON");
    std::fs::write(&file, text).expect("write the config");
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    listener.local_addr().expect("address").port()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = find(body, b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

async fn server_on(node: &JsIpfs) -> TestServer {
    let options = Options {
        extra: format!(
            "[can]\napi_url = \"{}\"\nhealth_check_secs = 1\n",
            node.url()
        ),
        ..Options::default()
    };
    TestServer::start(&options).await
}

/// Polls the status snapshot until `field` is `value`.
async fn until_snapshot(server: &TestServer, field: &str, value: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let snapshot = server.snapshot().await;
        if snapshot[field] == value {
            return snapshot;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{field} never {value}: {snapshot}"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs Node.js and `npm ci` in tests/can-ipfs; CI runs it with --ignored"]
async fn the_contact_record_resolves_through_js_ipfs_across_port_and_daemon_changes() {
    let mut node = JsIpfs::start().await;
    let mut server = server_on(&node).await;
    let key = server_key(&server).await;
    let first = node.resolved(&key, None).await;
    let contact = node.contact(&first).await;
    assert_eq!(contact.public_key, key);
    assert_eq!(contact.ip_address, vec![127, 0, 0, 1]);
    assert_eq!(contact.primary_port, u32::from(server.port(Role::Primary)));
    until_snapshot(&server, "can", "ok").await;

    // The test server binds ephemeral ports: a restart moves the primary port.
    server.restart().await;
    let second = node.resolved(&key, Some(&first)).await;
    let contact = node.contact(&second).await;
    assert_eq!(contact.primary_port, u32::from(server.port(Role::Primary)));
    node.until_pinned(&first, false).await;
    assert!(node.pinned(&second).await);

    // A daemon restart keeps its repository: the record still resolves.
    node.stop().await;
    node.run().await;
    assert_eq!(node.resolved(&key, None).await, second);

    // Down: the health check shows it with the failed call; clients are still served.
    node.stop().await;
    let snapshot = until_snapshot(&server, "can", "down").await;
    assert!(snapshot["can_last_error"].is_string(), "{snapshot}");
    let mut client = new_customer(&server).await;
    assert_status(&client.ping(3, b"served").await, Status::Ok);
    let published = snapshot["can_published_unix_ms"].as_i64();
    // Back up: ok again, and the record is published again.
    node.run().await;
    until_snapshot(&server, "can", "ok").await;
    let started = Instant::now();
    while server.snapshot().await["can_published_unix_ms"].as_i64() == published {
        assert!(
            started.elapsed() < PATIENCE,
            "the record was not published again"
        );
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(node.resolved(&key, None).await, second);
}

/// An object of the customer's, made distinct by `label`.
fn object(server: &TestServer, label: &str) -> CanIdentityData {
    let mut object = object_for(server);
    object.key_value_list.push(CanKeyValue {
        key: label.to_owned(),
        ..CanKeyValue::default()
    });
    object
}

#[tokio::test]
#[ignore = "needs Node.js and `npm ci` in tests/can-ipfs; CI runs it with --ignored"]
async fn client_objects_and_records_are_stored_replaced_and_deleted_in_js_ipfs() {
    let node = JsIpfs::start().await;
    let server = server_on(&node).await;
    let mut client = new_customer(&server).await;
    let sent = object(&server, "first");
    let first = path_of(&stored_hash(
        store_data(&mut client, 3, Some(sent.clone())).await,
    ));
    let (status, _, bytes) = node.api("cat", &first).await;
    assert_eq!(status, 200);
    assert_eq!(CanIdentityData::decode(bytes.as_slice()).ok(), Some(sent));
    assert!(node.pinned(&first).await);

    let replacing = Some(object(&server, "second"));
    let second = path_of(&stored_hash(store_data(&mut client, 4, replacing).await));
    assert!(node.pinned(&second).await);
    assert!(
        !node.pinned(&first).await,
        "the replaced object is unpinned"
    );

    assert_status(&store_data(&mut client, 7, None).await, Status::Ok);
    assert!(
        !node.pinned(&second).await,
        "the deleted object is unpinned"
    );
    let snapshot = server.snapshot().await;
    assert_eq!(snapshot["can"], "ok", "{snapshot}");
}
