//! One client connection's I/O: reads frames within the in-flight budget, hands them and the
//! commands of other tasks to its [`Engine`], writes what the engine produced, and enforces the
//! deadlines.
//!
//! A single task per connection selects over the socket, its command queue, its deadline and
//! the server shutdown. Reads are cancel-safe ([`FrameReader`]); writes happen outside the
//! select, each under the write timeout. Every protocol decision is the engine's.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

pub(crate) use super::engine::End;
use super::engine::{self, Engine, Output};
use super::frame_reader::{Frame, FrameReader, ReadError, Step};
use crate::clock::Now;
use crate::context::Ctx;
use crate::context::budget::Short;
use crate::hub::{AddressSlot, Command};
use crate::role::RoleSet;
use crate::wire::{UNKNOWN_MESSAGE_ID, decode_cost, frame};

/// After a protocol violation, how long unread input is drained so the error reply is not lost
/// to a TCP reset (PS00010 note).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most queued commands written together (see `Connection::commands`).
const COALESCE_COMMANDS: usize = 16;
/// Coalescing stops once this many bytes are gathered.
const COALESCE_BYTES: usize = 64 * 1024;
/// Most bytes drained during [`CLOSE_GRACE`].
const CLOSE_DRAIN_LIMIT: usize = 2 * frame::MAX_FRAME_LEN;

/// The connection's fixed parameters.
pub(crate) struct Setup {
    /// Its share of the peer's IP address; none for an address exempt from the limits.
    pub address_slot: Option<AddressSlot>,
    /// The IP address the peer connects from.
    pub remote: std::net::IpAddr,
    /// Roles served on the port.
    pub roles: RoleSet,
    /// Idle timeout of the port.
    pub idle: Duration,
    /// When the connection must end at the latest.
    pub session_end: Instant,
}

/// Serves one connection until it ends; returns why it ended.
///
/// The connection is built before the returned future, so the stream is stored in the task
/// once (an `async fn` would keep a slot for its argument beside the connection).
pub(crate) fn serve<S>(
    stream: S,
    ctx: Arc<Ctx>,
    setup: Setup,
    shutdown: CancellationToken,
) -> impl Future<Output = End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Setup {
        address_slot,
        remote,
        roles,
        idle,
        session_end,
    } = setup;
    let peer = engine::Peer {
        roles,
        remote,
        address_slot,
    };
    let mut connection = Connection {
        stream,
        engine: Engine::new(Arc::clone(&ctx), peer),
        write_timeout: ctx.config.timeouts.write,
        idle,
        share_held: None,
        ctx,
    };
    async move {
        let end = connection.run(session_end, &shutdown).await;
        connection.engine.leave(Now::read().instant);
        if end == End::FinalAnswer {
            connection.close_gracefully().await;
        } else {
            let _ = timeout(connection.write_timeout, connection.stream.shutdown()).await;
        }
        end
    }
}

/// The end a budget that could not be had means: the server stopping, or a wait longer than a
/// whole idle period (the wait is the server's doing, so it gets one of its own).
fn ended(short: Short) -> End {
    match short {
        Short::Closed => End::Shutdown,
        Short::TimedOut => End::Idle,
    }
}

/// The next command from another task; never, while nobody made the queue.
async fn next_command(commands: Option<&mut mpsc::Receiver<Command>>) -> Option<Command> {
    match commands {
        Some(commands) => commands.recv().await,
        None => std::future::pending().await,
    }
}

/// What woke the connection task.
enum Event {
    Shutdown,
    Command(Option<Command>),
    Deadline,
    Read(Result<Step, ReadError>),
}

