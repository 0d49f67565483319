//! Abuse a single client can try: frames that decode into far more memory than they take on the
//! wire, frames that announce a body and never send it, and messages at the edges of the
//! framing rules. The node must refuse them cheaply and go on serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::{UNKNOWN_MESSAGE_ID, frame, ps, request};
use tokio::time::Instant;

use crate::kit::{
    Client, Identity, Layout, Options, ServerProcess, TestServer, assert_invalid, assert_status,
    empty_update_items, into_response, register, status_kib, unsolicited_search_results,
};
use iop_profile_server::wire::Status;

/// Sends `frame` and reads the one answer the server sends before closing.
fn answer_to(port: u16, frame: &[u8]) -> ps::Message {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(frame).expect("send");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let (message, _) = frame::split::<ps::Message>(&received)
        .expect("a valid frame")
        .expect("a whole frame");
    message
}

fn ping_works(port: u16) -> bool {
    let ping = request::single(
        9,
        ps::single_request::RequestType::Ping(ps::PingRequest {
            payload: b"still here".to_vec(),
        }),
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(&frame::encode(&ping)).expect("send");
    let mut header = [0; frame::HEADER_LEN];
    if stream.read_exact(&mut header).is_err() {
        return false;
    }
    let mut body = vec![0; frame::body_len(&header).expect("valid header")];
    stream.read_exact(&mut body).is_ok()
}

#[test]
fn frames_that_decode_into_far_more_memory_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 64 MiB of data memory, as on the smallest board: one decoded frame used to need 130 MB.
    let mut server = ServerProcess::start_with_data_limit(dir.path(), 64 << 20);
    let pid = server.child.id();
    let before = status_kib(pid, "VmRSS:");
    for frame in [empty_update_items(), unsolicited_search_results()] {
        assert!(frame.len() <= frame::MAX_FRAME_LEN);
        let answer = answer_to(server.primary, &frame);
        assert_eq!(answer.id, UNKNOWN_MESSAGE_ID);
        assert_status(&into_response(answer), Status::ErrorProtocolViolation);
    }
    assert!(ping_works(server.primary));
    let peak_growth = status_kib(pid, "VmHWM:").saturating_sub(before);
    assert!(
        peak_growth <= 16 * 1024,
        "peak resident memory grew by {peak_growth} KiB"
    );
    assert!(server.terminate().success());
}

/// A server whose whole in-flight budget is one maximal frame.
fn tight_budget() -> Options {
    Options {
        limits: "max_inflight_bytes = 1048576".into(),
        ..Options::layout(Layout::Shared)
    }
}

