//! PS05: application-service calls and the clAppService relay (spec/tests/PS05.md).
//! T_answer and T_join are shortened to 2 s and 3 s so the timer tests run in seconds.

use std::time::Duration;

use iop_profile_server::crypto::{random_bytes, sha256};
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::single_response::ResponseType;
use tokio::time::sleep;

use crate::kit::*;

const LAYOUTS: [Layout; 2] = [Layout::Shared, Layout::Split];
const T_ANSWER: Duration = Duration::from_secs(2);
const T_JOIN: Duration = Duration::from_secs(3);

fn options(layout: Layout) -> Options {
    Options {
        timeouts: "call_answer_secs = 2\nrelay_join_secs = 3".into(),
        ..Options::layout(layout)
    }
}

async fn server(layout: Layout) -> TestServer {
    TestServer::start(&options(layout)).await
}

#[tokio::test(start_paused = true)]
async fn ps05001_full_call_with_ping_while_a_delivery_is_pending() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut call = open_call(&server).await;
        let (r, e) = (&mut call.r_app, &mut call.e_app);
        for (id, text) in [
            (2, "Message #1 to callee."),
            (3, "Message #2 to callee."),
            (4, "Message #3 to callee."),
        ] {
            r.send(&send_message(id, &call.tr, text.as_bytes()))
                .await
                .expect("send");
        }
        e.expect_delivery("Message #1 to callee.").await;
        e.expect_delivery("Message #2 to callee.").await;
        e.send(&send_message(2, &call.te, b"Message #1 to CALLER."))
            .await
            .expect("send");
        sleep(Duration::from_millis(500)).await;
        e.send(&iop_profile_server::wire::request::single(
            3,
            iop_profile_server::wire::ps::single_request::RequestType::Ping(
                iop_profile_server::wire::ps::PingRequest {
                    payload: b"test".to_vec(),
                },
            ),
        ))
        .await
        .expect("ping");
        let (third, text) = e.delivery().await;
        assert_eq!(text, b"Message #3 to callee.");
        let pong = e.receive().await;
        assert_eq!(pong.id, 3);
        let ResponseType::Ping(ping) = single_body(into_response(pong)) else {
            panic!("not a ping")
        };
        assert_eq!(ping.payload, b"test");
        e.ack(third).await;
        e.send(&send_message(4, &call.te, b"Message #2 to CALLER."))
            .await
            .expect("send");

        r.expect_send_answer(2, Status::Ok).await;
        r.expect_send_answer(3, Status::Ok).await;
        r.expect_delivery("Message #1 to CALLER.").await;
        r.expect_send_answer(4, Status::Ok).await;
        r.expect_delivery("Message #2 to CALLER.").await;
        e.expect_send_answer(2, Status::Ok).await;
        e.expect_send_answer(4, Status::Ok).await;
    }
}

/// PS05002 for one pair: 100 random messages each way at once, lossless and in order.
async fn stress_pair(server: &TestServer) {
    let call = open_call(server).await;
    let OpenCall {
        e_app,
        r_app,
        te,
        tr,
        e_ctl,
    } = call;
    let (from_r, to_e) = tokio::join!(run_party(r_app, tr), run_party(e_app, te));
    assert_eq!(from_r.0, to_e.1, "callee received what the caller sent");
    assert_eq!(to_e.0, from_r.1, "caller received what the callee sent");
    drop(e_ctl);
}

/// Sends 100 random payloads while acknowledging deliveries; returns (hash sent, hash received).
async fn run_party(client: Client, token: Vec<u8>) -> ([u8; 32], [u8; 32]) {
    let (mut reader, writer) = client.split();
    let writer = tokio::sync::Mutex::new(writer);
    let writing = async {
        let mut sent = Vec::new();
        for id in 2..102u32 {
            let len = 4 + usize::from(u16::from_le_bytes(random_bytes())) % 9_997;
            let payload: Vec<u8> = (0..len).map(|_| random_bytes::<1>()[0]).collect();
            sent.extend_from_slice(&payload);
            writer
                .lock()
                .await
                .send(&send_message(id, &token, &payload))
                .await
                .expect("send");
            sleep(Duration::from_millis(
                u64::from(random_bytes::<1>()[0]) % 50,
            ))
            .await;
        }
        sha256(&sent)
    };
    let reading = async {
        let (mut received, mut deliveries, mut answers) = (Vec::new(), 0, 0);
        while deliveries < 100 || answers < 100 {
            match incoming(reader.receive().await) {
                Incoming::Delivery(id, message) => {
                    received.extend_from_slice(&message);
                    deliveries += 1;
                    writer
                        .lock()
                        .await
                        .send(&ack_message(id))
                        .await
                        .expect("ack");
                }
                Incoming::Answer(status) => {
                    assert_eq!(status, Status::Ok);
                    answers += 1;
                }
            }
        }
        sha256(&received)
    };
    tokio::join!(writing, reading)
}

