//! Requests the server sent to a client and still awaits answers for (spec §1.4).
//!
//! At most [`MAX_PENDING`] per connection; answers are matched by message id. A response with an
//! unknown id, or an OK response of the wrong type, means the connection must be closed.

use std::time::Duration;

use tokio::time::Instant;

use crate::hub::outbox::{RelayAck, Reply, ServerRequestKind};
use crate::wire::{Status, ps};

/// Spec §1.4: at most 20 unfinished server→client requests per connection.
pub(crate) const MAX_PENDING: usize = 20;

/// How long an entry is kept after its requester stopped waiting, so a late answer is still
/// recognised instead of closing the connection.
const LATE_ANSWER_GRACE: Duration = Duration::from_secs(60);

/// Why a server-initiated request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PendingError {
    /// Twenty requests are already unanswered on the connection.
    #[error("too many unanswered requests on the connection")]
    Full,
}

/// What the connection must do with an incoming response.
#[derive(Debug)]
pub(crate) enum Matched {
    /// Delivered (or dropped because the requester gave up).
    Delivered,
    /// The recipient of a relayed message answered; `ok` tells whether it accepted it.
    Relayed {
        /// Who to acknowledge.
        ack: RelayAck,
        /// Whether the answer was STATUS_OK.
        ok: bool,
    },
    /// The callee answered an IncomingCallNotification.
    CallAnswered {
        /// The ringing relay.
        relay: u64,
        /// The callee's status.
        status: Status,
    },
    /// Unknown id or wrong type: close the connection without replying.
    Violation,
}

struct Entry {
    id: u32,
    kind: ServerRequestKind,
    sent: Instant,
    reply: Reply,
}

/// The fixed-size table of unanswered requests.
type Entries = heapless::Vec<Entry, MAX_PENDING>;

/// The pending server→client requests of one connection. The table is allocated with the
/// first request: most connections never get one, and it is over a kilobyte.
pub(crate) struct Pending {
    entries: Option<Box<Entries>>,
    next_id: u32,
}

impl Pending {
    /// An empty table whose ids start at `first_id` (spec §1.4 uses `(role mask << 24) + 1`).
    pub(crate) fn new(first_id: u32) -> Pending {
        Pending {
            entries: None,
            next_id: first_id,
        }
    }

    /// Reserves an id for a new request, or fails when 20 are already pending.
    pub(crate) fn register(
        &mut self,
        kind: ServerRequestKind,
        now: Instant,
        reply: Reply,
    ) -> Result<u32, (PendingError, Reply)> {
        self.expire(now);
        let id = self.next_id;
        let entries = self.entries.get_or_insert_with(Box::default);
        match entries.push(Entry {
            id,
            kind,
            sent: now,
            reply,
        }) {
            Ok(()) => {
                self.next_id = self.next_id.wrapping_add(1);
                Ok(id)
            }
            Err(entry) => Err((PendingError::Full, entry.reply)),
        }
    }

    /// Matches an incoming response by id and hands it to whoever waits for it.
    pub(crate) fn answer(&mut self, id: u32, response: ps::Response) -> Matched {
        let Some(entries) = self.entries.as_mut() else {
            return Matched::Violation;
        };
        let Some(index) = entries.iter().position(|entry| entry.id == id) else {
            return Matched::Violation;
        };
        let entry = entries.swap_remove(index);
        let ok = response.status == 0;
        if ok && !kind_matches(entry.kind, &response) {
            return Matched::Violation;
        }
        match entry.reply {
            Reply::Channel(sender) => {
                // The requester may have stopped waiting; that is not the client's fault.
                let _ = sender.send(response);
                Matched::Delivered
            }
            Reply::Relay(ack) => Matched::Relayed { ack, ok },
            Reply::Call { relay, .. } => Matched::CallAnswered {
                relay,
                status: Status::try_from(response.status).unwrap_or(Status::ErrorInternal),
            },
        }
    }

    /// Ends the table with the connection: whatever is still owed an answer.
    pub(crate) fn into_unanswered(self) -> impl Iterator<Item = Reply> {
        self.entries
            .into_iter()
            .flat_map(|entries| entries.into_iter())
            .map(|entry| entry.reply)
    }

    /// Number of unanswered requests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| entries.len())
    }

    /// Whether no request is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries whose requester gave up more than the grace period ago.
    fn expire(&mut self, now: Instant) {
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        entries.retain(|entry| match &entry.reply {
            Reply::Channel(sender) => {
                !(sender.is_closed() && now.duration_since(entry.sent) > LATE_ANSWER_GRACE)
            }
            Reply::Call { answer_by, .. } => {
                now.saturating_duration_since(*answer_by) <= LATE_ANSWER_GRACE
            }
            Reply::Relay(_) => true,
        });
    }
}