async fn assert_ping_answered_while_held(server: &TestServer, holders: &mut [Client]) {
    let started = Instant::now();
    let mut client = Client::plain(server.port(Role::Primary)).await;
    assert_status(&client.ping(1, b"through").await, Status::Ok);
    let idle = Duration::from_secs(Options::default().client_idle_secs);
    assert!(
        started.elapsed() < idle,
        "answered only after the holders were cut off"
    );
    for holder in holders {
        assert!(
            !holder.is_closed_within(Duration::from_millis(10)).await,
            "the holder is still connected"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn frames_announced_and_never_sent_do_not_stall_other_clients() {
    let server = TestServer::start(&tight_budget()).await;
    let mut holders = Vec::new();
    for _ in 0..17 {
        let mut holder = Client::plain(server.port(Role::Primary)).await;
        holder
            .send_raw(&[0x0D, 0xFB, 0xFF, 0x0F, 0x00])
            .await
            .expect("send");
        holders.push(holder);
    }
    assert_ping_answered_while_held(&server, &mut holders).await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_holding_the_whole_budget_does_not_stall_small_requests() {
    let server = TestServer::start(&tight_budget()).await;
    let mut holder = Client::plain(server.port(Role::Primary)).await;
    let announced = frame::MAX_BODY_LEN;
    let mut bytes = vec![0x0D];
    bytes.extend_from_slice(&u32::try_from(announced).expect("fits").to_le_bytes());
    bytes.resize(frame::HEADER_LEN + announced - 1, 0x00);
    holder.send_raw(&bytes).await.expect("send");
    assert_ping_answered_while_held(&server, &mut [holder]).await;
}

#[tokio::test]
async fn a_ping_whose_echo_would_exceed_a_frame_is_invalid() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    // The largest payload that still fits in a request frame.
    let overhead = frame::encode(&request::single(
        u32::MAX,
        ps::single_request::RequestType::Ping(ps::PingRequest {
            payload: vec![0; 1 << 19],
        }),
    ))
    .len()
        - (1 << 19);
    let payload = vec![0x5A; frame::MAX_FRAME_LEN - overhead];
    let answer = client.ping(u32::MAX, &payload).await;
    assert_invalid(&answer, "payload");
    assert_status(&client.ping(2, b"small").await, Status::Ok);
}

#[tokio::test(start_paused = true)]
async fn one_port_can_hold_every_connection_slot() {
    let options = Options {
        limits: "max_connections = 3".into(),
        ..Options::layout(Layout::Shared)
    };
    let server = TestServer::start(&options).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::plain(server.port(Role::Primary)).await);
    }
    for (id, client) in (1..).zip(&mut clients) {
        client
            .send(&request::single(
                id,
                ps::single_request::RequestType::Ping(ps::PingRequest::default()),
            ))
            .await
            .expect("send");
        let answer = client.receive_within(Duration::from_secs(5)).await;
        assert_status(&into_response(answer), Status::Ok);
    }
}

/// Options with a per-client limit that applies to this test's loopback clients too.
fn limited(limits: &str) -> Options {
    Options {
        limits: format!("{limits}\nexempt_loopback = false"),
        ..Options::layout(Layout::Shared)
    }
}

#[tokio::test]
async fn connections_over_the_per_address_share_are_closed() {
    let server = TestServer::start(&limited("max_connections_per_address = 2")).await;
    let port = server.port(Role::Primary);
    let mut first = Client::plain(port).await;
    let mut second = Client::plain(port).await;
    assert_status(&first.ping(1, b"a").await, Status::Ok);
    assert_status(&second.ping(1, b"b").await, Status::Ok);
    let mut third = Client::plain(port).await;
    assert!(third.is_closed_within(Duration::from_secs(5)).await);
    drop(first);
    // The closed connection's share comes back once the server has seen it go.
    let mut answered = false;
    for _ in 0..50 {
        let mut again = Client::plain(port).await;
        let _ = again
            .send(&request::single(
                2,
                ps::single_request::RequestType::Ping(ps::PingRequest::default()),
            ))
            .await;
        if again.receive_or_closed().await.is_some() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a freed share is given to a new connection");
    assert_status(&second.ping(2, b"b").await, Status::Ok);
}

#[tokio::test]
async fn registrations_over_the_hourly_share_are_busy() {
    let server = TestServer::start(&limited("registrations_per_address_per_hour = 2")).await;
    for identity in [Identity::random(), Identity::random()] {
        register(&server, &identity, "Test Type").await;
    }
    let mut third = Client::tls(server.port(Role::ClNonCustomer)).await;
    third.start_conversation(1).await;
    assert_status(&third.register_hosting(2).await, Status::ErrorBusy);
}

#[tokio::test(start_paused = true)]
async fn searches_over_the_per_second_rate_are_busy() {
    let server = TestServer::start(&limited("searches_per_connection_per_sec = 2")).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let search = || {
        ps::single_request::RequestType::ProfileSearch(ps::ProfileSearchRequest {
            max_response_record_count: 10,
            max_total_record_count: 10,
            latitude: 0x7FFF_FFFF,
            ..Default::default()
        })
    };
    assert_status(&client.single(1, search()).await, Status::Ok);
    assert_status(&client.single(2, search()).await, Status::Ok);
    assert_status(&client.single(3, search()).await, Status::ErrorBusy);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_status(&client.single(4, search()).await, Status::Ok);
}

/// A plain connection from another loopback address (127.0.0.2): another household.
async fn from_other_address(port: u16) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    Client::over_tcp(tcp)
}

/// Sends the header and all but the last byte of a maximal frame, and holds it.
async fn hold_almost_a_frame(client: &mut Client) {
    let announced = frame::MAX_BODY_LEN;
    let mut bytes = vec![0x0D];
    bytes.extend_from_slice(&u32::try_from(announced).expect("fits").to_le_bytes());
    bytes.resize(frame::HEADER_LEN + announced - 1, 0x00);
    client.send_raw(&bytes).await.expect("send");
}

#[tokio::test(start_paused = true)]
async fn one_address_cannot_hold_the_whole_in_flight_budget() {
    let options = limited("max_inflight_bytes = 2097152\nmax_inflight_bytes_per_address = 1048576");
    let server = TestServer::start(&options).await;
    let port = server.port(Role::Primary);
    // One address tries to hold the whole budget with two frames it never finishes.
    let mut holders = [Client::plain(port).await, Client::plain(port).await];
    for holder in &mut holders {
        hold_almost_a_frame(holder).await;
    }
    // On the paused clock this returns once the server has read all it can.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Another address still gets a large frame through, long before the holders' idle timeout.
    let mut other = from_other_address(port).await;
    let payload = vec![0x42; 600 * 1024];
    let answered = tokio::time::timeout(Duration::from_secs(10), other.ping(1, &payload)).await;
    assert_status(
        &answered.expect("answered while the budget is held"),
        Status::Ok,
    );
    for holder in &mut holders {
        assert!(
            !holder.is_closed_within(Duration::from_millis(10)).await,
            "answered while the holders still hold their frames"
        );
    }
}
