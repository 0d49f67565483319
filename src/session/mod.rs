//! Per-connection protocol state: which roles the port serves and where the conversation stands.
//!
//! Sync and clock-free: handlers mutate a [`Session`] in place, the connection task owns it. Nothing
//! here touches sockets or storage.

pub(crate) mod end;
pub(crate) mod gate;
pub(crate) mod pending;

pub(crate) use end::End;

use crate::crypto::NetworkId;
use crate::hub::AddressSlot;
use crate::hub::outbox::{Command, Link, Outbox};
use crate::hub::relay::Binding;
use crate::role::RoleSet;
use crate::search::index::Hit;

/// The state of one connection's conversation (spec §3.1).
///
/// Each variant holds only what is valid in that state: the challenge exists only once started,
/// and a proven identity only after VerifyIdentity or CheckIn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Conversation {
    /// Nothing exchanged yet.
    #[default]
    None,
    /// Versions and keys exchanged; the peer has not proved its key yet.
    Started {
        /// The peer's claimed identity.
        peer: Peer,
        /// The challenge the server sent, which the peer must sign back.
        challenge: [u8; 32],
    },
    /// A non-customer proved ownership of its key.
    Verified(Peer),
    /// A hosted customer checked in.
    Authenticated(Peer),
}

/// The identity on the other end of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Raw public key as sent in StartConversation (1..=128 bytes).
    pub public_key: Vec<u8>,
    /// SHA-256 of the public key.
    pub id: NetworkId,
}

impl Peer {
    /// The peer owning `public_key`.
    pub(crate) fn new(public_key: Vec<u8>) -> Peer {
        let id = NetworkId::of_key(&public_key);
        Peer { public_key, id }
    }
}

impl Conversation {
    /// The peer of a started, verified or authenticated conversation.
    pub(crate) fn peer(&self) -> Option<&Peer> {
        match self {
            Conversation::None => None,
            Conversation::Started { peer, .. }
            | Conversation::Verified(peer)
            | Conversation::Authenticated(peer) => Some(peer),
        }
    }

    /// Moves a started conversation to Verified; any other state is left alone.
    pub(crate) fn verify(&mut self) {
        *self = match std::mem::take(self) {
            Conversation::Started { peer, .. } => Conversation::Verified(peer),
            other => other,
        };
    }

    /// Moves a started conversation to Authenticated; any other state is left alone.
    pub(crate) fn authenticate(&mut self) {
        *self = match std::mem::take(self) {
            Conversation::Started { peer, .. } => Conversation::Authenticated(peer),
            other => other,
        };
    }
}

/// Everything the server remembers about one connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// Roles served on the port the connection arrived at.
    pub roles: RoleSet,
    /// The conversation state.
    pub conversation: Conversation,
    /// Unique number of the connection within this server run.
    pub connection: u64,
    /// The queue other tasks reach this connection through, made on first need (see
    /// [`Session::link`]).
    outbox: Option<Outbox>,
    /// The receiving end of `outbox`, which the connection task drains.
    pub commands: Option<tokio::sync::mpsc::Receiver<Command>>,
    /// Capacity of the queue once made.
    queue_capacity: usize,
    /// The relay this clAppService connection joined, if any.
    pub relay: Option<Binding>,
    /// The latest search's results, for ProfileSearchPart.
    pub search_cache: Option<SearchCache>,
    /// The connection's share of its IP address; none when the address is exempt from the
    /// per-client limits (and in unit tests).
    pub address: Option<AddressSlot>,
    /// The IP address the connection comes from (none in unit tests).
    pub remote: Option<std::net::IpAddr>,
    /// ProfileSearch requests started in the current second.
    pub searches: PerSecond,
}

/// Counts events in one-second windows.
#[derive(Debug, Default)]
pub(crate) struct PerSecond {
    window: Option<(tokio::time::Instant, u32)>,
}

impl PerSecond {
    /// Counts one event at `now`; `false` (and nothing counted) when `limit` events already
    /// happened in the current second.
    pub(crate) fn take(&mut self, now: tokio::time::Instant, limit: u32) -> bool {
        let second = std::time::Duration::from_secs(1);
        let (start, count) = match self.window {
            Some((start, count)) if now.duration_since(start) < second => (start, count),
            _ => (now, 0),
        };
        if count >= limit {
            return false;
        }
        self.window = Some((start, count + 1));
        true
    }
}

/// One connection's cached search results (spec §4.18): ids only, profiles are loaded per part.
#[derive(Debug)]
pub(crate) struct SearchCache {
    /// The results in their fixed order.
    pub hits: Vec<Hit>,
    /// Whether the search asked for thumbnails (selects the part limits).
    pub thumbnails: bool,
    /// When the cache stops serving parts.
    pub expires: tokio::time::Instant,
    /// Memory held against `limits.search_cache_bytes`, released with the cache.
    pub _budget: tokio::sync::OwnedSemaphorePermit,
}

impl Session {
    /// A fresh session of connection number `connection` on a port serving `roles`; other
    /// tasks may queue up to `queue_capacity` commands for it.
    pub(crate) fn new(roles: RoleSet, connection: u64, queue_capacity: usize) -> Session {
        Session {
            roles,
            conversation: Conversation::None,
            connection,
            outbox: None,
            commands: None,
            queue_capacity,
            relay: None,
            search_cache: None,
            address: None,
            remote: None,
            searches: PerSecond::default(),
        }
    }

    /// How other tasks reach this connection. The queue is made on the first call: most
    /// connections never check in, join a relay or follow, and an idle one should hold little.
    pub(crate) fn link(&mut self) -> Link {
        let outbox = self.outbox.get_or_insert_with(|| {
            let (outbox, commands) = Outbox::channel(self.queue_capacity);
            self.commands = Some(commands);
            outbox
        });
        Link {
            connection: self.connection,
            outbox: outbox.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    #[test]
    fn transitions_only_from_started() {
        let mut conversation = Conversation::None;
        conversation.verify();
        assert_eq!(conversation, Conversation::None);

        let peer = Peer::new(vec![1; 32]);
        conversation = Conversation::Started {
            peer: peer.clone(),
            challenge: [0; 32],
        };
        conversation.verify();
        assert_eq!(conversation, Conversation::Verified(peer.clone()));
        conversation.authenticate();
        assert_eq!(conversation, Conversation::Verified(peer.clone()));
        assert_eq!(conversation.peer(), Some(&peer));
    }

    #[test]
    fn new_session_has_no_conversation() {
        let mut session = Session::new(RoleSet::of(&[Role::Primary]), 1, 1);
        assert_eq!(session.conversation, Conversation::None);
        assert_eq!(session.conversation.peer(), None);
        assert!(
            session.commands.is_none(),
            "no queue until someone needs one"
        );
        let first = session.link();
        let again = session.link();
        assert_eq!((first.connection, again.connection), (1, 1));
        // What goes into the first link arrives where the connection reads after the second
        // call: one queue, not a new one per call.
        assert!(first.outbox.try_push(Command::Close).is_ok());
        assert!(matches!(
            session
                .commands
                .as_mut()
                .map(tokio::sync::mpsc::Receiver::try_recv),
            Some(Ok(Command::Close))
        ));
    }

    #[test]
    fn searches_are_counted_per_second() {
        let mut searches = PerSecond::default();
        let start = tokio::time::Instant::now();
        assert!(searches.take(start, 2));
        assert!(searches.take(start, 2));
        assert!(!searches.take(start + std::time::Duration::from_millis(999), 2));
        assert!(searches.take(start + std::time::Duration::from_secs(1), 2));
    }
}
