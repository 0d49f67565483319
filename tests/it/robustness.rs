//! Bad and slow peers: the server cuts them off within its timeouts and keeps serving others.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::ps::{self, single_request::RequestType as Single};
use iop_profile_server::wire::{Status, frame, request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

use crate::kit::*;

async fn raw_tcp(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

#[tokio::test(start_paused = true)]
async fn stall_before_tls_handshake_is_cut_off_while_others_are_served() {
    let options = Options::short_idle(Layout::ClientsApart);
    let server = TestServer::start(&options).await;
    let port = server.port(Role::ClNonCustomer);
    let mut stalled = Client::over_tcp(raw_tcp(port).await);
    let mut other = Client::tls(port).await;
    assert_status(&other.ping(1, b"x").await, Status::Ok);
    let limit = Duration::from_secs(options.client_idle_secs) + IDLE_MARGIN;
    assert!(
        stalled.is_closed_within(limit).await,
        "silent pre-handshake connection closed"
    );
    // A fresh client is still served.
    let mut fresh = Client::tls(port).await;
    assert_status(&fresh.ping(2, b"y").await, Status::Ok);
}

#[tokio::test(start_paused = true)]
async fn connections_beyond_the_limit_wait_until_slots_free_up() {
    let mut options = Options::short_idle(Layout::Shared);
    options.limits = "max_connections = 3".into();
    let server = TestServer::start(&options).await;
    let port = server.port(Role::Primary);
    // Three silent connections take every slot.
    let mut hogs = Vec::new();
    for _ in 0..3 {
        hogs.push(Client::plain(port).await);
    }
    sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut extra = Client::plain(port).await;
    extra
        .send(&request::single(
            7,
            Single::Ping(ps::PingRequest {
                payload: b"late".to_vec(),
            }),
        ))
        .await
        .expect("send");
    // The fourth is not served while the three hold their slots...
    let idle = Duration::from_secs(options.server_idle_secs);
    for hog in &mut hogs {
        assert!(
            hog.is_closed_within(idle + IDLE_MARGIN).await,
            "silent hog is cut off"
        );
    }
    // ...and is answered once the idle timeout freed them.
    let answer = into_response(extra.receive().await);
    assert_status(&answer, Status::Ok);
    assert!(
        started.elapsed() >= idle.saturating_sub(Duration::from_millis(500)),
        "answered only after slots freed"
    );
}

#[tokio::test(start_paused = true)]
async fn several_requests_in_flight_are_answered_with_their_ids() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let mut batch = Vec::new();
    for id in [5, 900, 3] {
        let ping = request::single(
            id,
            Single::Ping(ps::PingRequest {
                payload: id.to_le_bytes().to_vec(),
            }),
        );
        batch.extend(frame::encode(&ping));
    }
    client.send_raw(&batch).await.expect("send");
    for id in [5u32, 900, 3] {
        let answer = client.receive().await;
        assert_eq!(answer.id, id);
        let ps::single_response::ResponseType::Ping(ping) = single_body(into_response(answer))
        else {
            panic!("not a ping");
        };
        assert_eq!(ping.payload, id.to_le_bytes());
    }
}

#[tokio::test(start_paused = true)]
async fn unparsable_body_is_a_violation_with_the_unknown_id() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    client
        .send_raw(&[0x0D, 3, 0, 0, 0, 0x12, 0x7F, 0x00])
        .await
        .expect("send");
    let answer = client.receive().await;
    assert_eq!(answer.id, 0x0BAD_C0DE);
    assert_status(&into_response(answer), Status::ErrorProtocolViolation);
    assert!(client.is_closed_within(ANSWER_TIMEOUT).await);
}

#[tokio::test(start_paused = true)]
async fn garbage_connections_do_not_disturb_the_server() {
    let server = TestServer::start(&Options::default()).await;
    let primary = server.port(Role::Primary);
    let tls_port = server.port(Role::ClNonCustomer);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..40 {
        let mut junk = vec![0u8; 1 + (round * 37) % 300];
        for byte in &mut junk {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed.to_le_bytes()[0];
        }
        if round % 2 == 0 {
            junk[0] = 0x0D;
        }
        let port = if round % 3 == 0 { tls_port } else { primary };
        let mut socket = raw_tcp(port).await;
        let _ = socket.write_all(&junk).await;
        drop(socket);
    }
    let mut client = Client::plain(primary).await;
    assert_status(&client.ping(1, b"alive").await, Status::Ok);
    let mut tls = Client::tls(tls_port).await;
    assert_status(&tls.ping(1, b"alive").await, Status::Ok);
}

#[tokio::test(start_paused = true)]
async fn large_frames_wait_for_the_in_flight_budget() {
    let mut options = Options::short_idle(Layout::Shared);
    options.limits = "max_inflight_bytes = 1048576".into();
    let server = TestServer::start(&options).await;
    let port = server.port(Role::Primary);
    // A announces a 1,000,000-byte frame and stalls: its bytes are reserved.
    let mut hog = Client::plain(port).await;
    hog.send_raw(&[0x0D, 0x40, 0x42, 0x0F, 0x00, 0x12])
        .await
        .expect("send");
    // B arrives well after A, so A's idle deadline comes long before B's budget wait ends.
    sleep(Duration::from_millis(1500)).await;
    // B sends a 100 KB ping: it does not fit next to A's reservation until A is cut off.
    let mut big = Client::plain(port).await;
    let started = Instant::now();
    let ping = request::single(
        1,
        Single::Ping(ps::PingRequest {
            payload: vec![1; 100_000],
        }),
    );
    big.send(&ping).await.expect("send");
    let idle = Duration::from_secs(options.server_idle_secs);
    assert!(
        hog.is_closed_within(idle + IDLE_MARGIN).await,
        "stalled frame is cut off"
    );
    let answer = into_response(big.receive().await);
    assert_status(&answer, Status::Ok);
    assert!(
        started.elapsed() >= idle.saturating_sub(Duration::from_secs(2)),
        "B waited for A's budget"
    );
}

#[tokio::test(start_paused = true)]
async fn busy_connections_still_end_at_session_max() {
    let options = Options {
        timeouts: "session_max_secs = 2".into(),
        ..Options::default()
    };
    let server = TestServer::start(&options).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let started = Instant::now();
    let mut id = 0;
    // Keep the connection busy; it must still be closed after two seconds.
    let closed = loop {
        id += 1;
        if client
            .send(&request::single(
                id,
                Single::Ping(ps::PingRequest::default()),
            ))
            .await
            .is_err()
        {
            break true;
        }
        if client.receive_or_closed().await.is_none() {
            break true;
        }
        sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break false;
        }
    };
    assert!(closed, "connection outlived session_max_secs");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}