#[tokio::test(start_paused = true)]
async fn ps05002_hundred_random_messages_each_way() {
    for layout in LAYOUTS {
        stress_pair(&server(layout).await).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05003_three_pairs_in_parallel() {
    let server = server(Layout::Shared).await;
    tokio::join!(
        stress_pair(&server),
        stress_pair(&server),
        stress_pair(&server)
    );
}

#[tokio::test(start_paused = true)]
async fn ps05005_silent_relay_parties_are_disconnected() {
    let options = Options {
        client_idle_secs: 3,
        ..options(Layout::Split)
    };
    let server = TestServer::start(&options).await;
    let mut call = open_call(&server).await;
    call.r_app
        .send(&send_message(2, &call.tr, b"Message #1 to callee."))
        .await
        .expect("send");
    call.e_app.expect_delivery("Message #1 to callee.").await;
    call.e_app
        .send(&send_message(2, &call.te, b"Message #1 to CALLER."))
        .await
        .expect("send");
    call.r_app.expect_send_answer(2, Status::Ok).await;
    call.r_app.expect_delivery("Message #1 to CALLER.").await;
    call.e_app.expect_send_answer(2, Status::Ok).await;
    sleep(Duration::from_secs(3) + IDLE_MARGIN).await;
    call.r_app
        .assert_closed_after_sending(&iop_profile_server::wire::frame::encode(&send_message(
            3, &call.tr, b"x",
        )))
        .await;
    call.e_app
        .assert_closed_after_sending(&iop_profile_server::wire::frame::encode(&send_message(
            3, &call.te, b"y",
        )))
        .await;
}

#[tokio::test(start_paused = true)]
async fn ps05006_offline_callee_is_not_available() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let identity = Identity::random();
        register(&server, &identity, "Test Type").await;
        let mut e_ctl = check_in(&server, &identity).await;
        assert_status(
            &e_ctl.update_profile(3, &Update::new(&identity)).await,
            Status::Ok,
        );
        drop(e_ctl);
        sleep(Duration::from_millis(300)).await;
        let mut r_ctl = caller_verified(&server).await;
        let mut callee = Client::plain(server.port(Role::Primary)).await;
        callee.identity = identity;
        assert_status(
            &r_ctl.call(&call_message(3, &callee, SERVICE)).await,
            Status::ErrorNotAvailable,
        );
    }
}

#[tokio::test(start_paused = true)]
async fn ps05007_unanswered_notification_is_not_available() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let e_ctl = callee_online(&server).await;
        let mut r_ctl = caller_verified(&server).await;
        let started = tokio::time::Instant::now();
        assert_status(
            &r_ctl.call(&call_message(3, &e_ctl, SERVICE)).await,
            Status::ErrorNotAvailable,
        );
        assert!(started.elapsed() >= T_ANSWER);
    }
}

#[tokio::test(start_paused = true)]
async fn ps05009_service_not_enabled() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let e_ctl = callee_online(&server).await;
        let mut r_ctl = caller_verified(&server).await;
        let answer = r_ctl
            .call(&call_message(3, &e_ctl, "Test Service Invalid"))
            .await;
        assert_invalid(&answer, "serviceName");
    }
}

