//! A CAN stand-in (`spec/loc-can.md` §2.3): the IoP fork's HTTP API on an ephemeral loopback
//! port, or a stock IPFS node's (no `name/upload`, V2 records through `routing/put`), with an
//! inspection API and fault injection.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use iop_profile_server::can::{
    base58, from_base58, from_multibase, ipns_name, key_of_name, verify_record,
};
use iop_profile_server::crypto::{self, sha256};
use iop_profile_server::wire::Status;
use iop_profile_server::wire::can::{CanCryptoKey, CanIpnsEntry};
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv,
    conversation_response::ResponseType as ConvResp,
};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::waiting::wait_for_state;

/// Largest request body read (a client object is below 1 MiB).
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// IPFS's default chunk size.
const CHUNK: usize = 256 * 1024;
/// How long the waits of a test may take before it fails.
pub const CAN_WAIT: Duration = Duration::from_secs(120);

/// Which node it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanFlavour {
    /// IoP's fork (`rel-rc1`): `name/upload` with V1 records.
    Fork,
    /// Stock IPFS (Kubo): no `name/upload`; `routing/put` with V2 records.
    Stock,
    /// js-ipfs 0.66.1 as measured offline on loopback: 415 to a multipart content type on any
    /// command but `add` and `dht/put`; no `name/upload` nor `routing/put` (404); `dht/put`
    /// stores any record without checking it (200, empty body); `name/resolve` takes a `k…`
    /// name for a DNS name and fails, a `12D3KooW…` one resolves, and it refuses `nocache`
    /// offline; unpinning an object that is not pinned is HTTP 500 `Failed to remove pin:
    /// <cid> is not pinned`.
    JsIpfs,
}

/// What goes wrong with the next call of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanFault {
    /// HTTP 500 with this `Message`.
    Error(String),
    /// Accept the request and never answer.
    Hang,
    /// A success head, then an endless body.
    Oversized,
    /// Bytes that are not HTTP.
    Garbage,
}

/// One call as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanCall {
    /// The command after `/api/v0/`.
    pub command: String,
    /// The `arg` query parameter (empty when none).
    pub arg: String,
    /// When it arrived, on tokio's (possibly paused) clock.
    pub at: Instant,
}

/// What the node holds, for the test to inspect.
#[derive(Clone, Debug, Default)]
pub struct CanState {
    /// Object bytes by base58 hash.
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Pinned hashes (base58).
    pub pins: BTreeSet<String>,
    /// Fork: the record stored per peer id: (sequence, value).
    pub records: BTreeMap<String, (u64, String)>,
    /// Stock: the serialized V2 record per IPNS name.
    pub v2_records: BTreeMap<String, Vec<u8>>,
    /// Every call, in order.
    pub calls: Vec<CanCall>,
}

struct Inner {
    flavour: CanFlavour,
    state: CanState,
    faults: VecDeque<(String, CanFault)>,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running CAN stand-in.
pub struct CanStandIn {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl CanStandIn {
    /// Starts a node of `flavour` on an ephemeral loopback port.
    pub async fn start(flavour: CanFlavour) -> CanStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind CAN");
        let port = listener.local_addr().expect("CAN address").port();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                flavour,
                state: CanState::default(),
                faults: VecDeque::new(),
            }),
            changed: Notify::new(),
        });
        let accept = Some(tokio::spawn(accept(listener, Arc::clone(&shared))));
        CanStandIn {
            shared,
            port,
            accept,
        }
    }

    /// Its API URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[can]` table that points a server here.
    pub fn config(&self) -> String {
        format!("[can]\napi_url = \"{}\"\n", self.url())
    }

    /// Stops listening: calls are refused until [`CanStandIn::restart`].
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind CAN again");
        self.accept = Some(tokio::spawn(accept(listener, Arc::clone(&self.shared))));
    }

    /// Applies `fault` to the next call of `command` (e.g. "add", "name/upload").
    pub fn fail_next(&self, command: &str, fault: CanFault) {
        self.shared
            .lock()
            .faults
            .push_back((command.to_owned(), fault));
    }

    /// A copy of what it holds.
    pub fn state(&self) -> CanState {
        self.shared.lock().state.clone()
    }

    /// Calls of `command` so far.
    pub fn calls_of(&self, command: &str) -> usize {
        self.times_of(command).len()
    }

    /// When each call of `command` arrived.
    pub fn times_of(&self, command: &str) -> Vec<Instant> {
        let inner = self.shared.lock();
        let calls = inner.state.calls.iter().filter(|c| c.command == command);
        calls.map(|c| c.at).collect()
    }

    /// Waits until `done` holds for the node's state, failing the test after [`CAN_WAIT`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&CanState) -> bool) -> CanState {
        let what = format!("CAN {what}");
        wait_for_state(&self.shared.changed, CAN_WAIT, &what, || self.state(), done).await
    }

    /// Waits until the fork holds a record of `peer` with `sequence` at least; returns its
    /// value.
    pub async fn wait_for_record(&self, peer: &str, sequence: u64) -> String {
        let state = self
            .wait_for("record", |s| {
                s.records.get(peer).is_some_and(|r| r.0 >= sequence)
            })
            .await;
        state.records[peer].1.clone()
    }

    /// The harness's `name/resolve`, `cat` and `pin/rm` over HTTP, as a client of the real
    /// node would call them: status and body.
    pub async fn harness(&self, command: &str, arg: &str) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect CAN");
        let request = format!(
            "POST /api/v0/{command}?arg={arg} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.expect("reply");
        let head_end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
            + 4;
        let status = std::str::from_utf8(&reply[9..12])
            .expect("status")
            .parse()
            .expect("code");
        (status, reply[head_end..].to_vec())
    }
}

