//! State shared between connections: each connection's [`Outbox`], who is online
//! ([`Registry`]), the call relays ([`Relays`]), what each IP address holds ([`Addresses`]) and
//! the liveness of neighbour and follower servers ([`PeerHealth`]).
//!
//! Uses only `wire`, `crypto` and `clock`'s types; never a socket, never the clock itself. The
//! relay decisions take `now` and return [`Effect`]s; [`carry_out`] is the one place where
//! those meet the connections' queues.

pub(crate) mod addresses;
pub(crate) mod outbox;
pub(crate) mod peer_health;
pub(crate) mod registry;
pub(crate) mod relay;

pub(crate) use addresses::{AddressLimits, AddressSlot, Addresses};
pub(crate) use outbox::{Command, Outbox, Reply, ServerRequest, ServerRequestKind};
pub(crate) use peer_health::{Candidate, PeerHealth, Side};
pub(crate) use registry::Registry;
pub(crate) use relay::Relays;

/// Something a decision wants done to a connection.
#[derive(Debug)]
pub(crate) struct Effect {
    /// The connection.
    pub to: Outbox,
    /// What it must do.
    pub command: Command,
    /// A relay that ends when the connection's queue refuses the command (spec §5.5: a party
    /// that cannot be told ends the call).
    pub ends_relay: Option<u64>,
}

impl Effect {
    /// Queue `frame` for writing.
    pub(crate) fn send(to: &Outbox, frame: Vec<u8>) -> Effect {
        Effect {
            to: to.clone(),
            command: Command::Send(frame),
            ends_relay: None,
        }
    }

    /// Close the connection.
    pub(crate) fn close(to: &Outbox) -> Effect {
        Effect {
            to: to.clone(),
            command: Command::Close,
            ends_relay: None,
        }
    }
}

/// Queues every effect; a refused one that names a relay ends it, and so on until nothing is
/// left. Never waits: a full queue refuses instead of growing.
pub(crate) fn carry_out(relays: &Relays, effects: Vec<Effect>) {
    let mut work = std::collections::VecDeque::from(effects);
    while let Some(effect) = work.pop_front() {
        if effect.to.try_push(effect.command).is_err()
            && let Some(relay) = effect.ends_relay
        {
            work.extend(relays.end(relay, true));
        }
    }
}
