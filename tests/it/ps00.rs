//! PS00: transport robustness (spec/tests/PS00.md).

use iop_profile_server::role::Role;
use iop_profile_server::wire::ps::{PingRequest, single_request::RequestType};
use iop_profile_server::wire::{Status, frame, request};
use tokio::time::sleep;

use crate::kit::*;

/// PS00 "Ping frame F": id 1, version 1.0.0, payload "test".
const PING_F: [u8; 26] = [
    0x0D, 0x15, 0, 0, 0, 0x12, 0x13, 0x08, 0x01, 0x12, 0x0F, 0x0A, 0x0D, 0x0A, 0x03, 0x01, 0x00,
    0x00, 0x12, 0x06, 0x0A, 0x04, 0x74, 0x65, 0x73, 0x74,
];

async fn expect_violation_then_closed(client: &mut Client) {
    let answer = into_response(client.receive().await);
    assert_status(&answer, Status::ErrorProtocolViolation);
    assert!(
        client.is_closed_within(ANSWER_TIMEOUT).await,
        "closed after the violation"
    );
}

#[tokio::test(start_paused = true)]
async fn ps00001_frame_without_marker_is_a_violation() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    client
        .send_raw(&[0x46, 0x84, 0x21, 0x46, 0x87])
        .await
        .expect("send");
    expect_violation_then_closed(&mut client).await;
}

#[tokio::test(start_paused = true)]
async fn ps00003_silent_primary_connection_is_closed() {
    let options = Options::short_idle(Layout::Shared);
    let server = TestServer::start(&options).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    sleep(std::time::Duration::from_secs(options.server_idle_secs) + IDLE_MARGIN).await;
    client.assert_closed_after_sending(&PING_F).await;
}

#[tokio::test(start_paused = true)]
async fn ps00004_primary_stalled_inside_header_is_closed() {
    let options = Options::short_idle(Layout::Shared);
    let server = TestServer::start(&options).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    client.send_raw(&PING_F[..4]).await.expect("send");
    sleep(std::time::Duration::from_secs(options.server_idle_secs) + IDLE_MARGIN).await;
    client.assert_closed_after_sending(&PING_F[4..]).await;
}

/// PS00006–PS00008: a TLS client port (no sr_neighbor) that sees `prefix` and then silence.
async fn client_port_stall(prefix: usize) {
    let options = Options::short_idle(Layout::ClientsApart);
    let server = TestServer::start(&options).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.send_raw(&PING_F[..prefix]).await.expect("send");
    sleep(std::time::Duration::from_secs(options.client_idle_secs) + IDLE_MARGIN).await;
    client.assert_closed_after_sending(&PING_F[prefix..]).await;
}

#[tokio::test(start_paused = true)]
async fn ps00006_silent_tls_client_connection_is_closed() {
    client_port_stall(0).await;
}

#[tokio::test(start_paused = true)]
async fn ps00007_tls_client_stalled_inside_header_is_closed() {
    client_port_stall(4).await;
}

#[tokio::test(start_paused = true)]
async fn ps00008_tls_client_stalled_after_one_body_byte_is_closed() {
    client_port_stall(6).await;
}

#[tokio::test(start_paused = true)]
async fn ps00010_frame_over_one_mebibyte_is_a_violation() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let big = request::single(
        1234,
        RequestType::Ping(PingRequest {
            payload: vec![b'a'; 1_048_576],
        }),
    );
    let bytes = frame::encode(&big);
    assert_eq!(bytes.len(), 1_048_609);
    assert_eq!(bytes[..5], [0x0D, 0x1C, 0x00, 0x10, 0x00]);
    // The server may give up while the frame is still being written.
    let _ = client.send_raw(&bytes).await;
    expect_violation_then_closed(&mut client).await;
    let hello = request::single(
        1,
        RequestType::Ping(PingRequest {
            payload: b"Hello".to_vec(),
        }),
    );
    client
        .assert_closed_after_sending(&frame::encode(&hello))
        .await;
}
