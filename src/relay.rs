//! Application-service relays: the state of every call from acceptance to teardown (spec §5.5,
//! the legacy clAppService model the public tests use).
//!
//! A relay is created when a call is placed, becomes joinable when the callee accepts, waits for
//! both parties' init messages on their clAppService connections, and then forwards messages.
//! The registry only decides; the connections carry out the returned effects (replies, deliveries,
//! closes) through their outboxes, so nothing here awaits.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::crypto::{NetworkId, random_bytes};
use crate::outbox::{Command, Outbox};
use crate::registry::Link;
use crate::wire::{Status, VERSION_1_0_0, ps, response};

/// Relay tokens are 16 random bytes, like the reference server's GUIDs.
pub type Token = [u8; 16];

/// Which party of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
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
pub struct Binding {
    /// The relay.
    pub relay: u64,
    /// The side this connection speaks for.
    pub side: Side,
}

/// A newly placed call.
#[derive(Debug)]
pub struct NewCall {
    /// Relay id.
    pub relay: u64,
    /// Token handed to the caller once the callee accepts.
    pub caller_token: Token,
    /// Token sent to the callee in the notification.
    pub callee_token: Token,
}

/// What an init message led to.
#[derive(Debug)]
pub enum Joined {
    /// First party in: its init is answered when the other arrives (or NOT_FOUND at timeout).
    Waiting(Binding),
    /// Both in: answer this init now; the first party's init answer was queued already.
    Open(Binding),
}

/// Where a relayed message goes.
#[derive(Debug)]
pub struct Route {
    /// The recipient's connection.
    pub peer: Outbox,
}

/// A relay request that must be refused with NOT_FOUND; the relays involved are gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// Whether the refusing connection must also be closed.
    pub close: bool,
}

enum State {
    /// The callee has not answered the notification yet.
    Ringing,
    /// Accepted; nobody joined yet.
    Accepted,
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
    state: State,
    /// Changes whenever a timer-relevant step happens, so stale timers do nothing.
    stage: u64,
}

#[derive(Default)]
struct Inner {
    relays: HashMap<u64, Relay>,
    by_token: HashMap<Token, (u64, Side)>,
    next_id: u64,
}

/// Every relay of the server, bounded by `limits.max_relays`.
pub struct Relays {
    inner: Mutex<Inner>,
    max: usize,
}

