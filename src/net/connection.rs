//! One client connection: read frames, dispatch requests, write answers, enforce deadlines.
//!
//! A single task per connection selects over the socket, its [`Outbox`] queue, its deadline and
//! the server shutdown. Reads are cancel-safe ([`FrameReader`]); writes happen outside the
//! select, each under the write timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::frame_reader::{Frame, FrameReader, ReadError, Step};
use crate::clock::Now;
use crate::context::Ctx;
use crate::handlers::{self, Outcome, Received};
use crate::hub::{AddressSlot, Command, ServerRequest, carry_out};
use crate::role::{Role, RoleSet};
use crate::session::pending::{Matched, Pending};
use crate::session::{Conversation, Session};
use crate::wire::{Status, UNKNOWN_MESSAGE_ID, decode_cost, frame, ps, response};

/// After a protocol violation, how long unread input is drained so the error reply is not lost
/// to a TCP reset (PS00010 note).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most queued commands written together (see `Connection::commands`).
const COALESCE_COMMANDS: usize = 16;
/// Coalescing stops once this many bytes are gathered.
const COALESCE_BYTES: usize = 64 * 1024;
/// Most bytes drained during [`CLOSE_GRACE`].
const CLOSE_DRAIN_LIMIT: usize = 2 * frame::MAX_FRAME_LEN;

/// Why a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed the connection.
    PeerClosed,
    /// No complete message within the idle timeout.
    Idle,
    /// `session_max_secs` reached.
    SessionLimit,
    /// The server is shutting down.
    Shutdown,
    /// A final answer (a protocol violation, or a refusal that ends the session) was sent.
    FinalAnswer,
    /// Another task asked to close it (e.g. a newer check-in).
    Replaced,
    /// Reading or writing failed or timed out.
    Io,
}

impl End {
    /// The label of each way to end in the metrics (`iop_connections_closed_total`), in
    /// declaration order.
    pub const LABELS: [&'static str; 7] = [
        "peer_closed",
        "timeout_idle",
        "timeout_session",
        "shutdown",
        "final_answer",
        "replaced",
        "io_error",
    ];

    /// This end's position in [`End::LABELS`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The connection's fixed parameters.
pub struct Setup {
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
pub fn serve<S>(
    stream: S,
    ctx: Arc<Ctx>,
    setup: Setup,
    shutdown: CancellationToken,
) -> impl Future<Output = End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let capacity = usize::try_from(ctx.config.limits.connection_queue_frames).unwrap_or(usize::MAX);
    let Setup {
        address_slot,
        remote,
        roles,
        idle,
        session_end,
    } = setup;
    let mut session = Session::new(roles, ctx.connection_number(), capacity);
    session.address = address_slot;
    session.remote = Some(remote);
    let mut connection = Connection {
        stream,
        session,
        pending: Pending::new(first_server_request_id(roles)),
        write_timeout: ctx.config.timeouts.write,
        idle,
        receiving: None,
        ctx,
    };
    async move {
        let end = connection.run(session_end, &shutdown).await;
        connection.leave_hub();
        if end == End::FinalAnswer {
            connection.close_gracefully().await;
        } else {
            let _ = timeout(connection.write_timeout, connection.stream.shutdown()).await;
        }
        end
    }
}

/// Spec §1.4: server-initiated request ids start at `(role bitmask << 24) + 1`.
fn first_server_request_id(roles: RoleSet) -> u32 {
    const CSHARP_BITS: [(Role, u32); 5] = [
        (Role::Primary, 1),
        (Role::SrNeighbor, 4),
        (Role::ClCustomer, 16),
        (Role::ClNonCustomer, 32),
        (Role::ClAppService, 128),
    ];
    let mask = CSHARP_BITS
        .iter()
        .filter(|(role, _)| roles.contains(*role))
        .map(|(_, b)| b)
        .sum::<u32>();
    (mask << 24) + 1
}

/// Adds a frame to the bytes of one write; a lone frame is moved in, not copied.
fn append(out: &mut Vec<u8>, frame: Vec<u8>) {
    if out.is_empty() {
        *out = frame;
    } else {
        out.extend_from_slice(&frame);
    }
}

/// The next command from another task; never, while nobody made the queue.
async fn next_command(commands: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
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
    session: Session,
    pending: Pending,
    write_timeout: Duration,
    /// The port's idle timeout; also the longest wait for in-flight budget.
    idle: Duration,
    /// The address's share held for the frame being received; released once it is whole.
    receiving: Option<OwnedSemaphorePermit>,
    ctx: Arc<Ctx>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// The connection ended: it leaves the presence registry, every relayed message it still
    /// owed an answer is refused, a call ringing it gets NOT_AVAILABLE, and its relays end.
    fn leave_hub(&mut self) {
        let ctx = Arc::clone(&self.ctx);
        let connection = self.session.connection;
        if let Conversation::Authenticated(peer) = &self.session.conversation {
            ctx.registry.leave(peer.id, connection);
        }
        let now = Now::read().instant;
        let pending = std::mem::replace(&mut self.pending, Pending::new(0));
        let mut effects = Vec::new();
        for reply in pending.into_unanswered() {
            effects.extend(ctx.relays.unanswered(reply, now));
        }
        effects.extend(ctx.relays.connection_closed(connection, self.session.relay));
        carry_out(&ctx.relays, effects);
    }

    async fn run(&mut self, session_end: Instant, shutdown: &CancellationToken) -> End {
        let mut reader = FrameReader::default();
        let mut idle_deadline = Instant::now() + self.idle;
        loop {
            let deadline = idle_deadline.min(session_end);
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Shutdown,
                command = next_command(&mut self.session.commands) => Event::Command(command),
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
                    let Ok(none) = Arc::clone(&self.ctx.inflight_bytes).try_acquire_many_owned(0)
                    else {
                        return End::Shutdown;
                    };
                    match reader.begin_body(len, none) {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Ok(Step::Arrived(bytes)) => match self.reserve_arriving(bytes).await {
                    Ok(permit) => match reader.charge(permit) {
                        Some(frame) => frame,
                        None => continue,
                    },
                    Err(end) => return end,
                },
                Ok(Step::Frame(frame)) => frame,
                Err(error) => return self.read_failed(&error).await,
            };
            idle_deadline = Instant::now() + self.idle;
            self.receiving = None;
            if let Some(end) = self.frame(frame).await {
                return end;
            }
        }
    }

    /// Waits for `bytes` of in-flight budget. The wait is the server's doing, not the peer's,
    /// so it gets a full idle period of its own.
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, End> {
        self.acquire(Arc::clone(&self.ctx.inflight_bytes), bytes)
            .await
    }

    async fn acquire(
        &self,
        from: Arc<Semaphore>,
        bytes: usize,
    ) -> Result<OwnedSemaphorePermit, End> {
        // Callers ask for at most a whole budget, which is a u32 (config bounds).
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match timeout(self.idle, from.acquire_many_owned(permits)).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(End::Shutdown),
            Err(_) => Err(End::Idle),
        }
    }

