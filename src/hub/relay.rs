//! Application-service relays: every call from the moment it rings to its teardown (spec §4.13,
//! §5.5, the legacy clAppService model the public tests use).
//!
//! A relay rings until the callee answers, becomes joinable when the callee accepts, waits for
//! both parties' init messages on their clAppService connections, and then forwards messages.
//! This module only decides: every method takes the time as an argument where a timer matters,
//! changes the state and returns the [`Effect`]s (answers to send, connections to close) that
//! the caller carries out with [`super::carry_out`]. Timers are deadlines kept in the state;
//! [`Relays::expire`] fires the due ones, so no task sleeps per call.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Effect;
use super::outbox::{Link, RelayAck, Reply};
use crate::crypto::{NetworkId, random_bytes};
use crate::wire::ps::{self, conversation_response, single_response};
use crate::wire::{Status, VERSION_1_0_0, frame, response};

/// Relay tokens are 16 random bytes, like the reference server's GUIDs.
pub(crate) type Token = [u8; 16];

/// How long each step of a call may take (`timeouts.call_answer_secs`, `relay_join_secs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RelayTimeouts {
    /// The callee's time to answer IncomingCallNotification (spec: 10 s).
    pub answer: Duration,
    /// Time for the first init after acceptance, and for the second after the first (30 s).
    pub join: Duration,
}

/// Which party of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The identity that placed the call.
    Caller,
    /// The called identity.
    Callee,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }
}

/// A clAppService connection's membership in a relay: one relay per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The relay.
    pub relay: u64,
    /// The side this connection speaks for.
    pub side: Side,
}

/// The caller's side of a call being placed.
#[derive(Debug)]
pub(crate) struct Caller {
    /// The caller's identity.
    pub id: NetworkId,
    /// The caller's connection, which receives the deferred answer.
    pub link: Link,
    /// Id of the caller's CallIdentityApplicationServiceRequest.
    pub request_id: u32,
}

/// A newly placed call.
#[derive(Debug)]
pub(crate) struct NewCall {
    /// Relay id.
    pub relay: u64,
    /// Token sent to the callee in the notification.
    pub callee_token: Token,
    /// When the call stops ringing.
    pub answer_by: Instant,
}

/// What an init message led to.
#[derive(Debug)]
pub(crate) enum Joined {
    /// First party in: its init is answered when the other arrives (or NOT_FOUND at timeout).
    Waiting(Binding),
    /// Both in: answer this init now; the first party's answer is among the effects.
    Open(Binding, Vec<Effect>),
}

/// A relay request refused with NOT_FOUND and the connection closed; the relays involved are
/// gone, and their other parties are told through the effects.
#[derive(Debug)]
pub(crate) struct Refused(pub Vec<Effect>);

/// The caller's answer, owed until the callee answers the notification.
struct Ringing {
    caller: Link,
    request_id: u32,
}

impl Ringing {
    fn refuse(self, status: Status) -> Effect {
        let refusal = response::error(self.request_id, status, "");
        Effect::send(&self.caller.outbox, frame::encode(&refusal))
    }
}

enum State {
    /// Nobody joined yet.
    Idle,
    /// One party sent its init and waits for the other's.
    Waiting {
        side: Side,
        link: Link,
        init_id: u32,
    },
    /// Both joined: messages flow.
    Open { links: [Link; 2] },
}

struct Relay {
    tokens: [Token; 2],
    /// Caller and callee identities: only they may close the call.
    parties: [NetworkId; 2],
    /// Present until the callee accepted.
    ringing: Option<Ringing>,
    state: State,
    /// When the current step times out; none once open.
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    relays: HashMap<u64, Relay>,
    by_token: HashMap<Token, (u64, Side)>,
    next_id: u64,
}

/// Every relay of the server, bounded by `limits.max_relays`.
pub(crate) struct Relays {
    inner: Mutex<Inner>,
    max: usize,
    timeouts: RelayTimeouts,
    /// Woken when a deadline earlier than every other may have been set.
    deadline_set: Notify,
}

