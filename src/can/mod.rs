//! The HTTP API of the local CAN node (IoP's IPFS fork, or a stock IPFS node): storing objects,
//! unpinning them and publishing IPNS records (`spec/protocol.md` §8, `spec/loc-can.md` §2).
//!
//! Every call is one `multipart/form-data` POST to `<api_url>/api/v0/<command>` with a
//! deadline and a bounded reply. Handlers use [`CanApi`] for their clients' objects; the
//! server's own contact record is kept by `peers::can`.

pub mod cbor;
pub mod http;
pub mod multibase;
pub mod record;
pub mod time;
pub mod verify;

use std::time::Duration;

use serde::Deserialize;

use self::http::{HttpError, Post};
use self::multibase::{base58, base64url_padded, from_base58};
use crate::crypto::random_bytes;

/// Longest reply body read from CAN: its JSON answers are a few hundred bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The error message with which CAN says an object was not pinned (success for an unpin).
const NOT_PINNED: &str = "not pinned";

/// Why a CAN call failed.
#[derive(Debug, thiserror::Error)]
pub enum CanError {
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
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The reply of `name/upload`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Uploaded {
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
struct ErrorReply {
    #[serde(rename = "Message")]
    message: String,
}

/// A client of one CAN node's HTTP API.
#[derive(Clone, Debug)]
pub struct CanApi {
    host_port: String,
    timeout: Duration,
}

impl CanApi {
    /// A client of the node at `api_url` (`http://HOST:PORT`, checked by the configuration),
    /// giving each call `timeout`.
    pub fn new(api_url: &str, timeout: Duration) -> CanApi {
        let host_port = api_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        CanApi { host_port, timeout }
    }

    /// Stores `object` and returns its multihash (`add`).
    pub async fn add(&self, object: &[u8]) -> Result<Vec<u8>, CanError> {
        let body = self.call("add", "", Some(object)).await?;
        let added: Added = parse(&body)?;
        from_base58(&added.hash)
            .filter(|hash| hash.len() == 34 && hash[..2] == [0x12, 0x20])
            .ok_or_else(|| CanError::BadReply(format!("hash {:?}", added.hash)))
    }

    /// Unpins the object with multihash `hash` (`pin/rm`); "not pinned" counts as done.
    pub async fn unpin(&self, hash: &[u8]) -> Result<(), CanError> {
        let query = format!("arg=/ipfs/{}", base58(hash));
        match self.call("pin/rm", &query, None).await {
            Ok(_) => Ok(()),
            Err(CanError::Refused { message, .. }) if message.to_lowercase() == NOT_PINNED => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Publishes a V1 record (`CanIpnsEntry`, encoded) of the Ed25519 `public_key` through the
    /// IoP fork's `name/upload`.
    pub async fn name_upload(
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
                Err(CanError::NoSuchCommand("name/upload"))
            }
            Err(error) => Err(error),
        }
    }

    /// Puts a serialized V2 record under `/ipns/<name>` on a stock IPFS node (`routing/put`).
    pub async fn routing_put(&self, name: &str, record: &[u8]) -> Result<(), CanError> {
        let query = format!("arg=/ipns/{name}&allow-offline=true");
        self.call("routing/put", &query, Some(record))
            .await
            .map(drop)
    }

    /// POSTs `command` with `query` and, when given, `file` as the multipart `file` part;
    /// returns the body of a 2xx reply.
    async fn call(
        &self,
        command: &str,
        query: &str,
        file: Option<&[u8]>,
    ) -> Result<Vec<u8>, CanError> {
        let boundary = format!(
            "------------------------{}",
            hex::encode(random_bytes::<16>())
        );
        let body = multipart(&boundary, file);
        let path = if query.is_empty() {
            format!("/api/v0/{command}")
        } else {
            format!("/api/v0/{command}?{query}")
        };
        let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
        let post = Post {
            host_port: &self.host_port,
            path: &path,
            content_type: &content_type,
            body: &body,
        };
        let reply = http::post(&post, MAX_REPLY_BYTES, self.timeout)
            .await
            .map_err(CanError::Unreachable)?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        let message = serde_json::from_slice::<ErrorReply>(&reply.body).map_or_else(
            |_| String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned(),
            |error| error.message,
        );
        Err(CanError::Refused {
            status: reply.status,
            message,
        })
    }
}

/// The multipart body: the `file` part when there is one, else just the closing boundary.
fn multipart(boundary: &str, file: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.map_or(0, <[u8]>::len) + 256);
    if let Some(file) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"object\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, CanError> {
    serde_json::from_slice(body).map_err(|error| CanError::BadReply(error.to_string()))
}
