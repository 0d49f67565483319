//! Reads frames from a byte stream one `read` call at a time, so that it can sit in a `select!`
//! next to other events without losing bytes.
//!
//! The header is read into a 5-byte array; nothing is allocated before it passed
//! [`frame::body_len`]. Body bytes are charged to the in-flight budget as they arrive, at most
//! [`CHUNK`] at a time: a peer that announces a large frame and sends nothing more holds no
//! budget, so it cannot make other clients wait. Bodies up to [`FREE_LANE_LEN`] bytes (Ping,
//! check-in, searches and most other requests) are read without waiting for the budget at all;
//! one connection holds at most one such body, so together they stay below `max_connections`
//! times that length. An idle connection holds no read buffer.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::wire::frame::{self, FrameError, HEADER_LEN};

/// Bodies up to this length are read without charging the in-flight budget.
pub(crate) const FREE_LANE_LEN: usize = 4096;
/// Most body bytes read, and then charged, in one step.
pub(crate) const CHUNK: usize = 16 * 1024;

/// What one read step produced.
#[derive(Debug)]
pub(crate) enum Step {
    /// Some bytes arrived; the frame is not complete yet.
    Progress,
    /// A valid header arrived announcing this many body bytes: call [`FrameReader::begin_body`].
    Header(usize),
    /// This many body bytes arrived beyond what the budget granted so far: obtain that many
    /// permits and hand them to [`FrameReader::charge`] before the next step.
    Arrived(usize),
    /// A whole frame body, with the permits that account for its memory.
    Frame(Frame),
    /// The peer closed its sending side.
    Eof,
}

/// A complete frame body held within the in-flight byte budget.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The bytes after the 5-byte header.
    pub body: Vec<u8>,
    /// Returned to the budget when the frame is dropped; holds no permits for a body read in
    /// the free lane.
    pub permit: OwnedSemaphorePermit,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The header broke the framing rules.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

struct PartialBody {
    /// Received bytes come first; the rest is room the next read may fill.
    bytes: Vec<u8>,
    /// Bytes received so far.
    filled: usize,
    /// Bytes the budget or the free lane covers.
    paid: usize,
    /// The whole body's length.
    len: usize,
    permit: OwnedSemaphorePermit,
}

/// Incremental frame reader for one connection.
#[derive(Default)]
pub(crate) struct FrameReader {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    body: Option<PartialBody>,
}

impl FrameReader {
    /// Performs one read and reports what it completed. Cancel-safe: all state changes happen
    /// after the only await point, which consumes nothing when cancelled.
    pub(crate) async fn step<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Step, ReadError> {
        if let Some(body) = &mut self.body {
            if body.filled > body.paid {
                return Ok(Step::Arrived(body.filled - body.paid));
            }
            let room = if body.paid > body.filled {
                body.paid - body.filled
            } else {
                CHUNK.min(body.len - body.filled)
            };
            let end = body.filled + room;
            if body.bytes.len() < end {
                body.bytes.resize(end, 0);
            }
            let n = reader.read(&mut body.bytes[body.filled..end]).await?;
            if n == 0 {
                return Ok(Step::Eof);
            }
            body.filled += n;
            if body.filled > body.paid {
                return Ok(Step::Arrived(body.filled - body.paid));
            }
            return Ok(self.finish_if_complete());
        }
        let n = reader.read(&mut self.header[self.header_filled..]).await?;
        if n == 0 {
            return Ok(Step::Eof);
        }
        self.header_filled += n;
        if self.header_filled < HEADER_LEN {
            return Ok(Step::Progress);
        }
        Ok(Step::Header(frame::body_len(&self.header)?))
    }

    /// Starts the body of `len` bytes announced by the last header. `permit` (usually holding
    /// no permits) becomes the frame's; a body in the free lane is read without more.
    /// A zero-length body completes at once.
    pub(crate) fn begin_body(&mut self, len: usize, permit: OwnedSemaphorePermit) -> Option<Frame> {
        let paid = if len <= FREE_LANE_LEN {
            len
        } else {
            permit.num_permits()
        };
        self.body = Some(PartialBody {
            bytes: Vec::with_capacity(len),
            filled: 0,
            paid,
            len,
            permit,
        });
        match self.finish_if_complete() {
            Step::Frame(frame) => Some(frame),
            _ => None,
        }
    }

    /// Adds permits for bytes reported by [`Step::Arrived`]; returns the frame once complete.
    pub(crate) fn charge(&mut self, permit: OwnedSemaphorePermit) -> Option<Frame> {
        let body = self.body.as_mut()?;
        body.paid += permit.num_permits();
        body.permit.merge(permit);
        match self.finish_if_complete() {
            Step::Frame(frame) => Some(frame),
            _ => None,
        }
    }