fn kind_matches(kind: ServerRequestKind, response: &ps::Response) -> bool {
    use ps::conversation_response::ResponseType as C;
    use ps::response::ConversationType;
    use ps::single_response::ResponseType as S;
    match &response.conversation_type {
        Some(ConversationType::SingleResponse(single)) => matches!(
            (kind, &single.response_type),
            (
                ServerRequestKind::ReceiveMessageNotification,
                Some(S::ApplicationServiceReceiveMessageNotification(_))
            )
        ),
        Some(ConversationType::ConversationResponse(conversation)) => matches!(
            (kind, &conversation.response_type),
            (
                ServerRequestKind::IncomingCallNotification,
                Some(C::IncomingCallNotification(_))
            ) | (
                ServerRequestKind::NeighborhoodSharedProfileUpdate,
                Some(C::NeighborhoodSharedProfileUpdate(_))
            ) | (
                ServerRequestKind::FinishNeighborhoodInitialization,
                Some(C::FinishNeighborhoodInitialization(_))
            )
        ),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::response;

    use tokio::sync::oneshot;

    fn ok_receive_notification() -> ps::Response {
        let message = response::single(
            1,
            vec![1, 0, 0],
            ps::single_response::ResponseType::ApplicationServiceReceiveMessageNotification(
                ps::ApplicationServiceReceiveMessageNotificationResponse {},
            ),
        );
        match message.message_type {
            Some(ps::message::MessageType::Response(r)) => r,
            _ => unreachable!("built as a response"),
        }
    }

    #[test]
    fn answers_are_matched_by_id() {
        let mut pending = Pending::new((16 << 24) + 1);
        let (tx, mut rx) = oneshot::channel();
        let id = pending
            .register(
                ServerRequestKind::ReceiveMessageNotification,
                Instant::now(),
                Reply::Channel(tx),
            )
            .expect("room");
        assert_eq!(id, (16 << 24) + 1);
        assert!(matches!(
            pending.answer(id + 1, ok_receive_notification()),
            Matched::Violation
        ));
        assert!(matches!(
            pending.answer(id, ok_receive_notification()),
            Matched::Delivered
        ));
        assert!(rx.try_recv().is_ok());
        assert!(pending.is_empty());
    }

    #[test]
    fn ok_answer_of_the_wrong_type_is_a_violation() {
        let mut pending = Pending::new(1);
        let (tx, _rx) = oneshot::channel();
        let id = pending
            .register(
                ServerRequestKind::IncomingCallNotification,
                Instant::now(),
                Reply::Channel(tx),
            )
            .expect("room");
        assert!(matches!(
            pending.answer(id, ok_receive_notification()),
            Matched::Violation
        ));
    }

    #[test]
    fn error_answer_of_any_type_is_delivered() {
        let mut pending = Pending::new(1);
        let (tx, mut rx) = oneshot::channel();
        let id = pending
            .register(
                ServerRequestKind::IncomingCallNotification,
                Instant::now(),
                Reply::Channel(tx),
            )
            .expect("room");
        let rejected = ps::Response {
            status: Status::ErrorRejected as i32,
            ..Default::default()
        };
        assert!(matches!(pending.answer(id, rejected), Matched::Delivered));
        assert_eq!(
            rx.try_recv().map(|r| r.status),
            Ok(Status::ErrorRejected as i32)
        );
    }

    #[test]
    fn the_twenty_first_request_is_refused() {
        let mut pending = Pending::new(1);
        let mut receivers = Vec::new();
        for _ in 0..MAX_PENDING {
            let (tx, rx) = oneshot::channel();
            receivers.push(rx);
            assert!(
                pending
                    .register(
                        ServerRequestKind::IncomingCallNotification,
                        Instant::now(),
                        Reply::Channel(tx)
                    )
                    .is_ok()
            );
        }
        let (tx, _rx) = oneshot::channel();
        let refused = pending.register(
            ServerRequestKind::IncomingCallNotification,
            Instant::now(),
            Reply::Channel(tx),
        );
        assert!(matches!(refused, Err((PendingError::Full, _))));
        assert_eq!(pending.len(), MAX_PENDING);
    }

    #[test]
    fn abandoned_entries_expire_after_the_grace_period() {
        let mut pending = Pending::new(1);
        let start = Instant::now();
        for _ in 0..MAX_PENDING {
            let (tx, rx) = oneshot::channel();
            drop(rx);
            assert!(
                pending
                    .register(
                        ServerRequestKind::IncomingCallNotification,
                        start,
                        Reply::Channel(tx)
                    )
                    .is_ok()
            );
        }
        let (tx, _rx) = oneshot::channel();
        let later = start + LATE_ANSWER_GRACE + Duration::from_secs(1);
        assert!(
            pending
                .register(
                    ServerRequestKind::IncomingCallNotification,
                    later,
                    Reply::Channel(tx)
                )
                .is_ok()
        );
        assert_eq!(pending.len(), 1);
    }
}
