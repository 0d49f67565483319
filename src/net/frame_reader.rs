//! Reads frames from a byte stream one `read` call at a time, so that it can sit in a `select!`
//! next to other events without losing bytes.
//!
//! The header is read into a 5-byte array; the body buffer is allocated only after the header
//! passed [`frame::body_len`] and the caller obtained byte permits from the in-flight budget.
//! An idle connection therefore holds no read buffer at all.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::wire::frame::{self, FrameError, HEADER_LEN};

/// What one read step produced.
#[derive(Debug)]
pub enum Step {
    /// Some bytes arrived; the frame is not complete yet.
    Progress,
    /// A valid header arrived announcing this many body bytes: obtain permits, then call
    /// [`FrameReader::begin_body`].
    Header(usize),
    /// A whole frame body, with the permits that account for its memory.
    Frame(Frame),
    /// The peer closed its sending side.
    Eof,
}

/// A complete frame body held within the in-flight byte budget.
#[derive(Debug)]
pub struct Frame {
    /// The bytes after the 5-byte header.
    pub body: Vec<u8>,
    /// Returned to the budget when the frame is dropped.
    pub permit: OwnedSemaphorePermit,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The header broke the framing rules.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

struct PartialBody {
    bytes: Vec<u8>,
    filled: usize,
    permit: OwnedSemaphorePermit,
}

/// Incremental frame reader for one connection.
#[derive(Default)]
pub struct FrameReader {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    body: Option<PartialBody>,
}

impl FrameReader {
    /// Performs one read and reports what it completed. Cancel-safe: all state changes happen
    /// after the only await point, which consumes nothing when cancelled.
    pub async fn step<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<Step, ReadError> {
        if let Some(body) = &mut self.body {
            let n = reader.read(&mut body.bytes[body.filled..]).await?;
            if n == 0 {
                return Ok(Step::Eof);
            }
            body.filled += n;
            if body.filled < body.bytes.len() {
                return Ok(Step::Progress);
            }
            return Ok(self.finish_body());
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

    /// Starts the body of `len` bytes announced by the last header, held by `permit`.
    /// A zero-length body completes at once.
    pub fn begin_body(&mut self, len: usize, permit: OwnedSemaphorePermit) -> Option<Frame> {
        if len == 0 {
            self.header_filled = 0;
            return Some(Frame {
                body: Vec::new(),
                permit,
            });
        }
        self.body = Some(PartialBody {
            bytes: vec![0; len],
            filled: 0,
            permit,
        });
        None
    }

    fn finish_body(&mut self) -> Step {
        self.header_filled = 0;
        match self.body.take() {
            Some(body) => Step::Frame(Frame {
                body: body.bytes,
                permit: body.permit,
            }),
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

    async fn read_frame(
        reader: &mut FrameReader,
        input: &mut (impl AsyncRead + Unpin),
        budget: &Arc<Semaphore>,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            match reader.step(input).await? {
                Step::Progress => {}
                Step::Header(len) => {
                    let permits = u32::try_from(len).expect("small");
                    let permit = Arc::clone(budget)
                        .acquire_many_owned(permits)
                        .await
                        .expect("open");
                    if let Some(frame) = reader.begin_body(len, permit) {
                        return Ok(Some(frame.body));
                    }
                }
                Step::Frame(frame) => return Ok(Some(frame.body)),
                Step::Eof => return Ok(None),
            }
        }
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
        assert_eq!(
            read_frame(&mut reader, &mut server, &budget)
                .await
                .expect("ok"),
            Some(vec![0xAA, 0xBB])
        );
        assert_eq!(
            read_frame(&mut reader, &mut server, &budget)
                .await
                .expect("ok"),
            Some(vec![])
        );
        assert_eq!(
            read_frame(&mut reader, &mut server, &budget)
                .await
                .expect("ok"),
            None
        );
        assert_eq!(budget.available_permits(), 1 << 20);
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
