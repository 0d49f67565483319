//! The HTTP API of the local CAN node (IoP's IPFS fork, or a stock IPFS node): storing objects,
//! unpinning them and publishing IPNS records (`spec/protocol.md` §8, `spec/loc-can.md` §2).
//!
//! Every call is one POST to `<api_url>/api/v0/<command>` with a deadline and a bounded reply:
//! a `multipart/form-data` body when the command takes a file, no body and no content type
//! otherwise (js-ipfs refuses a multipart content type on `pin/rm` with HTTP 415). Handlers use
//! [`CanApi`] for their clients' objects; the server's own contact record is kept by
//! `peers::can`.

pub(crate) mod cbor;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod multibase;
pub(crate) mod record;
pub(crate) mod time;
pub(crate) mod verify;

// What other crates (the tests that play IPFS nodes and check our records) use.
pub use multibase::{base58, from_base58, from_multibase};
pub use record::{RecordFields, ipns_name, peer_id};
pub use time::format_validity;
pub use verify::{key_of_name, verify as verify_record};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use serde::Deserialize;

use self::health::{Health, MAX_ERROR_CHARS};
use self::http::{HttpError, Post};
use self::multibase::base64url_padded;
use crate::clock;
use crate::crypto::random_bytes;
use crate::log_gate::peer_text;

/// Longest reply body read from CAN: its JSON answers are a few hundred bytes.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Whether an error message of `pin/rm` says the object was not pinned (success for an unpin).
/// The wordings (all HTTP 500) of the daemons a CAN node may be:
/// - the IoP CAN fork (go-ipfs 0.4.5-dev, `pin/pin.go`) and go-ipfs 0.4.0 to 0.4.20
///   (`pin/pin.go`, `ErrNotPinned`): `not pinned`;
/// - go-ipfs 0.3.11 (`pin/pin.go`): `<cid> is not pinned`;
/// - go-ipfs 0.4.21 and later, and Kubo (`pin/pin.go`, then go-ipfs-pinner, now boxo
///   `pinning/pinner/pin.go`): `not pinned or pinned indirectly`;
/// - js-ipfs 0.66.1 (`ipfs-core/src/components/pin/rm-all.js`, with the prefix of
///   `ipfs-http-server/src/api/resources/pin.js`): `Failed to remove pin: <cid> is not pinned`.
///
/// All of them contain "not pinned"; no other `pin/rm` error does.
pub(crate) fn says_not_pinned(message: &str) -> bool {
    message.to_lowercase().contains("not pinned")
}

/// Why a CAN call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CanError {
    /// CAN could not be reached or the exchange broke.
    #[error("CAN is unreachable: {0}")]
    Unreachable(HttpError),
    /// CAN answered with an error; `message` is its `Message`.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// CAN's `Message` (or the start of the body when it is not the JSON error).
        message: String,
    },
    /// The node does not know the command (HTTP 404): a stock IPFS node asked for the fork's
    /// `name/upload`.
    #[error("the CAN node has no {0} command")]
    NoSuchCommand(&'static str),
    /// A success reply that is not what the command returns.
    #[error("unexpected reply from CAN: {0}")]
    BadReply(String),
}

impl CanError {
    /// Text for `Response.details` and the log.
    pub(crate) fn message(&self) -> String {
        self.to_string()
    }
}

/// The reply of `name/upload`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Uploaded {
    /// The fork's peer id of the key (`Qm…`).
    #[serde(rename = "Peer")]
    pub peer: String,
    /// The sequence number stored now.
    #[serde(rename = "NewSeq")]
    pub new_seq: u64,
    /// The path the name points to now.
    #[serde(rename = "NewPath")]
    pub new_path: String,
}

#[derive(Deserialize)]
struct Added {
    #[serde(rename = "Hash")]
    hash: String,
}

#[derive(Deserialize)]
struct Resolved {
    #[serde(rename = "Path")]
    path: String,
}

#[derive(Deserialize)]
struct ErrorReply {
    #[serde(rename = "Message")]
    message: String,
}

/// The commands a stock node may store an IPNS record with, in the order they are tried:
/// Kubo's, then that of go-ipfs before the rename and of js-ipfs.
const PUT_COMMANDS: [&str; 2] = ["routing/put", "dht/put"];

/// A client of one CAN node's HTTP API; clones share the record of the link's [`Health`] and
/// what was learnt of the node.
#[derive(Clone, Debug)]
pub(crate) struct CanApi {
    host_port: String,
    timeout: Duration,
    health: Arc<Health>,
    learnt: Arc<Learnt>,
}

