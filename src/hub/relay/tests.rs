//! Every rule of spec §4.13 and §5.5, driven without sockets or sleeps: time is an argument.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::hub::outbox::{Command, Outbox};
use crate::hub::{Effect, carry_out};
use crate::wire::ps::{message, response as envelope};

const ANSWER: Duration = Duration::from_secs(10);
const JOIN: Duration = Duration::from_secs(30);
const CALLER: NetworkId = NetworkId([1; 32]);
const CALLEE: NetworkId = NetworkId([2; 32]);

/// A connection as the hub sees it, with the receiving end the test inspects.
struct Conn {
    link: Link,
    queue: mpsc::Receiver<Command>,
}

fn conn(number: u64) -> Conn {
    let (outbox, queue) = Outbox::channel(4);
    Conn {
        link: Link {
            connection: number,
            outbox,
        },
        queue,
    }
}

impl Conn {
    /// The next queued command, if any.
    fn next(&mut self) -> Option<Command> {
        self.queue.try_recv().ok()
    }

    /// The next queued frame as a response: (id, status, body).
    fn response(&mut self) -> (u32, Status, Option<envelope::ConversationType>) {
        let Some(Command::Send(bytes)) = self.next() else {
            panic!("no frame queued");
        };
        let (message, _) = frame::split::<ps::Message>(&bytes)
            .ok()
            .flatten()
            .expect("a whole frame");
        let Some(message::MessageType::Response(r)) = message.message_type else {
            panic!("not a response");
        };
        let status = Status::try_from(r.status).expect("known status");
        (message.id, status, r.conversation_type)
    }

    fn is_idle(&mut self) -> bool {
        self.next().is_none()
    }
}

fn relays(max: usize) -> Relays {
    Relays::new(
        max,
        RelayTimeouts {
            answer: ANSWER,
            join: JOIN,
        },
    )
}

/// A call from `caller` (request id 7) to CALLEE, placed at `now`.
fn ring(relays: &Relays, caller: &Conn, now: Instant) -> NewCall {
    let from = Caller {
        id: CALLER,
        link: caller.link.clone(),
        request_id: 7,
    };
    relays.place_call(from, CALLEE, now).expect("room")
}

fn deliver(relays: &Relays, effects: Vec<Effect>) {
    carry_out(relays, effects);
}

/// An accepted call: returns the call and the caller's token.
fn accepted(relays: &Relays, caller: &mut Conn, now: Instant) -> (NewCall, Vec<u8>) {
    let call = ring(relays, caller, now);
    deliver(
        relays,
        relays.call_answered(call.relay, Some(Status::Ok), now),
    );
    let (id, status, body) = caller.response();
    assert_eq!((id, status), (7, Status::Ok));
    let Some(envelope::ConversationType::ConversationResponse(c)) = body else {
        panic!("not a conversation response");
    };
    let Some(conversation_response::ResponseType::CallIdentityApplicationService(answer)) =
        c.response_type
    else {
        panic!("not a call answer");
    };
    (call, answer.caller_token)
}

/// Both parties joined at `now`: (caller's app connection, callee's app connection).
fn open(relays: &Relays, now: Instant) -> (Conn, Conn, NewCall, Vec<u8>) {
    let mut caller = conn(1);
    let (call, caller_token) = accepted(relays, &mut caller, now);
    let (mut a, mut b) = (conn(10), conn(11));
    assert!(matches!(
        relays.join(&caller_token, a.link.clone(), 100, now),
        Ok(Joined::Waiting(_))
    ));
    let Ok(Joined::Open(binding, effects)) =
        relays.join(&call.callee_token, b.link.clone(), 200, now)
    else {
        panic!("second init opens the relay");
    };
    assert_eq!(binding.side, Side::Callee);
    deliver(relays, effects);
    assert_eq!(a.response().0, 100);
    assert!(a.is_idle());
    assert!(
        b.is_idle(),
        "the second init is answered by its own request"
    );
    (a, b, call, caller_token)
}

#[test]
fn calls_beyond_the_limit_are_refused() {
    let relays = relays(2);
    let caller = conn(1);
    let now = Instant::now();
    ring(&relays, &caller, now);
    ring(&relays, &caller, now);
    let third = Caller {
        id: CALLER,
        link: caller.link.clone(),
        request_id: 8,
    };
    assert!(relays.place_call(third, CALLEE, now).is_none());
}

#[test]
fn acceptance_hands_the_caller_its_token() {
    let relays = relays(4);
    let mut caller = conn(1);
    let (call, token) = accepted(&relays, &mut caller, Instant::now());
    assert_eq!(token.len(), 16);
    assert_ne!(token, call.callee_token.to_vec());
}