impl Drop for CanStandIn {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(serve(socket, Arc::clone(&shared)));
        while connections.try_join_next().is_some() {}
    }
}

/// A parsed request.
struct Request {
    command: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Vec<u8>,
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let arg = request.query.get("arg").cloned().unwrap_or_default();
    let fault = {
        let mut inner = shared.lock();
        inner.state.calls.push(CanCall {
            command: request.command.clone(),
            arg,
            at: Instant::now(),
        });
        let position = inner.faults.iter().position(|(c, _)| *c == request.command);
        position
            .and_then(|p| inner.faults.remove(p))
            .map(|(_, fault)| fault)
    };
    shared.changed.notify_waiters();
    match fault {
        Some(CanFault::Error(message)) => reply(&mut socket, 500, &error_json(&message)).await,
        Some(CanFault::Hang) => std::future::pending::<()>().await,
        Some(CanFault::Oversized) => {
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let block = vec![b' '; 64 * 1024];
            while socket.write_all(&block).await.is_ok() {}
        }
        Some(CanFault::Garbage) => {
            let _ = socket.write_all(b"\x00\x01garbage\r\n\r\n").await;
        }
        None => {
            let (status, body) = handle(&shared, &request);
            shared.changed.notify_waiters();
            reply(&mut socket, status, &body).await;
        }
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed.parse(&buf).ok()? {
            let target = parsed.path?.to_owned();
            let header = |name: &str| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: usize =
                header("content-length").map_or(Some(0), |v| v.trim().parse().ok())?;
            let content_type = header("content-type").unwrap_or_default();
            if length > MAX_REQUEST_BYTES {
                return None;
            }
            while buf.len() < head_len + length {
                let read = socket.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..read]);
            }
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let command = path.strip_prefix("/api/v0/")?.to_owned();
            let query = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                // Split on the first `=` only: base64 padding stays in the value.
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key.to_owned(), value.to_owned())
                })
                .collect();
            return Some(Request {
                command,
                query,
                content_type,
                body: buf[head_len..head_len + length].to_vec(),
            });
        }
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

async fn reply(socket: &mut TcpStream, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body).await;
    let _ = socket.shutdown().await;
}

fn error_json(message: &str) -> Vec<u8> {
    format!("{{\"Message\":{message:?},\"Code\":0,\"Type\":\"error\"}}").into_bytes()
}

/// The path argument's hash: `/ipfs/<hash>` or a bare hash.
fn hash_of(arg: &str) -> String {
    arg.strip_prefix("/ipfs/").unwrap_or(arg).to_owned()
}