/// How the node takes IPNS records, learnt from its answers and forgotten after an error (the
/// node behind the address may have changed).
#[derive(Debug, Default)]
struct Learnt {
    /// It answered 404 to `name/upload`: a stock node.
    no_name_upload: AtomicBool,
    /// Which of [`PUT_COMMANDS`] stored a record last, plus one; 0 when unknown.
    put_command: AtomicU8,
    /// It refused `name/resolve` with `nocache` (js-ipfs offline).
    refuses_nocache: AtomicBool,
}

/// Whether a refusal of a call counts as a failure of the link ([`Health::failed`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// It does: what the node refused is shown to operators.
    No,
    /// It does not: the caller tries another way first.
    Refusals,
}

impl CanApi {
    /// A client of the node at `api_url` (`http://HOST:PORT`, checked by the configuration),
    /// giving each call `timeout`.
    pub(crate) fn new(api_url: &str, timeout: Duration) -> CanApi {
        let host_port = api_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        CanApi {
            host_port,
            timeout,
            health: Arc::default(),
            learnt: Arc::default(),
        }
    }

    /// What the calls so far say about the link (shared by every clone).
    pub(crate) fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Stores `object` and returns its multihash (`add`).
    pub(crate) async fn add(&self, object: &[u8]) -> Result<Vec<u8>, CanError> {
        let body = self.call("add", "", Some(object)).await?;
        let added: Added = parse(&body)?;
        from_base58(&added.hash)
            .filter(|hash| hash.len() == 34 && hash[..2] == [0x12, 0x20])
            .ok_or_else(|| CanError::BadReply(format!("hash {:?}", added.hash)))
    }

