//! One HTTP/1.1 POST to the CAN node and its reply, with every read bounded.
//!
//! CAN listens on loopback and each API call is one request, so a connection per call with
//! `Connection: close` is all that is needed. The reply is read through a fixed byte budget:
//! a node that streams forever or answers garbage costs at most that much memory and ends in
//! an error, never a hang (the caller puts a deadline on the whole exchange).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest reply head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in a reply.
const MAX_HEADERS: usize = 32;
/// Raw bytes allowed beyond the body limit for the head and chunk framing.
const FRAMING_ALLOWANCE: usize = MAX_HEAD_BYTES + 16 * 1024;

/// A complete reply.
#[derive(Debug)]
pub(crate) struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No connection (refused, unreachable, name not resolved).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The connection failed midway.
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    /// No complete reply within the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The reply is not HTTP/1.x as expected.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The reply body exceeds the limit.
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
}

/// What to send: `POST path` to `host_port` with `body` of `content_type`.
#[derive(Debug)]
pub(crate) struct Post<'a> {
    /// `HOST:PORT` of the node.
    pub host_port: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// The `Content-Type` header; none for a call without a body (a daemon may refuse a
    /// content type it does not expect: js-ipfs answers 415 to a multipart one).
    pub content_type: Option<&'a str>,
    /// The request body.
    pub body: &'a [u8],
}

/// Sends `post` and reads the reply, whose body may be at most `body_limit` bytes, all within
/// `deadline`.
pub(crate) async fn post(
    post: &Post<'_>,
    body_limit: usize,
    deadline: Duration,
) -> Result<Reply, HttpError> {
    tokio::time::timeout(deadline, exchange(post, body_limit))
        .await
        .unwrap_or(Err(HttpError::Timeout(deadline)))
}

async fn exchange(post: &Post<'_>, body_limit: usize) -> Result<Reply, HttpError> {
    let mut stream = TcpStream::connect(post.host_port)
        .await
        .map_err(HttpError::Connect)?;
    let content_type = post
        .content_type
        .map(|kind| format!("Content-Type: {kind}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: iop-profile-server/{}\r\n\
         {content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        post.path,
        post.host_port,
        env!("CARGO_PKG_VERSION"),
        post.body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(HttpError::Io)?;
    stream.write_all(post.body).await.map_err(HttpError::Io)?;
    stream.flush().await.map_err(HttpError::Io)?;
    let mut incoming = Incoming {
        stream,
        buf: Vec::with_capacity(4096),
        raw_limit: body_limit.saturating_add(FRAMING_ALLOWANCE),
        body_limit,
    };
    incoming.read_reply().await
}

/// The bytes received so far on one connection.
struct Incoming {
    stream: TcpStream,
    buf: Vec<u8>,
    raw_limit: usize,
    body_limit: usize,
}

/// How the body of a reply is delimited.
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

impl Incoming {
    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        if self.buf.len() >= self.raw_limit {
            return Err(HttpError::TooLarge(self.body_limit));
        }
        let room = (self.raw_limit - self.buf.len()).min(16 * 1024);
        let start = self.buf.len();
        self.buf.resize(start + room, 0);
        let read = self.stream.read(&mut self.buf[start..]).await;
        self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
        Ok(read.map_err(HttpError::Io)? > 0)
    }

    /// Reads until `self.buf` holds at least `len` bytes.
    async fn fill_to(&mut self, len: usize) -> Result<(), HttpError> {
        while self.buf.len() < len {
            if !self.fill().await? {
                return Err(HttpError::Malformed("reply ends early"));
            }
        }
        Ok(())
    }

    async fn read_reply(&mut self) -> Result<Reply, HttpError> {
        let (status, framing, head_len) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(HttpError::Malformed("reply head too long"));
            }
            if !self.fill().await? {
                return Err(HttpError::Malformed("reply ends in its head"));
            }
        };
        let body = match framing {
            Framing::Length(len) if len > self.body_limit => {
                return Err(HttpError::TooLarge(self.body_limit));
            }
            Framing::Length(len) => {
                self.fill_to(head_len + len).await?;
                self.buf[head_len..head_len + len].to_vec()
            }
            Framing::UntilClose => {
                while self.fill().await? {}
                if self.buf.len() - head_len > self.body_limit {
                    return Err(HttpError::TooLarge(self.body_limit));
                }
                self.buf[head_len..].to_vec()
            }
            Framing::Chunked => self.read_chunks(head_len).await?,
        };
        Ok(Reply { status, body })
    }

    /// Decodes a chunked body that starts at `pos`; trailers are skipped.
    async fn read_chunks(&mut self, mut pos: usize) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find_crlf(&self.buf[pos..]) {
                    break pos + end;
                }
                if !self.fill().await? {
                    return Err(HttpError::Malformed("reply ends in a chunk size"));
                }
            };
            let size = chunk_size(&self.buf[pos..line_end])?;
            pos = line_end + 2;
            if size == 0 {
                return Ok(body);
            }
            if body.len().saturating_add(size) > self.body_limit {
                return Err(HttpError::TooLarge(self.body_limit));
            }
            self.fill_to(pos + size + 2).await?;
            body.extend_from_slice(&self.buf[pos..pos + size]);
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(HttpError::Malformed("chunk without its line end"));
            }
            pos += size + 2;
        }
    }
}