impl Relays {
    /// An empty registry holding at most `max` relays.
    pub fn new(max: usize) -> Relays {
        Relays {
            inner: Mutex::default(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of live relays.
    pub fn len(&self) -> usize {
        self.lock().relays.len()
    }

    /// Whether no relay is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a ringing relay with fresh tokens; `None` when the limit is reached.
    pub fn place_call(&self, caller: NetworkId, callee: NetworkId) -> Option<NewCall> {
        let mut inner = self.lock();
        if inner.relays.len() >= self.max {
            return None;
        }
        inner.next_id += 1;
        let relay = inner.next_id;
        let (caller_token, callee_token) = (random_bytes(), random_bytes());
        inner.by_token.insert(caller_token, (relay, Side::Caller));
        inner.by_token.insert(callee_token, (relay, Side::Callee));
        let state = State::Ringing;
        let entry = Relay {
            tokens: [caller_token, callee_token],
            parties: [caller, callee],
            state,
            stage: 0,
        };
        inner.relays.insert(relay, entry);
        Some(NewCall {
            relay,
            caller_token,
            callee_token,
        })
    }

    /// The callee accepted: the relay becomes joinable. Returns the stage for the join timer, or
    /// `None` when the relay is gone (the caller left meanwhile).
    pub fn accept(&self, relay: u64) -> Option<u64> {
        let mut inner = self.lock();
        let entry = inner.relays.get_mut(&relay)?;
        if matches!(entry.state, State::Ringing) {
            entry.state = State::Accepted;
        }
        entry.stage += 1;
        Some(entry.stage)
    }

    /// Processes an init message (the first message on a clAppService connection).
    pub fn join(&self, token: &[u8], link: Link, init_id: u32) -> Result<(Joined, u64), Refused> {
        let mut inner = self.lock();
        let found = <Token>::try_from(token)
            .ok()
            .and_then(|t| inner.by_token.get(&t).copied());
        let Some((relay, side)) = found else {
            return Err(Refused { close: true });
        };
        let Some(entry) = inner.relays.get_mut(&relay) else {
            return Err(Refused { close: true });
        };
        let binding = Binding { relay, side };
        match std::mem::replace(&mut entry.state, State::Ringing) {
            State::Ringing | State::Accepted => {
                entry.state = State::Waiting {
                    side,
                    link,
                    init_id,
                };
            }
            State::Waiting {
                side: waiting,
                link: first,
                init_id: first_id,
            } if waiting != side => {
                let token = entry.tokens[waiting.index()].to_vec();
                let _ = first
                    .outbox
                    .try_push(Command::Send(send_ok(first_id, token)));
                let mut links = [link.clone(), link];
                links[waiting.index()] = first;
                entry.state = State::Open { links };
            }
            taken => {
                // The token's side already joined from another connection: refuse the intruder.
                entry.state = taken;
                return Err(Refused { close: true });
            }
        }
        entry.stage += 1;
        let joined = match entry.state {
            State::Open { .. } => Joined::Open(binding),
            _ => Joined::Waiting(binding),
        };
        Ok((joined, entry.stage))
    }

    /// Where a data message from the connection bound by `binding` goes, or why it is refused.
    /// Any refusal ends the relay (spec §5.5); a token of another relay ends that one too.
    pub fn route(&self, binding: Binding, token: &[u8]) -> Result<Route, Refused> {
        let mut inner = self.lock();
        let known = <Token>::try_from(token)
            .ok()
            .and_then(|t| inner.by_token.get(&t).copied());
        if known != Some((binding.relay, binding.side)) {
            if let Some((other, _)) = known {
                destroy(&mut inner, other);
            }
            destroy(&mut inner, binding.relay);
            return Err(Refused { close: true });
        }
        if let Some(State::Open { links }) = inner.relays.get(&binding.relay).map(|r| &r.state) {
            return Ok(Route {
                peer: links[binding.side.other().index()].outbox.clone(),
            });
        }
        // Data before one's own init was answered (or after teardown).
        destroy(&mut inner, binding.relay);
        Err(Refused { close: true })
    }

    /// Ends a relay (a party left, failed, or a timer fired). Open parties are closed; the waiting
    /// party of a half-joined relay gets NOT_FOUND for its init when `notify_waiting`.
    pub fn end(&self, relay: u64, notify_waiting: bool) {
        let Some(removed) = take(&mut self.lock(), relay) else {
            return;
        };
        if notify_waiting || !matches!(removed.state, State::Waiting { .. }) {
            release(removed);
        }
    }

    /// Ends the relay if it is still at `stage` (used by the join timers).
    pub fn expire(&self, relay: u64, stage: u64) {
        let current = self.lock().relays.get(&relay).map(|r| r.stage);
        if current == Some(stage) {
            self.end(relay, true);
        }
    }

    /// Tears down the relay of a caller whose connection closed before the callee answered.
    pub fn caller_left(&self, relay: u64) {
        let ringing = matches!(
            self.lock().relays.get(&relay).map(|r| &r.state),
            Some(State::Ringing)
        );
        if ringing {
            self.end(relay, false);
        }
    }

    /// CloseCall (HEAD proto): ends the call of `token` when `requester` is that token's party.
    pub fn close_call(&self, token: &[u8], requester: Option<NetworkId>) -> bool {
        let relay = {
            let inner = self.lock();
            let found = <Token>::try_from(token)
                .ok()
                .and_then(|t| inner.by_token.get(&t).copied());
            found.filter(|&(relay, side)| {
                inner.relays.get(&relay).map(|r| r.parties[side.index()]) == requester
            })
        };
        let Some((relay, _)) = relay else {
            return false;
        };
        self.end(relay, true);
        true
    }
}

/// Removes a relay from the maps and returns it.
fn take(inner: &mut Inner, relay: u64) -> Option<Relay> {
    let removed = inner.relays.remove(&relay)?;
    for token in &removed.tokens {
        inner.by_token.remove(token);
    }
    Some(removed)
}

/// Removes a relay while the lock is held, then releases its parties.
fn destroy(inner: &mut Inner, relay: u64) {
    if let Some(relay) = take(inner, relay) {
        release(relay);
    }
}

/// Tells the parties of a removed relay: NOT_FOUND to a waiting init, close to open parties.
fn release(relay: Relay) {
    match relay.state {
        State::Waiting { link, init_id, .. } => {
            let refusal = response::error(init_id, Status::ErrorNotFound, "");
            let _ = link
                .outbox
                .try_push(Command::Send(crate::wire::frame::encode(&refusal)));
        }
        State::Open { links } => {
            for link in links {
                let _ = link.outbox.try_push(Command::Close);
            }
        }
        State::Ringing | State::Accepted => {}
    }
}

/// The encoded OK answer to an ApplicationServiceSendMessageRequest, echoing the token.
pub fn send_ok(id: u32, token: Vec<u8>) -> Vec<u8> {
    let body = ps::single_response::ResponseType::ApplicationServiceSendMessage(
        ps::ApplicationServiceSendMessageResponse { token },
    );
    crate::wire::frame::encode(&response::single(id, VERSION_1_0_0.to_vec(), body))
}