fn handle(shared: &Shared, request: &Request) -> (u16, Vec<u8>) {
    let mut inner = shared.lock();
    let flavour = inner.flavour;
    let state = &mut inner.state;
    let arg = request.query.get("arg").cloned().unwrap_or_default();
    if flavour == CanFlavour::JsIpfs
        && let Some(answer) = js_ipfs(state, request, &arg)
    {
        return answer;
    }
    match (request.command.as_str(), flavour) {
        ("add", _) => {
            let Some(file) = file_part(&request.content_type, &request.body) else {
                return (400, error_json("file argument 'path' is required"));
            };
            let hash = base58(&cid_v0(&file));
            state.objects.insert(hash.clone(), file);
            state.pins.insert(hash.clone());
            (
                200,
                format!("{{\"Name\":\"object\",\"Hash\":\"{hash}\",\"Size\":\"0\"}}").into_bytes(),
            )
        }
        ("pin/rm", _) => {
            let hash = hash_of(&arg);
            if state.pins.remove(&hash) {
                (200, format!("{{\"Pins\":[\"{hash}\"]}}").into_bytes())
            } else {
                (500, error_json("not pinned"))
            }
        }
        ("cat", _) => match state.objects.get(&hash_of(&arg)) {
            Some(bytes) => (200, bytes.clone()),
            None => (500, error_json("merkledag: not found")),
        },
        ("name/resolve", _) => {
            let peer = arg.strip_prefix("/ipns/").unwrap_or(&arg);
            let now = iop_profile_server::clock::unix_ms();
            // The fork's record by peer id, or (Kubo) the value of a stored V2 record.
            let path = state
                .records
                .get(peer)
                .map(|(_, path)| path.clone())
                .or_else(|| {
                    // Kubo resolves a name in either form (`k…` or `12D3KooW…`).
                    let name = ipns_name(&key_of_name(peer)?);
                    let record = state.v2_records.get(&name)?;
                    let value = verify_record(&name, record, now).ok()?;
                    String::from_utf8(value).ok()
                });
            match path {
                Some(path) => (200, format!("{{\"Path\":\"{path}\"}}").into_bytes()),
                None => (500, error_json("could not resolve name")),
            }
        }
        ("name/upload", CanFlavour::Fork) => {
            let key = request.query.get("key").cloned().unwrap_or_default();
            match upload(state, &arg, &key) {
                Ok(body) => (200, body.into_bytes()),
                Err(message) => (500, error_json(&message)),
            }
        }
        ("routing/put", CanFlavour::Stock) => {
            let Some(name) = arg.strip_prefix("/ipns/") else {
                return (500, error_json("invalid key"));
            };
            let Some(record) = file_part(&request.content_type, &request.body) else {
                return (400, error_json("file argument 'value-file' is required"));
            };
            let now = iop_profile_server::clock::unix_ms();
            match verify_record(name, &record, now) {
                Ok(_) => {
                    state.v2_records.insert(name.to_owned(), record);
                    (200, b"{\"Extra\":\"\"}".to_vec())
                }
                Err(invalid) => (500, error_json(&invalid.to_string())),
            }
        }
        ("version", _) => (200, b"{\"Version\":\"stand-in\"}".to_vec()),
        _ => (404, b"{\"Message\":\"Not Found\",\"Code\":3}".to_vec()),
    }
}

/// What js-ipfs answers differently from the fork and Kubo; `None` where it answers alike.
fn js_ipfs(state: &mut CanState, request: &Request, arg: &str) -> Option<(u16, Vec<u8>)> {
    let command = request.command.as_str();
    if matches!(command, "name/upload" | "routing/put") {
        // An unknown route is refused before its body is looked at.
        return Some((404, error_json("Not Found")));
    }
    let uploads = matches!(command, "add" | "dht/put");
    if !uploads && request.content_type.starts_with("multipart/") {
        let refusal = b"{\"Message\":\"Unsupported Media Type\",\"Code\":1,\"Type\":\"error\"}";
        return Some((415, refusal.to_vec()));
    }
    match command {
        "pin/rm" => {
            let hash = hash_of(arg);
            let removed = state.pins.remove(&hash);
            Some(if removed {
                (200, format!("{{\"Pins\":[\"{hash}\"]}}").into_bytes())
            } else {
                let message = format!("Failed to remove pin: {hash} is not pinned");
                (500, error_json(&message))
            })
        }
        "dht/put" => {
            let name = arg.strip_prefix("/ipns/").unwrap_or(arg);
            let key = key_of_name(name)?;
            let record = file_part(&request.content_type, &request.body).unwrap_or_default();
            state.v2_records.insert(ipns_name(&key), record);
            Some((200, Vec::new()))
        }
        "name/resolve" => {
            let name = arg.strip_prefix("/ipns/").unwrap_or(arg);
            if request.query.contains_key("nocache") {
                return Some((500, error_json("cannot specify both offline and nocache")));
            }
            if name.starts_with('k') {
                let message = format!("queryTxt ENOTFOUND _dnslink.{name}");
                return Some((500, error_json(&message)));
            }
            let key = key_of_name(name)?;
            let name = ipns_name(&key);
            let now = iop_profile_server::clock::unix_ms();
            let value = state
                .v2_records
                .get(&name)
                .and_then(|record| verify_record(&name, record, now).ok())
                .and_then(|value| String::from_utf8(value).ok());
            Some(match value {
                Some(path) => (200, format!("{{\"Path\":\"{path}\"}}").into_bytes()),
                None => (
                    500,
                    error_json("record requested was not found in the routing"),
                ),
            })
        }
        _ => None,
    }
}

