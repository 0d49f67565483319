//! The protocol side of one connection, without I/O: it takes whole frames and commands from
//! other tasks, with the time they came, and says what to write and whether to close.
//!
//! It owns the connection's [`Session`] (roles, conversation, relay binding) and its
//! [`Pending`] requests: it decodes and dispatches requests to the handlers, matches responses
//! to the requests the server sent, numbers those requests (spec §1.4) and hands relayed
//! answers to the hub; when the connection ends it leaves the hub. It never reads a socket,
//! a timer or the clock: `net::connection` does that and carries out the [`Output`].

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use crate::clock::Now;
use crate::context::Ctx;
use crate::handlers::{self, Outcome, Received};
use crate::hub::{AddressSlot, Command, ServerRequest, carry_out};
use crate::role::{Role, RoleSet};
pub(crate) use crate::session::End;
use crate::session::pending::{Matched, Pending};
use crate::session::{Conversation, Session};
use crate::wire::{Status, UNKNOWN_MESSAGE_ID, frame, ps, response};

/// What the connection must do after an event: write `bytes` (whole frames, in order), keep
/// `budgets` until they are written, then end when `end` says so.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Frames to write, in order.
    pub bytes: Vec<u8>,
    /// In-flight budget of relayed payloads, released once their frames are written.
    pub budgets: Vec<OwnedSemaphorePermit>,
    /// Set when the connection ends after the bytes are written.
    pub end: Option<End>,
}

impl Output {
    /// A protocol violation by message `id`: the error answer, after which the connection
    /// ends.
    pub(crate) fn violation(&mut self, id: u32) {
        let answer = response::error(id, Status::ErrorProtocolViolation, "");
        self.append(frame::encode(&answer));
        self.end = Some(End::FinalAnswer);
    }

    /// Adds a frame; a lone frame is moved in, not copied.
    fn append(&mut self, frame: Vec<u8>) {
        if self.bytes.is_empty() {
            self.bytes = frame;
        } else {
            self.bytes.extend_from_slice(&frame);
        }
    }
}

/// Who is on the other end, as the listener accepted it.
pub(crate) struct Peer {
    /// Roles served on the port.
    pub roles: RoleSet,
    /// The IP address the peer connects from.
    pub remote: std::net::IpAddr,
    /// Its share of that address; none for an address exempt from the limits.
    pub address_slot: Option<AddressSlot>,
}

/// The protocol state machine of one connection.
pub(crate) struct Engine {
    ctx: Arc<Ctx>,
    session: Session,
    pending: Pending,
}

impl Engine {
    /// A fresh connection from `peer`.
    pub(crate) fn new(ctx: Arc<Ctx>, peer: Peer) -> Engine {
        let capacity =
            usize::try_from(ctx.config.limits.connection_queue_frames).unwrap_or(usize::MAX);
        let mut session = Session::new(peer.roles, ctx.connection_number(), capacity);
        session.address = peer.address_slot;
        session.remote = Some(peer.remote);
        Engine {
            pending: Pending::new(first_server_request_id(peer.roles)),
            session,
            ctx,
        }
    }

    /// The queue through which other tasks reach this connection, once somebody made it.
    pub(crate) fn commands(&mut self) -> Option<&mut mpsc::Receiver<Command>> {
        self.session.commands.as_mut()
    }

    /// The address's share of the in-flight budget, if the address has one.
    pub(crate) fn address_slot(&self) -> Option<&AddressSlot> {
        self.session.address.as_ref()
    }

    /// A whole frame `body` arrived at `now`, its memory held by `budget`.
    pub(crate) async fn frame(
        &mut self,
        body: Vec<u8>,
        budget: OwnedSemaphorePermit,
        now: Now,
        out: &mut Output,
    ) {
        let message = match frame::decode_body::<ps::Message>(&body) {
            Ok(message) => message,
            Err(cause) => {
                tracing::debug!(%cause, "unparsable message");
                return out.violation(UNKNOWN_MESSAGE_ID);
            }
        };
        drop(body);
        match message.message_type {
            Some(ps::message::MessageType::Request(request)) => {
                let received = Received {
                    id: message.id,
                    now,
                    budget,
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
                    Outcome::Reply(answer) => out.append(frame::encode(&answer)),
                    Outcome::ReplyAndClose(answer) => {
                        out.append(frame::encode(&answer));
                        out.end = Some(End::FinalAnswer);
                    }
                    Outcome::Deferred => {}
                }
            }
            Some(ps::message::MessageType::Response(answer)) => {
                self.response(message.id, answer, now.instant, out);
            }
            // An empty message carries no id of its own (0 is proto3's absent value).
            None if message.id == 0 => out.violation(UNKNOWN_MESSAGE_ID),
            None => out.violation(message.id),
        }
    }

    /// A response to a request the server sent on this connection.
    fn response(&mut self, id: u32, answer: ps::Response, now: Instant, out: &mut Output) {
        match self.pending.answer(id, answer) {
            Matched::Delivered => {}
            Matched::Relayed { ack, ok } => {
                carry_out(
                    &self.ctx.hub.relays,
                    self.ctx.hub.relays.acknowledge(ack, ok),
                );
            }
            Matched::CallAnswered { relay, status } => {
                let effects = self.ctx.hub.relays.call_answered(relay, Some(status), now);
                carry_out(&self.ctx.hub.relays, effects);
            }
            Matched::Violation => {
                tracing::debug!(id, "response to no pending request");
                out.end = Some(End::Io);
            }
        }
    }

    /// A command another task queued for this connection, at `now`.
    pub(crate) fn command(&mut self, command: Command, now: Instant, out: &mut Output) {
        match command {
            Command::Send(bytes) => out.append(bytes),
            Command::Request(request) => {
                let ServerRequest {
                    kind,
                    mut message,
                    reply,
                    budget,
                } = *request;
                match self.pending.register(kind, now, reply) {
                    Ok(id) => {
                        message.id = id;
                        out.append(frame::encode(&message));
                        out.budgets.extend(budget);
                    }
                    // Spec §1.4: no 21st pending request; for a relay that ends it (§5.5).
                    Err((_, reply)) => {
                        carry_out(
                            &self.ctx.hub.relays,
                            self.ctx.hub.relays.unanswered(reply, now),
                        );
                    }
                }
            }
            Command::Close => out.end = Some(End::Replaced),
        }
    }

    /// The connection ended at `now`: it leaves the presence registry, every relayed message
    /// it still owed an answer is refused, a call ringing it gets NOT_AVAILABLE, and its
    /// relays end.
    pub(crate) fn leave(&mut self, now: Instant) {
        let ctx = Arc::clone(&self.ctx);
        let connection = self.session.connection;
        if let Conversation::Authenticated(peer) = &self.session.conversation {
            ctx.hub.registry.leave(peer.id, connection);
        }
        let pending = std::mem::replace(&mut self.pending, Pending::new(0));
        let mut effects = Vec::new();
        for reply in pending.into_unanswered() {
            effects.extend(ctx.hub.relays.unanswered(reply, now));
        }
        effects.extend(
            ctx.hub
                .relays
                .connection_closed(connection, self.session.relay),
        );
        carry_out(&ctx.hub.relays, effects);
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

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;