    /// Reserves `bytes` that arrived for the frame being received: first from the address's
    /// share (so one address cannot hold the whole budget with frames it never finishes), then
    /// from the global budget.
    async fn reserve_arriving(&mut self, bytes: usize) -> Result<OwnedSemaphorePermit, End> {
        if let Some(slot) = &self.session.address {
            let held = self
                .acquire(Arc::clone(slot.inflight_share()), bytes)
                .await?;
            match &mut self.receiving {
                Some(receiving) => receiving.merge(held),
                None => self.receiving = Some(held),
            }
        }
        self.reserve(bytes).await
    }

    /// Charges what decoding `body` will allocate beyond its own bytes (the elements of its
    /// repeated fields) to the frame's permit. A frame that could never fit in the whole budget
    /// is a protocol violation: no honest message comes near it.
    async fn charge_decoding(
        &mut self,
        body: &[u8],
        permit: &mut OwnedSemaphorePermit,
    ) -> Result<(), End> {
        let extra = decode_cost::repeated_cost(body);
        if extra == 0 {
            return Ok(());
        }
        let budget =
            usize::try_from(self.ctx.config.limits.max_inflight_bytes).unwrap_or(usize::MAX);
        if body.len().saturating_add(extra) > budget {
            tracing::debug!(extra, "message would decode beyond the in-flight budget");
            return Err(self.violation(UNKNOWN_MESSAGE_ID, "").await);
        }
        permit.merge(self.reserve(extra).await?);
        Ok(())
    }