#[test]
fn rejection_is_passed_on_and_other_errors_become_not_available() {
    let relays = relays(4);
    let now = Instant::now();
    for (answer, expected) in [
        (Some(Status::ErrorRejected), Status::ErrorRejected),
        (Some(Status::ErrorInternal), Status::ErrorNotAvailable),
        (None, Status::ErrorNotAvailable),
    ] {
        let mut caller = conn(1);
        let call = ring(&relays, &caller, now);
        deliver(&relays, relays.call_answered(call.relay, answer, now));
        assert_eq!(caller.response().1, expected);
        let callee = conn(2);
        assert!(
            relays
                .join(&call.callee_token, callee.link, 1, now)
                .is_err(),
            "the relay is gone"
        );
    }
}

#[test]
fn an_unanswered_call_times_out_with_not_available() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let call = ring(&relays, &caller, now);
    assert_eq!(relays.next_deadline(), Some(now + ANSWER));
    assert!(
        relays
            .expire(now + ANSWER - Duration::from_millis(1))
            .is_empty()
    );
    deliver(&relays, relays.expire(now + ANSWER));
    assert_eq!(caller.response(), (7, Status::ErrorNotAvailable, None));
    // A late answer changes nothing.
    assert!(
        relays
            .call_answered(call.relay, Some(Status::Ok), now + ANSWER)
            .is_empty()
    );
    assert_eq!(relays.next_deadline(), None);
}

#[test]
fn a_caller_that_leaves_while_ringing_ends_the_call() {
    let relays = relays(4);
    let caller = conn(1);
    let now = Instant::now();
    let call = ring(&relays, &caller, now);
    relays.connection_closed(caller.link.connection, None);
    assert!(
        relays
            .call_answered(call.relay, Some(Status::Ok), now)
            .is_empty()
    );
    let callee = conn(2);
    assert!(
        relays
            .join(&call.callee_token, callee.link, 1, now)
            .is_err()
    );
}

#[test]
fn an_accepted_call_nobody_joins_vanishes_silently() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let accepted_at = now + Duration::from_secs(5);
    let call = ring(&relays, &caller, now);
    deliver(
        &relays,
        relays.call_answered(call.relay, Some(Status::Ok), accepted_at),
    );
    assert_eq!(caller.response().1, Status::Ok);
    // The join timer runs from the acceptance, not from the call.
    assert_eq!(relays.next_deadline(), Some(accepted_at + JOIN));
    assert!(relays.expire(now + JOIN).is_empty() && relays.next_deadline().is_some());
    assert!(
        relays.expire(accepted_at + JOIN).is_empty(),
        "nobody to tell"
    );
    let callee = conn(2);
    let late = accepted_at + JOIN;
    assert!(
        relays
            .join(&call.callee_token, callee.link, 1, late)
            .is_err()
    );
}

#[test]
fn a_lone_init_gets_not_found_when_the_other_party_never_joins() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let (call, _) = accepted(&relays, &mut caller, now);
    let mut callee = conn(2);
    let joined_at = now + Duration::from_secs(20);
    let joined = relays.join(&call.callee_token, callee.link.clone(), 5, joined_at);
    assert!(matches!(joined, Ok(Joined::Waiting(_))));
    // The second party has a full join period from the first init.
    assert!(relays.expire(now + JOIN).is_empty());
    deliver(&relays, relays.expire(joined_at + JOIN));
    assert_eq!(callee.response(), (5, Status::ErrorNotFound, None));
}

#[test]
fn an_init_before_the_acceptance_was_processed_waits_for_it() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let call = ring(&relays, &caller, now);
    let callee = conn(2);
    let joined = relays.join(&call.callee_token, callee.link, 5, now);
    assert!(matches!(joined, Ok(Joined::Waiting(_))));
    assert_eq!(relays.next_deadline(), Some(now + ANSWER), "still ringing");
    let accepted_at = now + Duration::from_secs(1);
    deliver(
        &relays,
        relays.call_answered(call.relay, Some(Status::Ok), accepted_at),
    );
    assert_eq!(caller.response().1, Status::Ok);
    assert_eq!(relays.next_deadline(), Some(accepted_at + JOIN));
}

#[test]
fn both_inits_open_the_relay_and_messages_flow_both_ways() {
    let relays = relays(4);
    let now = Instant::now();
    let (a, b, call, caller_token) = open(&relays, now);
    assert_eq!(relays.next_deadline(), None, "an open relay has no timer");
    assert!(relays.expire(now + JOIN * 10).is_empty());
    let from_a = Binding {
        relay: call.relay,
        side: Side::Caller,
    };
    let to = relays.route(from_a, &caller_token).expect("open");
    assert_eq!(to.connection, b.link.connection);
    let from_b = Binding {
        relay: call.relay,
        side: Side::Callee,
    };
    let to = relays.route(from_b, &call.callee_token).expect("open");
    assert_eq!(to.connection, a.link.connection);
}