impl Relays {
    /// An empty set holding at most `max` relays.
    pub(crate) fn new(max: usize, timeouts: RelayTimeouts) -> Relays {
        Relays {
            inner: Mutex::default(),
            max,
            timeouts,
            deadline_set: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Relays alive now, ringing to teardown.
    pub(crate) fn count(&self) -> usize {
        self.lock().relays.len()
    }

    /// `limits.max_relays`.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn set_deadline(&self, entry: &mut Relay, at: Instant) {
        entry.deadline = Some(at);
        self.deadline_set.notify_one();
    }

    /// Creates a ringing relay with fresh tokens; `None` when the limit is reached.
    pub(crate) fn place_call(
        &self,
        caller: Caller,
        callee: NetworkId,
        now: Instant,
    ) -> Option<NewCall> {
        let mut inner = self.lock();
        if inner.relays.len() >= self.max {
            return None;
        }
        inner.next_id += 1;
        let relay = inner.next_id;
        let (caller_token, callee_token) = (random_bytes(), random_bytes());
        inner.by_token.insert(caller_token, (relay, Side::Caller));
        inner.by_token.insert(callee_token, (relay, Side::Callee));
        let answer_by = now + self.timeouts.answer;
        let mut entry = Relay {
            tokens: [caller_token, callee_token],
            parties: [caller.id, callee],
            ringing: Some(Ringing {
                caller: caller.link,
                request_id: caller.request_id,
            }),
            state: State::Idle,
            deadline: None,
        };
        self.set_deadline(&mut entry, answer_by);
        inner.relays.insert(relay, entry);
        Some(NewCall {
            relay,
            callee_token,
            answer_by,
        })
    }

    /// The callee answered the notification with `status`, or could not (`None`: it left, or
    /// the notification could not be sent). Only a ringing relay changes (spec §4.13): OK gives
    /// the caller its token and starts the join timer, REJECTED is passed on, anything else is
    /// NOT_AVAILABLE and the relay ends.
    pub(crate) fn call_answered(
        &self,
        relay: u64,
        status: Option<Status>,
        now: Instant,
    ) -> Vec<Effect> {
        let mut inner = self.lock();
        let Some(entry) = inner.relays.get_mut(&relay) else {
            return Vec::new();
        };
        let Some(ringing) = entry.ringing.take() else {
            return Vec::new();
        };
        if status == Some(Status::Ok) {
            let body = conversation_response::ResponseType::CallIdentityApplicationService(
                ps::CallIdentityApplicationServiceResponse {
                    caller_token: entry.tokens[Side::Caller.index()].to_vec(),
                },
            );
            self.set_deadline(entry, now + self.timeouts.join);
            let answer = response::conversation(ringing.request_id, Vec::new(), body);
            return vec![Effect::send(&ringing.caller.outbox, frame::encode(&answer))];
        }
        let status = match status {
            Some(Status::ErrorRejected) => Status::ErrorRejected,
            _ => Status::ErrorNotAvailable,
        };
        let mut effects = vec![ringing.refuse(status)];
        effects.extend(take(&mut inner, relay).map_or_else(Vec::new, |r| release(r, true)));
        effects
    }

    /// Processes an init message (the first message on a clAppService connection).
    pub(crate) fn join(
        &self,
        token: &[u8],
        link: Link,
        init_id: u32,
        now: Instant,
    ) -> Result<Joined, Refused> {
        let mut inner = self.lock();
        let Some((relay, side)) = lookup(&inner, token) else {
            return Err(Refused(Vec::new()));
        };
        let Some(entry) = inner.relays.get_mut(&relay) else {
            return Err(Refused(Vec::new()));
        };
        let binding = Binding { relay, side };
        match std::mem::replace(&mut entry.state, State::Idle) {
            State::Idle => {
                entry.state = State::Waiting {
                    side,
                    link,
                    init_id,
                };
                // A callee may join before its acceptance was processed: the ring deadline
                // still decides until then.
                if entry.ringing.is_none() {
                    self.set_deadline(entry, now + self.timeouts.join);
                }
                Ok(Joined::Waiting(binding))
            }
            State::Waiting {
                side: waiting,
                link: first,
                init_id: first_id,
            } if waiting != side => {
                let token = entry.tokens[waiting.index()].to_vec();
                let answer = Effect::send(&first.outbox, send_ok(first_id, token));
                let mut links = [link.clone(), link];
                links[waiting.index()] = first;
                entry.state = State::Open { links };
                entry.deadline = None;
                Ok(Joined::Open(binding, vec![answer]))
            }
            taken => {
                // The token's side already joined from another connection: refuse the intruder.
                entry.state = taken;
                Err(Refused(Vec::new()))
            }
        }
    }

    /// Where a data message from the connection bound by `binding` goes, or why it is refused.
    /// Any refusal ends the relay (spec §5.5); a token of another relay ends that one too.
    pub(crate) fn route(&self, binding: Binding, token: &[u8]) -> Result<Link, Refused> {
        let mut inner = self.lock();
        let known = lookup(&inner, token);
        if known == Some((binding.relay, binding.side))
            && let Some(State::Open { links }) = inner.relays.get(&binding.relay).map(|r| &r.state)
        {
            return Ok(links[binding.side.other().index()].clone());
        }
        // A foreign token, or data before one's own init was answered (or after teardown).
        let mut ended: Vec<Relay> = Vec::new();
        if let Some((other, _)) = known.filter(|&(other, _)| other != binding.relay) {
            ended.extend(take(&mut inner, other));
        }
        ended.extend(take(&mut inner, binding.relay));
        Err(Refused(
            ended.into_iter().flat_map(|r| release(r, true)).collect(),
        ))
    }

    /// The recipient of a relayed message answered (`ok`) or failed: the sender learns it, in
    /// the order the recipient answered. A failure ends the relay (spec §5.5).
    pub(crate) fn acknowledge(&self, ack: RelayAck, ok: bool) -> Vec<Effect> {
        let relay = ack.relay;
        let answer = if ok {
            send_ok(ack.message_id, ack.token)
        } else {
            frame::encode(&response::error(ack.message_id, Status::ErrorNotFound, ""))
        };
        let mut effects = vec![Effect {
            ends_relay: Some(relay),
            ..Effect::send(&ack.outbox, answer)
        }];
        if !ok {
            effects.extend(self.end(relay, true));
        }
        effects
    }

    /// A server-initiated request that gets no answer: its connection ended, or its table of
    /// pending requests was full (the 21st unacknowledged message, spec §5.5).
    pub(crate) fn unanswered(&self, reply: Reply, now: Instant) -> Vec<Effect> {
        match reply {
            Reply::Relay(ack) => self.acknowledge(ack, false),
            Reply::Call { relay, .. } => self.call_answered(relay, None, now),
            // The waiting task sees its sender dropped.
            Reply::Channel(_) => Vec::new(),
        }
    }

    /// Ends a relay (a party left or failed). Open parties are closed, a caller still waiting
    /// for the callee gets NOT_AVAILABLE, and the waiting party of a half-joined relay gets
    /// NOT_FOUND for its init when `notify_waiting`.
    pub(crate) fn end(&self, relay: u64, notify_waiting: bool) -> Vec<Effect> {
        take(&mut self.lock(), relay).map_or_else(Vec::new, |r| release(r, notify_waiting))
    }

    /// A connection ended: calls it placed that still ring are torn down, so a callee that
    /// accepts later gets NOT_FOUND for its init (spec §4.13), and the relay it was bound to
    /// ends.
    pub(crate) fn connection_closed(&self, connection: u64, bound: Option<Binding>) -> Vec<Effect> {
        let mut inner = self.lock();
        let placed: Vec<u64> = inner
            .relays
            .iter()
            .filter(|(_, r)| {
                r.ringing
                    .as_ref()
                    .is_some_and(|ringing| ringing.caller.connection == connection)
            })
            .map(|(&id, _)| id)
            .collect();
        let mut effects = Vec::new();
        for relay in placed {
            effects.extend(take(&mut inner, relay).map_or_else(Vec::new, |r| release(r, true)));
        }
        drop(inner);
        if let Some(binding) = bound {
            effects.extend(self.end(binding.relay, false));
        }
        effects
    }

    /// CloseCall (HEAD proto): ends the call of `token` when `requester` is that token's party;
    /// `None` when the token is unknown or belongs to someone else.
    pub(crate) fn close_call(
        &self,
        token: &[u8],
        requester: Option<NetworkId>,
    ) -> Option<Vec<Effect>> {
        let mut inner = self.lock();
        let (relay, side) = lookup(&inner, token)?;
        let party = inner.relays.get(&relay).map(|r| r.parties[side.index()]);
        if party.is_none() || party != requester {
            return None;
        }
        Some(take(&mut inner, relay).map_or_else(Vec::new, |r| release(r, true)))
    }

    /// Fires every deadline that is due at `now` (spec §4.13, §5.5 timers): a call nobody
    /// answered gives the caller NOT_AVAILABLE; an accepted call nobody joined vanishes; a
    /// half-joined one gives the waiting party NOT_FOUND.
    pub(crate) fn expire(&self, now: Instant) -> Vec<Effect> {
        let mut inner = self.lock();
        let due: Vec<u64> = inner
            .relays
            .iter()
            .filter(|(_, relay)| relay.deadline.is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        due.into_iter()
            .filter_map(|relay| take(&mut inner, relay))
            .flat_map(|r| release(r, true))
            .collect()
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lock().relays.values().filter_map(|r| r.deadline).min()
    }

    /// Completes once a deadline may have been set since the last call; for the timer task.
    pub(crate) async fn deadline_set(&self) {
        self.deadline_set.notified().await;
    }
}

fn lookup(inner: &Inner, token: &[u8]) -> Option<(u64, Side)> {
    let token = <Token>::try_from(token).ok()?;
    inner.by_token.get(&token).copied()
}

/// Removes a relay from the maps and returns it.
fn take(inner: &mut Inner, relay: u64) -> Option<Relay> {
    let removed = inner.relays.remove(&relay)?;
    for token in &removed.tokens {
        inner.by_token.remove(token);
    }
    Some(removed)
}

/// What the parties of a removed relay are told: NOT_AVAILABLE to a caller still waiting for
/// the callee, NOT_FOUND to a waiting init (when `notify_waiting`), close to open parties.
fn release(relay: Relay, notify_waiting: bool) -> Vec<Effect> {
    let mut effects: Vec<Effect> = relay
        .ringing
        .map(|ringing| ringing.refuse(Status::ErrorNotAvailable))
        .into_iter()
        .collect();
    match relay.state {
        State::Waiting { link, init_id, .. } if notify_waiting => {
            let refusal = response::error(init_id, Status::ErrorNotFound, "");
            effects.push(Effect::send(&link.outbox, frame::encode(&refusal)));
        }
        State::Open { links } => effects.extend(links.iter().map(|l| Effect::close(&l.outbox))),
        State::Idle | State::Waiting { .. } => {}
    }
    effects
}

/// The encoded OK answer to an ApplicationServiceSendMessageRequest, echoing the token.
pub(crate) fn send_ok(id: u32, token: Vec<u8>) -> Vec<u8> {
    let body = single_response::ResponseType::ApplicationServiceSendMessage(
        ps::ApplicationServiceSendMessageResponse { token },
    );
    frame::encode(&response::single(id, VERSION_1_0_0.to_vec(), body))
}

#[cfg(test)]
mod tests;