    async fn read_failed(&mut self, error: &ReadError) -> End {
        match error {
            ReadError::Frame(cause) => {
                tracing::debug!(%cause, "framing violation");
                self.violation(UNKNOWN_MESSAGE_ID, "").await
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

    /// Handles one complete frame; `Some` ends the connection.
    async fn frame(&mut self, frame: Frame) -> Option<End> {
        let Frame { body, mut permit } = frame;
        let received = body.len() + frame::HEADER_LEN;
        self.ctx.metrics.bytes_received.add(received as u64);
        if let Err(end) = self.charge_decoding(&body, &mut permit).await {
            return Some(end);
        }
        let message = match frame::decode_body::<ps::Message>(&body) {
            Ok(message) => message,
            Err(cause) => {
                tracing::debug!(%cause, "unparsable message");
                return Some(self.violation(UNKNOWN_MESSAGE_ID, "").await);
            }
        };
        drop(body);
        match message.message_type {
            Some(ps::message::MessageType::Request(request)) => {
                let received = Received {
                    id: message.id,
                    now: Now::read(),
                    budget: permit,
                };
                // Boxed: the largest handler's state would otherwise be part of every idle
                // connection's task.
                let outcome = Box::pin(handlers::handle(
                    &self.ctx,
                    &mut self.session,
                    received,
                    request,
                ))
                .await;
                match outcome {
                    Outcome::Reply(answer) => self.send(&answer).await.err(),
                    Outcome::ReplyAndClose(answer) => {
                        Some(self.send(&answer).await.err().unwrap_or(End::FinalAnswer))
                    }
                    Outcome::Deferred => None,
                }
            }
            Some(ps::message::MessageType::Response(answer)) => {
                match self.pending.answer(message.id, answer) {
                    Matched::Delivered => None,
                    Matched::Relayed { ack, ok } => {
                        carry_out(&self.ctx.relays, self.ctx.relays.acknowledge(ack, ok));
                        None
                    }
                    Matched::CallAnswered { relay, status } => {
                        let now = Now::read().instant;
                        let effects = self.ctx.relays.call_answered(relay, Some(status), now);
                        carry_out(&self.ctx.relays, effects);
                        None
                    }
                    Matched::Violation => {
                        tracing::debug!(id = message.id, "response to no pending request");
                        Some(End::Io)
                    }
                }
            }
            // An empty message carries no id of its own (0 is proto3's absent value).
            None if message.id == 0 => Some(self.violation(UNKNOWN_MESSAGE_ID, "").await),
            None => Some(self.violation(message.id, "").await),
        }
    }

    /// Carries out `first` and whatever other commands are already queued behind it (up to
    /// [`COALESCE_COMMANDS`]), writing their frames with one write: under a relay's window that
    /// is one TLS record and one system call for several messages. `Some` ends the connection,
    /// after the frames queued before the command that ended it are written.
    async fn commands(&mut self, first: Command) -> Option<End> {
        let mut out = Vec::new();
        // In-flight budget of relayed payloads, released once their frames are written.
        let mut budgets = Vec::new();
        let mut end = self.prepare(first, &mut out, &mut budgets);
        for _ in 1..COALESCE_COMMANDS {
            if end.is_some() || out.len() >= COALESCE_BYTES {
                break;
            }
            let Some(next) = self
                .session
                .commands
                .as_mut()
                .and_then(|c| c.try_recv().ok())
            else {
                break;
            };
            end = self.prepare(next, &mut out, &mut budgets);
        }
        if !out.is_empty()
            && let Err(failed) = self.write(&out).await
        {
            return Some(failed);
        }
        end
    }

    /// Appends the frame a command writes to `out` (none for a request that cannot be sent);
    /// `Some` when the command ends the connection.
    fn prepare(
        &mut self,
        command: Command,
        out: &mut Vec<u8>,
        budgets: &mut Vec<OwnedSemaphorePermit>,
    ) -> Option<End> {
        match command {
            Command::Send(bytes) => append(out, bytes),
            Command::Request(request) => {
                let ServerRequest {
                    kind,
                    mut message,
                    reply,
                    budget,
                } = *request;
                let now = Now::read().instant;
                match self.pending.register(kind, now, reply) {
                    Ok(id) => {
                        message.id = id;
                        append(out, frame::encode(&message));
                        budgets.extend(budget);
                    }
                    // Spec §1.4: no 21st pending request; for a relay that ends it (§5.5).
                    Err((_, reply)) => {
                        carry_out(&self.ctx.relays, self.ctx.relays.unanswered(reply, now));
                    }
                }
            }
            Command::Close => return Some(End::Replaced),
        }
        None
    }

    async fn violation(&mut self, id: u32, details: &str) -> End {
        let answer = response::error(id, Status::ErrorProtocolViolation, details);
        self.send(&answer).await.err().unwrap_or(End::FinalAnswer)
    }

    async fn send(&mut self, message: &ps::Message) -> Result<(), End> {
        self.write(&frame::encode(message)).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    #[test]
    fn every_end_has_its_own_metrics_label() {
        let ends = [
            (End::PeerClosed, "peer_closed"),
            (End::Idle, "timeout_idle"),
            (End::SessionLimit, "timeout_session"),
            (End::Shutdown, "shutdown"),
            (End::FinalAnswer, "final_answer"),
            (End::Replaced, "replaced"),
            (End::Io, "io_error"),
        ];
        assert_eq!(ends.len(), End::LABELS.len());
        for (end, label) in ends {
            assert_eq!(End::LABELS[end.index()], label, "{end:?}");
        }
    }

    #[test]
    fn server_request_ids_follow_the_reference_bitmask() {
        assert_eq!(
            first_server_request_id(RoleSet::of(&[Role::ClCustomer])),
            (16 << 24) + 1
        );
        let shared = RoleSet::of(&[
            Role::SrNeighbor,
            Role::ClNonCustomer,
            Role::ClCustomer,
            Role::ClAppService,
        ]);
        assert_eq!(
            first_server_request_id(shared),
            ((4 + 16 + 32 + 128) << 24) + 1
        );
    }
}