#[tokio::test(start_paused = true)]
async fn ps05010_callee_rejects() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let Ringing {
            mut e_ctl,
            mut r_ctl,
            ring_id,
            notification,
        } = ring_callee(&server).await;
        assert_eq!(notification.caller_public_key, r_ctl.identity.public_key());
        e_ctl.answer_call(ring_id, Status::ErrorRejected).await;
        let answer = r_ctl.receive().await;
        assert_eq!(answer.id, 3);
        assert_status(&into_response(answer), Status::ErrorRejected);
    }
}

/// S1–S5 and the caller's token: E accepted but has not joined.
async fn accepted(server: &TestServer) -> (Client, Client, Vec<u8>, Vec<u8>) {
    let Ringing {
        mut e_ctl,
        mut r_ctl,
        ring_id,
        notification,
    } = ring_callee(server).await;
    e_ctl.answer_call(ring_id, Status::Ok).await;
    let answer = r_ctl.receive().await;
    assert_eq!(answer.id, 3);
    let tr = caller_token(into_response(answer));
    (e_ctl, r_ctl, notification.callee_token, tr)
}

#[tokio::test(start_paused = true)]
async fn ps05011_callee_never_joins() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let (_e_ctl, _r_ctl, _te, tr) = accepted(&server).await;
        let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
        let started = tokio::time::Instant::now();
        r_app.send(&send_message(1, &tr, b"")).await.expect("init");
        r_app.expect_send_answer(1, Status::ErrorNotFound).await;
        assert!(started.elapsed() >= T_JOIN.saturating_sub(Duration::from_millis(200)));
    }
}