    fn finish_if_complete(&mut self) -> Step {
        let complete = self
            .body
            .as_ref()
            .is_some_and(|body| body.filled == body.len && body.paid >= body.len);
        if !complete {
            return Step::Progress;
        }
        self.header_filled = 0;
        match self.body.take() {
            Some(mut body) => {
                body.bytes.truncate(body.len);
                Step::Frame(Frame {
                    body: body.bytes,
                    permit: body.permit,
                })
            }
            None => Step::Progress,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;
    use tokio::sync::Semaphore;

    use super::*;

    fn no_permits(budget: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        Arc::clone(budget)
            .try_acquire_many_owned(0)
            .expect("zero permits")
    }

    async fn read_frame(
        reader: &mut FrameReader,
        input: &mut (impl AsyncRead + Unpin),
        budget: &Arc<Semaphore>,
    ) -> Result<Option<Frame>, ReadError> {
        loop {
            match reader.step(input).await? {
                Step::Progress => {}
                Step::Header(len) => {
                    if let Some(frame) = reader.begin_body(len, no_permits(budget)) {
                        return Ok(Some(frame));
                    }
                }
                Step::Arrived(n) => {
                    let permits = u32::try_from(n).expect("small");
                    let permit = Arc::clone(budget)
                        .acquire_many_owned(permits)
                        .await
                        .expect("open");
                    if let Some(frame) = reader.charge(permit) {
                        return Ok(Some(frame));
                    }
                }
                Step::Frame(frame) => return Ok(Some(frame)),
                Step::Eof => return Ok(None),
            }
        }
    }

    async fn read_body(
        reader: &mut FrameReader,
        input: &mut (impl AsyncRead + Unpin),
        budget: &Arc<Semaphore>,
    ) -> Option<Vec<u8>> {
        read_frame(reader, input, budget)
            .await
            .expect("ok")
            .map(|frame| frame.body)
    }

    fn header(len: usize) -> [u8; HEADER_LEN] {
        let len = u32::try_from(len).expect("small").to_le_bytes();
        [0x0D, len[0], len[1], len[2], len[3]]
    }

    #[tokio::test]
    async fn frames_split_across_reads_are_reassembled() {
        let (mut client, mut server) = tokio::io::duplex(3);
        let budget = Arc::new(Semaphore::new(1 << 20));
        tokio::spawn(async move {
            let _ = client
                .write_all(&[0x0D, 2, 0, 0, 0, 0xAA, 0xBB, 0x0D, 0, 0, 0, 0])
                .await;
        });
        let mut reader = FrameReader::default();
        let read = read_body(&mut reader, &mut server, &budget).await;
        assert_eq!(read, Some(vec![0xAA, 0xBB]));
        let read = read_body(&mut reader, &mut server, &budget).await;
        assert_eq!(read, Some(vec![]));
        let read = read_body(&mut reader, &mut server, &budget).await;
        assert_eq!(read, None);
        assert_eq!(budget.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn a_large_body_is_charged_to_the_budget_as_it_arrives() {
        let len = 3 * CHUNK + 17;
        let body: Vec<u8> = (0..len)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(&header(len)).await.expect("write");
        client.write_all(&body).await.expect("write");
        let budget = Arc::new(Semaphore::new(1 << 20));
        let frame = read_frame(&mut FrameReader::default(), &mut server, &budget)
            .await
            .expect("ok")
            .expect("a frame");
        assert_eq!(frame.body, body);
        assert_eq!(frame.permit.num_permits(), len);
        assert_eq!(budget.available_permits(), (1 << 20) - len);
        drop(frame);
        assert_eq!(budget.available_permits(), 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_body_that_never_comes_holds_no_budget() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(&header(frame::MAX_BODY_LEN))
            .await
            .expect("write");
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut reader = FrameReader::default();
        let reading = read_frame(&mut reader, &mut server, &budget);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), reading).await;
        assert!(waited.is_err(), "no frame can be complete");
        assert_eq!(budget.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn a_small_body_is_read_without_the_budget() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(&header(FREE_LANE_LEN))
            .await
            .expect("write");
        client
            .write_all(&vec![7; FREE_LANE_LEN])
            .await
            .expect("write");
        let budget = Arc::new(Semaphore::new(0));
        let frame = read_frame(&mut FrameReader::default(), &mut server, &budget)
            .await
            .expect("ok")
            .expect("a frame");
        assert_eq!(frame.body, vec![7; FREE_LANE_LEN]);
        assert_eq!(frame.permit.num_permits(), 0);
    }

    #[tokio::test]
    async fn oversized_header_fails_before_any_body_is_read() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(&[0x0D, 0x1C, 0x00, 0x10, 0x00])
            .await
            .expect("write");
        let budget = Arc::new(Semaphore::new(1 << 20));
        let result = read_frame(&mut FrameReader::default(), &mut server, &budget).await;
        assert!(matches!(
            result,
            Err(ReadError::Frame(FrameError::TooLarge(1_048_604)))
        ));
    }
}