struct Connection<S> {
    stream: S,
    engine: Engine,
    write_timeout: Duration,
    /// The port's idle timeout; also the longest wait for in-flight budget.
    idle: Duration,
    /// The address's share held for the frame being received; released once it is whole.
    share_held: Option<OwnedSemaphorePermit>,
    ctx: Arc<Ctx>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self, session_end: Instant, shutdown: &CancellationToken) -> End {
        let mut reader = FrameReader::default();
        let mut idle_deadline = Instant::now() + self.idle;
        loop {
            let deadline = idle_deadline.min(session_end);
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Shutdown,
                command = next_command(self.engine.commands()) => Event::Command(command),
                () = sleep_until(deadline) => Event::Deadline,
                step = reader.step(&mut self.stream) => Event::Read(step),
            };
            let step = match event {
                Event::Shutdown => return End::Shutdown,
                Event::Command(None) => return End::Replaced,
                Event::Command(Some(command)) => match self.commands(command).await {
                    Some(end) => return end,
                    None => continue,
                },
                Event::Deadline if deadline == session_end => return End::SessionLimit,
                Event::Deadline => return End::Idle,
                Event::Read(step) => step,
            };
            let frame = match step {
                Ok(Step::Progress) => continue,
                Ok(Step::Eof) => return End::PeerClosed,
                Ok(Step::Header(len)) => {
                    let Some(nothing) = self.ctx.budgets.inflight.nothing() else {
                        return End::Shutdown;
                    };
                    match reader.begin_body(len, nothing) {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Ok(Step::Arrived(bytes)) => {
                    let slot = self.engine.address_slot();
                    let reserved = self
                        .ctx
                        .budgets
                        .inflight
                        .reserve_arriving(slot, &mut self.share_held, bytes, self.idle)
                        .await;
                    match reserved.map(|permit| reader.charge(permit)) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => continue,
                        Err(short) => return ended(short),
                    }
                }
                Ok(Step::Frame(frame)) => frame,
                Err(error) => return self.read_failed(&error).await,
            };
            idle_deadline = Instant::now() + self.idle;
            self.share_held = None;
            if let Some(end) = self.frame(frame).await {
                return end;
            }
        }
    }

    async fn read_failed(&mut self, error: &ReadError) -> End {
        match error {
            ReadError::Frame(cause) => {
                tracing::debug!(%cause, "framing violation");
                let mut out = Output::default();
                out.violation(UNKNOWN_MESSAGE_ID);
                self.carry_out(out).await.unwrap_or(End::FinalAnswer)
            }
            // A TLS peer that closes without close_notify (most clients, and every probe
            // until it learnt to say goodbye) has closed the connection, nothing worse.
            ReadError::Io(cause) if cause.kind() == std::io::ErrorKind::UnexpectedEof => {
                End::PeerClosed
            }
            ReadError::Io(cause) => {
                tracing::debug!(%cause, "read failed");
                End::Io
            }
        }
    }

    /// Hands one complete frame to the engine, after charging what decoding it will allocate
    /// beyond its own bytes (the elements of its repeated fields) to the frame's permit; `Some`
    /// ends the connection.
    async fn frame(&mut self, frame: Frame) -> Option<End> {
        let Frame { body, mut permit } = frame;
        let received = body.len() + frame::HEADER_LEN;
        self.ctx.metrics.bytes_received.add(received as u64);
        let mut out = Output::default();
        let extra = decode_cost::repeated_cost(&body);
        if extra > 0 {
            if !self.ctx.budgets.inflight.could_hold(body.len(), extra) {
                tracing::debug!(extra, "message would decode beyond the in-flight budget");
                out.violation(UNKNOWN_MESSAGE_ID);
                return self.carry_out(out).await;
            }
            match self.ctx.budgets.inflight.reserve(extra, self.idle).await {
                Ok(more) => permit.merge(more),
                Err(short) => return Some(ended(short)),
            }
        }
        self.engine.frame(body, permit, Now::read(), &mut out).await;
        self.carry_out(out).await
    }

    /// Has the engine carry out `first` and whatever other commands are already queued behind
    /// it (up to [`COALESCE_COMMANDS`]), writing their frames with one write: under a relay's
    /// window that is one TLS record and one system call for several messages. `Some` ends the
    /// connection, after the frames queued before the command that ended it are written.
    async fn commands(&mut self, first: Command) -> Option<End> {
        let mut out = Output::default();
        let now = Now::read().instant;
        self.engine.command(first, now, &mut out);
        for _ in 1..COALESCE_COMMANDS {
            if out.end.is_some() || out.bytes.len() >= COALESCE_BYTES {
                break;
            }
            let Some(next) = self.engine.commands().and_then(|c| c.try_recv().ok()) else {
                break;
            };
            self.engine.command(next, now, &mut out);
        }
        self.carry_out(out).await
    }

    /// Writes what the engine produced; `Some` when the connection ends, by the engine's
    /// decision or because the write failed.
    async fn carry_out(&mut self, out: Output) -> Option<End> {
        let Output {
            bytes,
            budgets,
            end,
        } = out;
        if !bytes.is_empty()
            && let Err(failed) = self.write(&bytes).await
        {
            return Some(failed);
        }
        drop(budgets);
        end
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.ctx.metrics.bytes_sent.add(bytes.len() as u64);
                Ok(())
            }
            Ok(Err(cause)) => {
                tracing::debug!(%cause, "write failed");
                Err(End::Io)
            }
            Err(_) => {
                tracing::debug!("write timed out: peer does not read");
                Err(End::Io)
            }
        }
    }

    /// Ends the sending side, then discards input for a short while so the peer reads our last
    /// answer before the socket is reset.
    async fn close_gracefully(&mut self) {
        if timeout(self.write_timeout, self.stream.shutdown())
            .await
            .is_err()
        {
            return;
        }
        // On the heap: a buffer here would sit in every connection's task for its whole life.
        let mut scratch = vec![0u8; 4096];
        let mut drained = 0;
        let drain = async {
            while drained < CLOSE_DRAIN_LIMIT {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = timeout(CLOSE_GRACE, drain).await;
    }
}