#[tokio::test(start_paused = true)]
async fn ps05013_callee_leaves_right_after_opening() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut call = open_call(&server).await;
        drop(call.e_app);
        sleep(Duration::from_millis(500)).await;
        let bytes = iop_profile_server::wire::frame::encode(&send_message(
            2,
            &call.tr,
            b"Message #1 to callee.",
        ));
        call.r_app.assert_closed_after_sending(&bytes).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05014_callee_leaves_with_a_message_unacknowledged() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut call = open_call(&server).await;
        call.r_app
            .send(&send_message(2, &call.tr, b"Message #1 to callee."))
            .await
            .expect("send");
        sleep(Duration::from_millis(500)).await;
        drop(call.e_app);
        call.r_app
            .expect_send_answer(2, Status::ErrorNotFound)
            .await;
        let bytes = iop_profile_server::wire::frame::encode(&send_message(
            3,
            &call.tr,
            b"Message #2 to callee.",
        ));
        call.r_app.assert_closed_after_sending(&bytes).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05015_unknown_token_tears_down_both_sides() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut call = open_call(&server).await;
        call.r_app
            .send(&send_message(2, &sha256(b"test"), b"Message #1 to callee."))
            .await
            .expect("send");
        call.r_app
            .expect_send_answer(2, Status::ErrorNotFound)
            .await;
        let bytes = iop_profile_server::wire::frame::encode(&send_message(
            3,
            &call.tr,
            b"Message #2 to callee.",
        ));
        call.r_app.assert_closed_after_sending(&bytes).await;
        let bytes = iop_profile_server::wire::frame::encode(&send_message(
            2,
            &call.te,
            b"Message #1 to CALLER.",
        ));
        call.e_app.assert_closed_after_sending(&bytes).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05016_neither_party_joins_in_time() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let (_e_ctl, _r_ctl, te, tr) = accepted(&server).await;
        let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
        sleep(T_JOIN + Duration::from_secs(1)).await;
        e_app.send(&send_message(1, &te, b"")).await.expect("init");
        let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
        r_app.send(&send_message(1, &tr, b"")).await.expect("init");
        r_app.expect_send_answer(1, Status::ErrorNotFound).await;
        e_app.expect_send_answer(1, Status::ErrorNotFound).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05018_callee_sends_a_last_message_and_leaves() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut call = open_call(&server).await;
        call.r_app
            .send(&send_message(2, &call.tr, b"Message #1 to callee."))
            .await
            .expect("send");
        call.e_app.expect_delivery("Message #1 to callee.").await;
        call.e_app
            .send(&send_message(2, &call.te, b"Message #1 to CALLER."))
            .await
            .expect("send");
        drop(call.e_app);
        sleep(Duration::from_secs(1)).await;
        call.r_app.expect_send_answer(2, Status::Ok).await;
        let (id, text) = call.r_app.delivery().await;
        assert_eq!(text, b"Message #1 to CALLER.");
        call.r_app.ack(id).await;
        let bytes = iop_profile_server::wire::frame::encode(&send_message(
            3,
            &call.tr,
            b"Message #2 to callee.",
        ));
        call.r_app.assert_closed_after_sending(&bytes).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05019_control_connections_closed_before_the_relay_starts() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let Ringing {
            mut e_ctl,
            mut r_ctl,
            ring_id,
            notification,
        } = ring_callee(&server).await;
        e_ctl.answer_call(ring_id, Status::Ok).await;
        drop(e_ctl);
        let answer = r_ctl.receive().await;
        let tr = caller_token(into_response(answer));
        drop(r_ctl);
        sleep(Duration::from_millis(500)).await;
        let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
        e_app
            .send(&send_message(1, &notification.callee_token, b""))
            .await
            .expect("init");
        let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
        r_app.send(&send_message(1, &tr, b"")).await.expect("init");
        r_app.expect_send_answer(1, Status::Ok).await;
        e_app.expect_send_answer(1, Status::Ok).await;
        r_app
            .send(&send_message(2, &tr, b"Message #1 to callee."))
            .await
            .expect("send");
        e_app.expect_delivery("Message #1 to callee.").await;
        e_app
            .send(&send_message(
                2,
                &notification.callee_token,
                b"Message #1 to CALLER.",
            ))
            .await
            .expect("send");
        r_app.expect_send_answer(2, Status::Ok).await;
        r_app.expect_delivery("Message #1 to CALLER.").await;
        e_app.expect_send_answer(2, Status::Ok).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05020_callee_never_acknowledges() {
    let options = Options {
        client_idle_secs: 3,
        ..options(Layout::Split)
    };
    let server = TestServer::start(&options).await;
    let mut call = open_call(&server).await;
    let mut delivered = 0;
    let mut closed = false;
    for i in 1..=20u32 {
        let text = format!("Message #{i} to callee.");
        if call
            .r_app
            .send(&send_message(i + 1, &call.tr, text.as_bytes()))
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        match call.e_app.receive_or_closed().await.map(incoming) {
            Some(Incoming::Delivery(_, text)) => {
                assert_eq!(text, format!("Message #{i} to callee.").as_bytes());
                delivered += 1;
            }
            Some(Incoming::Answer(status)) => panic!("the callee sent nothing, yet got {status:?}"),
            None => {
                closed = true;
                break;
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
    assert!(closed, "the silent callee was cut off");
    assert!(delivered < 20);
    // The caller's unacknowledged sends are answered NOT_FOUND, then its connection is closed.
    while let Some(message) = call.r_app.receive_or_closed().await {
        assert_status(&into_response(message), Status::ErrorNotFound);
    }
}

#[tokio::test(start_paused = true)]
async fn ps05022_data_before_the_relay_is_open() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let (_e_ctl, _r_ctl, te, tr) = accepted(&server).await;
        let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
        r_app.send(&send_message(1, &tr, b"")).await.expect("init");
        r_app
            .send(&send_message(2, &tr, b"Message #1 to callee."))
            .await
            .expect("send");
        let first = r_app.receive().await;
        assert!(first.id == 1 || first.id == 2);
        assert_status(&into_response(first), Status::ErrorNotFound);
        let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
        e_app.send(&send_message(1, &te, b"")).await.expect("init");
        e_app.expect_send_answer(1, Status::ErrorNotFound).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05023_caller_is_a_checked_in_customer() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut e_ctl = callee_online(&server).await;
        let caller = Identity::random();
        register(&server, &caller, "Test Type").await;
        let mut r_ctl = check_in(&server, &caller).await;
        assert_status(
            &r_ctl.update_profile(3, &Update::new(&caller)).await,
            Status::Ok,
        );
        r_ctl
            .send(&call_message(4, &e_ctl, SERVICE))
            .await
            .expect("call");
        let (ring_id, notification) = e_ctl.ring().await;
        assert_eq!(notification.caller_public_key, caller.public_key());
        e_ctl.answer_call(ring_id, Status::Ok).await;
        let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
        e_app
            .send(&send_message(1, &notification.callee_token, b""))
            .await
            .expect("init");
        let answer = r_ctl.receive().await;
        assert_eq!(answer.id, 4);
        let tr = caller_token(into_response(answer));
        let mut r_app = Client::tls(server.port(Role::ClAppService)).await;
        r_app.send(&send_message(1, &tr, b"")).await.expect("init");
        r_app.expect_send_answer(1, Status::Ok).await;
        e_app.expect_send_answer(1, Status::Ok).await;
        let te = notification.callee_token;
        for (id, text) in [
            (2, "Message #1 to callee."),
            (3, "Message #2 to callee."),
            (4, "Message #3 to callee."),
        ] {
            r_app
                .send(&send_message(id, &tr, text.as_bytes()))
                .await
                .expect("send");
        }
        e_app.expect_delivery("Message #1 to callee.").await;
        e_app.expect_delivery("Message #2 to callee.").await;
        e_app
            .send(&send_message(2, &te, b"Message #1 to CALLER."))
            .await
            .expect("send");
        e_app.expect_delivery("Message #3 to callee.").await;
        e_app
            .send(&send_message(4, &te, b"Message #2 to CALLER."))
            .await
            .expect("send");
        r_app.expect_send_answer(2, Status::Ok).await;
        r_app.expect_send_answer(3, Status::Ok).await;
        r_app.expect_delivery("Message #1 to CALLER.").await;
        r_app.expect_send_answer(4, Status::Ok).await;
        r_app.expect_delivery("Message #2 to CALLER.").await;
        e_app.expect_send_answer(2, Status::Ok).await;
        e_app.expect_send_answer(4, Status::Ok).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ps05024_one_relay_connection_serves_one_call() {
    for layout in LAYOUTS {
        let server = server(layout).await;
        let mut e_ctl = callee_online(&server).await;
        let mut r1 = caller_verified(&server).await;
        let mut r2 = caller_verified(&server).await;
        r1.send(&call_message(3, &e_ctl, SERVICE))
            .await
            .expect("call 1");
        r2.send(&call_message(3, &e_ctl, SERVICE))
            .await
            .expect("call 2");
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let (ring_id, notification) = e_ctl.ring().await;
            e_ctl.answer_call(ring_id, Status::Ok).await;
            tokens.push(notification);
        }
        let te1 = tokens
            .iter()
            .find(|n| n.caller_public_key == r1.identity.public_key())
            .expect("R1 rang")
            .callee_token
            .clone();
        let te2 = tokens
            .iter()
            .find(|n| n.caller_public_key == r2.identity.public_key())
            .expect("R2 rang")
            .callee_token
            .clone();
        let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
        e_app
            .send(&send_message(1, &te1, b""))
            .await
            .expect("init 1");
        let tr1 = caller_token(into_response(r1.receive().await));
        let mut r1_app = Client::tls(server.port(Role::ClAppService)).await;
        r1_app
            .send(&send_message(1, &tr1, b""))
            .await
            .expect("init");
        r1_app.expect_send_answer(1, Status::Ok).await;
        e_app.expect_send_answer(1, Status::Ok).await;
        r1_app
            .send(&send_message(2, &tr1, b"Message #1 to callee."))
            .await
            .expect("send");
        e_app.expect_delivery("Message #1 to callee.").await;
        sleep(Duration::from_millis(500)).await;
        e_app
            .send(&send_message(2, &te2, b""))
            .await
            .expect("second init");
        e_app.expect_send_answer(2, Status::ErrorNotFound).await;
        // R2's call was torn down with the misuse: its init is refused.
        let tr2 = caller_token(into_response(r2.receive().await));
        let mut r2_app = Client::tls(server.port(Role::ClAppService)).await;
        r2_app
            .send(&send_message(1, &tr2, b""))
            .await
            .expect("init");
        // Either NOT_FOUND or a closed connection is right (PS05024 step 9).
        if let Some(answer) = r2_app.receive_or_closed().await {
            assert_status(&into_response(answer), Status::ErrorNotFound);
        }
        r1_app.expect_send_answer(2, Status::Ok).await;
    }
}
