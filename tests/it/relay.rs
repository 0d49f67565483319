//! Relay behaviour beyond PS05: every teardown path, the 20-message window, CloseCall and the
//! token echo (HEAD proto additions), and the relay limit.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::ps::{
    self, single_request::RequestType as Single, single_response::ResponseType,
};
use iop_profile_server::wire::{Status, frame};
use tokio::time::sleep;

use crate::kit::*;

fn options() -> Options {
    Options {
        timeouts: "call_answer_secs = 2\nrelay_join_secs = 3".into(),
        ..Options::default()
    }
}

#[tokio::test(start_paused = true)]
async fn caller_leaving_before_the_answer_ends_the_call() {
    let server = TestServer::start(&options()).await;
    let Ringing {
        mut e_ctl,
        r_ctl,
        ring_id,
        notification,
    } = ring_callee(&server).await;
    drop(r_ctl);
    sleep(Duration::from_millis(300)).await;
    e_ctl.answer_call(ring_id, Status::Ok).await;
    let mut e_app = Client::tls(server.port(Role::ClAppService)).await;
    e_app
        .send(&send_message(1, &notification.callee_token, b""))
        .await
        .expect("init");
    e_app.expect_send_answer(1, Status::ErrorNotFound).await;
}

#[tokio::test(start_paused = true)]
async fn the_twenty_first_unacknowledged_message_ends_the_relay() {
    let server = TestServer::start(&options()).await;
    let mut call = open_call(&server).await;
    for id in 2..=22u32 {
        call.r_app
            .send(&send_message(id, &call.tr, &id.to_le_bytes()))
            .await
            .expect("send");
    }
    for id in 2..=21u32 {
        let (_, message) = call.e_app.delivery().await;
        assert_eq!(message, id.to_le_bytes());
    }
    call.r_app
        .expect_send_answer(22, Status::ErrorNotFound)
        .await;
    while let Some(message) = call.r_app.receive_or_closed().await {
        assert_status(&into_response(message), Status::ErrorNotFound);
    }
    assert!(call.e_app.is_closed_within(ANSWER_TIMEOUT).await);
}

#[tokio::test(start_paused = true)]
async fn acknowledgements_echo_the_senders_token() {
    let server = TestServer::start(&options()).await;
    let mut call = open_call(&server).await;
    call.r_app
        .send(&send_message(2, &call.tr, b"hello"))
        .await
        .expect("send");
    call.e_app.expect_delivery("hello").await;
    let answer = into_response(call.r_app.receive().await);
    let ResponseType::ApplicationServiceSendMessage(sent) = single_body(answer) else {
        panic!("not a send answer")
    };
    assert_eq!(sent.token, call.tr);
}

fn close_call(token: &[u8]) -> Single {
    Single::CloseCall(ps::CloseCallRequest {
        token: token.to_vec(),
    })
}

#[tokio::test(start_paused = true)]
async fn close_call_by_a_party_ends_the_relay_and_strangers_cannot() {
    let server = TestServer::start(&options()).await;
    let mut call = open_call(&server).await;
    let mut stranger = caller_verified(&server).await;
    assert_status(
        &stranger.single(1, close_call(&call.tr)).await,
        Status::ErrorNotFound,
    );
    assert_status(
        &stranger.single(2, close_call(&[7; 16])).await,
        Status::ErrorNotFound,
    );
    // The callee closes through its control connection.
    let answer = call.e_ctl.single(9, close_call(&call.te)).await;
    assert_status(&answer, Status::Ok);
    let ResponseType::CloseCall(closed) = single_body(answer) else {
        panic!("not CloseCall")
    };
    assert_eq!(closed.token, call.te);
    let bytes = frame::encode(&send_message(2, &call.tr, b"late"));
    call.r_app.assert_closed_after_sending(&bytes).await;
    assert!(call.e_app.is_closed_within(ANSWER_TIMEOUT).await);
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_the_relay_limit_are_busy() {
    let options = Options {
        limits: "max_relays = 1".into(),
        ..options()
    };
    let server = TestServer::start(&options).await;
    let mut e_ctl = callee_online(&server).await;
    let mut r1 = caller_verified(&server).await;
    r1.send(&call_message(3, &e_ctl, SERVICE))
        .await
        .expect("call");
    let _ring = e_ctl.ring().await;
    let mut r2 = caller_verified(&server).await;
    assert_status(
        &r2.call(&call_message(3, &e_ctl, SERVICE)).await,
        Status::ErrorBusy,
    );
}

#[tokio::test(start_paused = true)]
async fn a_stranger_cannot_join_with_a_token_already_in_use() {
    let server = TestServer::start(&options()).await;
    let mut call = open_call(&server).await;
    let mut intruder = Client::tls(server.port(Role::ClAppService)).await;
    intruder
        .send(&send_message(1, &call.tr, b""))
        .await
        .expect("init");
    intruder.expect_send_answer(1, Status::ErrorNotFound).await;
    // The real call goes on.
    call.r_app
        .send(&send_message(2, &call.tr, b"still here"))
        .await
        .expect("send");
    call.e_app.expect_delivery("still here").await;
    call.r_app.expect_send_answer(2, Status::Ok).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_with_calls_in_progress_leaves_nothing_running() {
    let mut server = TestServer::start(&options()).await;
    let ringing = ring_callee(&server).await;
    let open = open_call(&server).await;
    server.stop().await;
    // The database closes only once no task holds the server's state: a timer or a call task
    // that outlived the stop would keep it open, and opening it again would fail.
    let reopened = iop_profile_server::store::Store::open(server.dir.path(), 1 << 20);
    assert!(reopened.is_ok(), "the database is still open after stop");
    drop((ringing, open));
}