    /// Unpins the object with multihash `hash` (`pin/rm`); "not pinned" counts as done.
    pub(crate) async fn unpin(&self, hash: &[u8]) -> Result<(), CanError> {
        let query = format!("arg=/ipfs/{}", base58(hash));
        match self.call("pin/rm", &query, None).await {
            Ok(_) => Ok(()),
            Err(CanError::Refused { message, .. }) if says_not_pinned(&message) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Publishes a V1 record (`CanIpnsEntry`, encoded) of the Ed25519 `public_key` through the
    /// IoP fork's `name/upload`.
    pub(crate) async fn name_upload(
        &self,
        record: &[u8],
        public_key: &[u8],
    ) -> Result<Uploaded, CanError> {
        let query = format!(
            "arg=U{}&key=z{}",
            base64url_padded(record),
            base58(&record::crypto_key(public_key))
        );
        match self.call("name/upload", &query, None).await {
            Ok(body) => parse(&body),
            Err(CanError::Refused { status: 404, .. }) => {
                self.learnt.no_name_upload.store(true, Ordering::Relaxed);
                Err(CanError::NoSuchCommand("name/upload"))
            }
            Err(error) => {
                self.forget();
                Err(error)
            }
        }
    }

    /// Whether the node answered 404 to `name/upload` (since the last error): a stock node.
    pub(crate) fn lacks_name_upload(&self) -> bool {
        self.learnt.no_name_upload.load(Ordering::Relaxed)
    }

    /// Stores a V1+V2 `record` of `public_key` on a stock node with the first of
    /// [`PUT_COMMANDS`] it has (the one that worked last first), and checks that the name then
    /// resolves to `value`: js-ipfs answers 200 to a put of a record it will not serve.
    pub(crate) async fn publish_v2(
        &self,
        public_key: &[u8],
        record: &[u8],
        value: &[u8],
    ) -> Result<(), CanError> {
        let name = record::ipns_name(public_key);
        let known = usize::from(self.learnt.put_command.load(Ordering::Relaxed));
        for (at, command) in PUT_COMMANDS
            .iter()
            .enumerate()
            .skip(known.saturating_sub(1))
        {
            match self.put_record(command, &name, record).await {
                Ok(()) => {}
                Err(CanError::NoSuchCommand(_)) => continue,
                Err(error) => {
                    self.forget();
                    return Err(error);
                }
            }
            let resolved = self.resolve(&record::peer_id(public_key)).await;
            return match resolved {
                Ok(path) if path.as_bytes() == value => {
                    let remembered = u8::try_from(at + 1).unwrap_or(0);
                    self.learnt.put_command.store(remembered, Ordering::Relaxed);
                    Ok(())
                }
                Ok(path) => {
                    self.forget();
                    Err(CanError::BadReply(format!(
                        "{command} took the record, but /ipns/{name} resolves to {}",
                        peer_text(&path, MAX_ERROR_CHARS)
                    )))
                }
                Err(error) => {
                    self.forget();
                    Err(error)
                }
            };
        }
        self.forget();
        Err(CanError::NoSuchCommand("routing/put and dht/put"))
    }

    /// Forgets what was learnt of the node: the next publication probes it afresh.
    fn forget(&self) {
        self.learnt.no_name_upload.store(false, Ordering::Relaxed);
        self.learnt.put_command.store(0, Ordering::Relaxed);
    }

    /// Puts a serialized V2 record under `/ipns/<name>` on a stock IPFS node with `command`:
    /// `routing/put` (Kubo) or `dht/put` (go-ipfs before the rename, js-ipfs).
    async fn put_record(
        &self,
        command: &'static str,
        name: &str,
        record: &[u8],
    ) -> Result<(), CanError> {
        let query = format!("arg=/ipns/{name}&allow-offline=true");
        match self.call(command, &query, Some(record)).await {
            Ok(_) => Ok(()),
            Err(CanError::Refused { status: 404, .. }) => Err(CanError::NoSuchCommand(command)),
            Err(error) => Err(error),
        }
    }

    /// What `/ipns/<name>` resolves to on the node (`name/resolve`), e.g. `/ipfs/Qm…`: past
    /// the node's cache where it allows that (js-ipfs offline refuses `nocache`).
    pub(crate) async fn resolve(&self, name: &str) -> Result<String, CanError> {
        let cached = format!("arg=/ipns/{name}");
        let body = if self.learnt.refuses_nocache.load(Ordering::Relaxed) {
            self.call("name/resolve", &cached, None).await?
        } else {
            let uncached = format!("{cached}&nocache=true");
            match self
                .request("name/resolve", &uncached, None, Quiet::Refusals)
                .await
            {
                Err(CanError::Refused { message, .. }) if message.contains("nocache") => {
                    self.learnt.refuses_nocache.store(true, Ordering::Relaxed);
                    self.call("name/resolve", &cached, None).await?
                }
                other => other?,
            }
        };
        let resolved: Resolved = parse(&body)?;
        Ok(resolved.path)
    }

    /// Whether the node answers at all (`version`): a cheap call for the link's health.
    pub(crate) async fn version(&self) -> Result<(), CanError> {
        self.call("version", "", None).await.map(drop)
    }

    /// POSTs `command` with `query` and, when given, `file` as the multipart `file` part;
    /// returns the body of a 2xx reply.
    async fn call(
        &self,
        command: &'static str,
        query: &str,
        file: Option<&[u8]>,
    ) -> Result<Vec<u8>, CanError> {
        self.request(command, query, file, Quiet::No).await
    }

    /// [`CanApi::call`], recording a refusal as a failure unless `quiet` says otherwise.
    async fn request(
        &self,
        command: &'static str,
        query: &str,
        file: Option<&[u8]>,
        quiet: Quiet,
    ) -> Result<Vec<u8>, CanError> {
        let path = if query.is_empty() {
            format!("/api/v0/{command}")
        } else {
            format!("/api/v0/{command}?{query}")
        };
        let (content_type, body) = match file {
            Some(file) => {
                let boundary = format!(
                    "------------------------{}",
                    hex::encode(random_bytes::<16>())
                );
                let kind = format!("multipart/form-data; boundary=\"{boundary}\"");
                (Some(kind), multipart(&boundary, file))
            }
            None => (None, Vec::new()),
        };
        let post = Post {
            host_port: &self.host_port,
            path: &path,
            content_type: content_type.as_deref(),
            body: &body,
        };
        let reply = http::post(&post, MAX_REPLY_BYTES, self.timeout).await;
        let now_ms = clock::unix_ms();
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                self.health.reached(false, now_ms);
                self.health.failed(command, &error.to_string(), now_ms);
                return Err(CanError::Unreachable(error));
            }
        };
        if self.health.reached(true, now_ms) {
            tracing::info!("CAN: the node answers again");
        }
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        let message = serde_json::from_slice::<ErrorReply>(&reply.body).map_or_else(
            |_| String::from_utf8_lossy(&reply.body).into_owned(),
            |error| error.message,
        );
        // The node's text goes to logs, to `status` and to clients: bounded and printable.
        let message = peer_text(&message, MAX_ERROR_CHARS);
        // "Not pinned" is what an unpin hopes for, and a missing command a probe's answer.
        if quiet == Quiet::No && !(says_not_pinned(&message) || reply.status == 404) {
            self.health.failed(command, &message, now_ms);
        }
        Err(CanError::Refused {
            status: reply.status,
            message,
        })
    }
}

/// The multipart body holding `file` as its `file` part.
fn multipart(boundary: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"object\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    body
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, CanError> {
    serde_json::from_slice(body).map_err(|error| CanError::BadReply(error.to_string()))
}