/// The fork's `name/upload` (`publisher.go Upload`).
fn upload(state: &mut CanState, arg: &str, key: &str) -> Result<String, String> {
    let record = from_multibase(arg).ok_or("invalid multibase record")?;
    let key_bytes = from_multibase(key).ok_or("invalid multibase key")?;
    let crypto_key = CanCryptoKey::decode(key_bytes.as_slice()).map_err(|e| e.to_string())?;
    if crypto_key.r#type != 1 || crypto_key.data.len() != 32 {
        return Err("only Ed25519 keys are supported".into());
    }
    let peer = can_id(&crypto_key.data);
    let entry = CanIpnsEntry::decode(record.as_slice()).map_err(|e| e.to_string())?;
    let signed = [entry.value.as_slice(), &entry.validity, b"EOL"].concat();
    if !crypto::verify(&crypto_key.data, &signed, &entry.signature) {
        return Err(format!("The IPNS record is not signed by {peer}"));
    }
    let value = String::from_utf8(entry.value.clone()).map_err(|e| e.to_string())?;
    let valid_path = value
        .strip_prefix("/ipfs/")
        .and_then(from_base58)
        .is_some_and(|hash| hash.len() == 34);
    if !valid_path {
        return Err(format!("invalid path {value:?}"));
    }
    let old = state.records.get(&peer).map_or(0, |r| r.0);
    if entry.sequence <= old {
        return Err(format!(
            "There is already a newer IPNS record with sequence number: {old}"
        ));
    }
    state
        .records
        .insert(peer.clone(), (entry.sequence, value.clone()));
    Ok(format!(
        "{{\"Peer\":\"{peer}\",\"OldSeq\":{old},\"NewSeq\":{},\"NewPath\":\"{value}\"}}",
        entry.sequence
    ))
}

/// The `file` part of a multipart body with a quoted or bare boundary.
fn file_part(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?;
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
        let content = &rest[head_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes())?;
        if head.contains("name=\"file\"") || head.contains("name=file") {
            return Some(content[..end].to_vec());
        }
        rest = &content[end..];
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The CIDv0 multihash `add` gives `bytes` with IPFS's defaults: UnixFS file nodes in dag-pb,
/// 256 KiB chunks, one level of links (enough below 174 chunks).
pub fn cid_v0(bytes: &[u8]) -> Vec<u8> {
    let multihash = |block: &[u8]| [&[0x12, 0x20][..], &sha256(block)].concat();
    if bytes.len() <= CHUNK {
        return multihash(&leaf(bytes));
    }
    let leaves: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(leaf).collect();
    let mut root = Vec::new();
    for block in &leaves {
        // PBLink { Hash = 1, Name = 2, Tsize = 3 }, as field 2 of the node.
        let mut link = Vec::new();
        field(&mut link, 1, &multihash(block));
        field(&mut link, 2, b"");
        varint_field(&mut link, 3, block.len() as u64);
        field(&mut root, 2, &link);
    }
    let mut unixfs = Vec::new();
    varint_field(&mut unixfs, 1, 2);
    varint_field(&mut unixfs, 3, bytes.len() as u64);
    for chunk in bytes.chunks(CHUNK) {
        varint_field(&mut unixfs, 4, chunk.len() as u64);
    }
    field(&mut root, 1, &unixfs);
    multihash(&root)
}

/// A dag-pb node holding one UnixFS file chunk.
fn leaf(chunk: &[u8]) -> Vec<u8> {
    let mut unixfs = Vec::new();
    varint_field(&mut unixfs, 1, 2);
    field(&mut unixfs, 2, chunk);
    varint_field(&mut unixfs, 3, chunk.len() as u64);
    let mut node = Vec::new();
    field(&mut node, 1, &unixfs);
    node
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value.to_le_bytes()[0] | 0x80);
        value >>= 7;
    }
    out.push(value.to_le_bytes()[0]);
}

fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, number: u64, value: u64) {
    varint(out, number << 3);
    varint(out, value);
}

/// The fork's id of an Ed25519 key (PS09 "CAN ID"): base58 of `12 20` ‖ SHA-256 of its
/// encoded `CanCryptoKey`.
pub fn can_id(public_key: &[u8]) -> String {
    let key = CanCryptoKey {
        r#type: 1,
        data: public_key.to_vec(),
    };
    base58(&[&[0x12, 0x20][..], &sha256(&key.encode_to_vec())].concat())
}

/// PS09 "STORE(n, data)": CanStoreData with `data`, or without it.
pub async fn store_data(
    client: &mut super::Client,
    id: u32,
    data: Option<iop_profile_server::wire::can::CanIdentityData>,
) -> iop_profile_server::wire::ps::Response {
    let body = Conv::CanStoreData(ps::CanStoreDataRequest { data });
    client.conversation(id, Vec::new(), body).await
}

/// The `hash` of an OK CanStoreData answer.
pub fn stored_hash(response: iop_profile_server::wire::ps::Response) -> Vec<u8> {
    super::assert_status(&response, Status::Ok);
    match super::conversation_body(response).1 {
        ConvResp::CanStoreData(answer) => answer.hash,
        other => panic!("expected CanStoreData, got {other:?}"),
    }
}

/// A `CanIpnsEntry` for `path` with `sequence`, valid until `validity`, with a 6 s TTL, signed
/// by `identity` over value ‖ validity ‖ "EOL" (PS09 "IPNS").
pub fn signed_record(
    identity: &super::Identity,
    path: &str,
    validity: &str,
    sequence: u64,
) -> CanIpnsEntry {
    let signed = [path.as_bytes(), validity.as_bytes(), b"EOL"].concat();
    CanIpnsEntry {
        value: path.as_bytes().to_vec(),
        signature: identity.sign(&signed),
        validity_type: 0,
        validity: validity.as_bytes().to_vec(),
        sequence,
        ttl: 6_000_000_000,
        ..CanIpnsEntry::default()
    }
}

/// A client's V1+V2 record (what a stock IPFS node takes): the V1 fields of
/// [`signed_record`] plus the V2 signature over the same values.
pub fn signed_record_v1_v2(
    identity: &super::Identity,
    path: &str,
    validity: &str,
    sequence: u64,
) -> CanIpnsEntry {
    let fields = iop_profile_server::can::RecordFields {
        value: path.as_bytes().to_vec(),
        validity: validity.as_bytes().to_vec(),
        sequence,
        ttl_ns: 6_000_000_000,
    };
    let record = fields.sign_v1_v2(&identity.as_server_key()).encode_to_vec();
    CanIpnsEntry::decode(record.as_slice()).expect("the same fields")
}

/// A validity one month ahead of the tester's clock, in the reference format.
pub fn month_ahead() -> String {
    let now = super::now_ms();
    iop_profile_server::can::format_validity(now + 31 * 86_400_000)
}

/// PS09 "IPNS(n, path, seq)": CanPublishIpnsRecord with `record`.
pub async fn publish_record(
    client: &mut super::Client,
    id: u32,
    record: Option<CanIpnsEntry>,
) -> iop_profile_server::wire::ps::Response {
    let body = Conv::CanPublishIpnsRecord(ps::CanPublishIpnsRecordRequest { record });
    client.conversation(id, Vec::new(), body).await
}

/// The path of a multihash: `/ipfs/<base58>`.
pub fn path_of(hash: &[u8]) -> String {
    format!("/ipfs/{}", base58(hash))
}

/// The harness resolving the fork's name of `public_key` (PS09 step "resolves K's CAN name").
pub async fn resolve(can: &CanStandIn, public_key: &[u8]) -> String {
    let (status, body) = can
        .harness("name/resolve", &format!("/ipns/{}", can_id(public_key)))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    reply["Path"].as_str().expect("Path").to_owned()
}

/// PS09 "no pin left": the harness's `pin/rm` of `path` says `not pinned`, or unpins nothing.
pub async fn assert_no_pin_left(can: &CanStandIn, path: &str) {
    let (status, body) = can.harness("pin/rm", path).await;
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let none_left = (status == 500 && reply["Message"] == "not pinned")
        || (status == 200 && reply["Pins"].as_array().is_some_and(Vec::is_empty));
    assert!(none_left, "{path} is still pinned: {status} {reply}");
}