/// The status, body framing and head length once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError::Malformed("not an HTTP/1.x reply head")),
    };
    let status = response.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            } else {
                return Err(HttpError::Malformed("unknown transfer encoding"));
            }
        } else if header.name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked)
        {
            let len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or(HttpError::Malformed("bad content length"))?;
            framing = Framing::Length(len);
        }
    }
    Ok(Some((status, framing, head_len)))
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

/// The size on a chunk-size line, ignoring chunk extensions.
fn chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    std::str::from_utf8(digits)
        .ok()
        .map(str::trim)
        .filter(|text| !text.is_empty() && text.len() <= 8)
        .and_then(|text| usize::from_str_radix(text, 16).ok())
        .ok_or(HttpError::Malformed("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves one connection with `reply`, after reading the request head.
    async fn serve_once(reply: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(&reply).await;
        });
        address
    }

    async fn send(reply: &[u8], limit: usize) -> Result<Reply, HttpError> {
        let address = serve_once(reply.to_vec()).await;
        let request = Post {
            host_port: &address,
            path: "/api/v0/add",
            content_type: Some("text/plain"),
            body: b"x",
        };
        post(&request, limit, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn reads_length_chunked_and_until_close_bodies() {
        let reply = send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 100).await;
        assert_eq!(reply.expect("length").body, b"hello");
        let chunked =
            b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Stream-Error: none\r\n\r\n";
        let reply = send(chunked, 100).await.expect("chunked");
        assert_eq!((reply.status, reply.body.as_slice()), (500, &b"abcde"[..]));
        let reply = send(b"HTTP/1.0 200 OK\r\n\r\nuntil close", 100).await;
        assert_eq!(reply.expect("close").body, b"until close");
    }

    #[tokio::test]
    async fn oversized_and_garbage_replies_are_errors() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert!(matches!(
            send(big, 100).await,
            Err(HttpError::TooLarge(100))
        ));
        let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 200_000));
        assert!(matches!(
            send(&endless, 100).await,
            Err(HttpError::TooLarge(100))
        ));
        let chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n";
        assert!(matches!(
            send(chunks, 100).await,
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            send(b"SSH-2.0-OpenSSH\r\n\r\n", 100).await,
            Err(HttpError::Malformed(_))
        ));
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            send(short, 100).await,
            Err(HttpError::Malformed(_))
        ));
    }

    fn empty_post(address: &str) -> Post<'_> {
        Post {
            host_port: address,
            path: "/",
            content_type: None,
            body: b"",
        }
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let result = post(&empty_post(&address), 100, Duration::from_secs(5)).await;
        assert!(matches!(result, Err(HttpError::Connect(_))), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(socket);
        });
        let result = post(&empty_post(&address), 100, Duration::from_secs(20)).await;
        assert!(matches!(result, Err(HttpError::Timeout(_))), "{result:?}");
        held.abort();
    }
}