#[test]
fn data_before_ones_own_init_was_answered_ends_the_relay() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let (call, caller_token) = accepted(&relays, &mut caller, now);
    let mut a = conn(10);
    let Ok(Joined::Waiting(binding)) = relays.join(&caller_token, a.link.clone(), 100, now) else {
        panic!("first init waits");
    };
    let Err(Refused(effects)) = relays.route(binding, &caller_token) else {
        panic!("data before the answer is refused");
    };
    deliver(&relays, effects);
    assert_eq!(a.response(), (100, Status::ErrorNotFound, None));
    assert!(
        relays
            .join(&call.callee_token, conn(2).link, 1, now)
            .is_err()
    );
}

#[test]
fn a_token_of_another_relay_ends_both_relays() {
    let relays = relays(4);
    let now = Instant::now();
    let (mut a, mut b, call, _) = open(&relays, now);
    let (mut c, mut d, other, other_token) = open(&relays, now);
    let from_a = Binding {
        relay: call.relay,
        side: Side::Caller,
    };
    let Err(Refused(effects)) = relays.route(from_a, &other_token) else {
        panic!("a foreign token is refused");
    };
    deliver(&relays, effects);
    for party in [&mut a, &mut b, &mut c, &mut d] {
        assert!(matches!(party.next(), Some(Command::Close)));
    }
    assert!(
        relays
            .join(&other.callee_token, conn(3).link, 1, now)
            .is_err()
    );
}

#[test]
fn a_second_connection_for_a_joined_side_is_refused_and_the_relay_lives() {
    let relays = relays(4);
    let mut caller = conn(1);
    let now = Instant::now();
    let (call, caller_token) = accepted(&relays, &mut caller, now);
    relays
        .join(&caller_token, conn(10).link, 100, now)
        .expect("first init");
    assert!(relays.join(&caller_token, conn(11).link, 101, now).is_err());
    assert!(matches!(
        relays.join(&call.callee_token, conn(12).link, 200, now),
        Ok(Joined::Open(..))
    ));
}

#[test]
fn acknowledgements_follow_the_recipients_answer() {
    let relays = relays(4);
    let now = Instant::now();
    let (mut a, mut b, call, caller_token) = open(&relays, now);
    let ack = RelayAck {
        relay: call.relay,
        outbox: a.link.outbox.clone(),
        message_id: 300,
        token: caller_token.clone(),
    };
    deliver(&relays, relays.acknowledge(ack.clone(), true));
    let (id, status, _) = a.response();
    assert_eq!((id, status), (300, Status::Ok));
    deliver(&relays, relays.acknowledge(ack, false));
    assert_eq!(a.response(), (300, Status::ErrorNotFound, None));
    assert!(matches!(a.next(), Some(Command::Close)));
    assert!(matches!(b.next(), Some(Command::Close)));
}

#[test]
fn a_sender_whose_queue_is_full_ends_the_relay() {
    let relays = relays(4);
    let now = Instant::now();
    let (a, mut b, call, caller_token) = open(&relays, now);
    while a.link.outbox.try_push(Command::Close).is_ok() {}
    let ack = RelayAck {
        relay: call.relay,
        outbox: a.link.outbox.clone(),
        message_id: 300,
        token: caller_token,
    };
    deliver(&relays, relays.acknowledge(ack, true));
    assert!(matches!(b.next(), Some(Command::Close)));
    let from_b = Binding {
        relay: call.relay,
        side: Side::Callee,
    };
    assert!(relays.route(from_b, &call.callee_token).is_err());
}

#[test]
fn a_party_leaving_an_open_relay_closes_the_other() {
    let relays = relays(4);
    let now = Instant::now();
    let (a, mut b, call, _) = open(&relays, now);
    let binding = Binding {
        relay: call.relay,
        side: Side::Caller,
    };
    deliver(
        &relays,
        relays.connection_closed(a.link.connection, Some(binding)),
    );
    assert!(matches!(b.next(), Some(Command::Close)));
}

#[test]
fn only_a_party_may_close_the_call() {
    let relays = relays(4);
    let now = Instant::now();
    let (_a, mut b, call, caller_token) = open(&relays, now);
    assert!(relays.close_call(&caller_token, Some(CALLEE)).is_none());
    assert!(relays.close_call(&caller_token, None).is_none());
    assert!(relays.close_call(&[0; 16], Some(CALLER)).is_none());
    let effects = relays
        .close_call(&caller_token, Some(CALLER))
        .expect("a party");
    deliver(&relays, effects);
    assert!(matches!(b.next(), Some(Command::Close)));
    assert!(
        relays
            .close_call(&call.callee_token, Some(CALLEE))
            .is_none()
    );
}
