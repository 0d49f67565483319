//! `iop-profile-server probe`: the binary checks a running server from outside, and names the
//! port that fails and why.

use std::process::Output;

use iop_profile_server::role::Role;
use iop_profile_server::wire::frame;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv,
    conversation_response::ResponseType as ConvResp, single_request::RequestType as Single,
    single_response::ResponseType as SingleResp,
};
use iop_profile_server::wire::{Status, response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::kit::*;

/// Runs `probe` with `args` off the async runtime.
async fn probe(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        server_command()
            .arg("probe")
            .args(&args)
            .output()
            .expect("binary runs")
    })
    .await
    .expect("probe finished")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn probe_passes_a_running_server_and_names_every_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(dir.path());
    let out = server_command()
        .args(["probe", &format!("127.0.0.1:{}", server.primary)])
        .output()
        .expect("binary runs");
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}");
    let primary_line = format!("port {:<5} (primary)  ok  plain", server.primary);
    assert!(text.contains(&primary_line), "{text}");
    let tls_line = text
        .lines()
        .find(|line| line.starts_with(&format!("port {:<5}", server.tls)))
        .unwrap_or_else(|| panic!("no line for the TLS port in:\n{text}"));
    assert!(tls_line.contains("sr_neighbor"), "{tls_line}");
    assert!(
        tls_line.contains("ok  TLSv1_3 TLS13_CHACHA20_POLY1305_SHA256"),
        "{tls_line}"
    );
    let verdict = text.lines().last().unwrap_or_default();
    assert!(verdict.ends_with(": every port answers"), "{text}");
    // The id the probe proved is the one `init` prints for the same data directory.
    let config = dir.path().join("config.toml").display().to_string();
    assert!(server.terminate().success());
    let init = server_command()
        .args(["init", "--config", &config])
        .output()
        .expect("binary runs");
    let network_id = stdout_of(&init).trim().to_owned();
    assert_eq!(network_id.len(), 64, "{network_id}");
    assert!(verdict.contains(&network_id), "{verdict} vs {network_id}");
}

#[test]
fn probe_of_a_closed_primary_port_fails() {
    let port = free_port();
    let out = server_command()
        .args(["probe", &format!("127.0.0.1:{port}")])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout_of(&out);
    assert!(text.contains("FAILED: connection failed"), "{text}");
    assert!(text.ends_with("1 of 1 ports failed\n"), "{text}");
}

/// A primary port that answers ListRoles with `roles` and proves `identity` in
/// StartConversation; anything that is not a frame closes the connection.
async fn fake_primary(identity: Identity, roles: Vec<ps::ServerRole>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_fake(stream, identity.clone(), roles.clone()));
        }
    });
    port
}

async fn serve_fake(mut stream: TcpStream, identity: Identity, roles: Vec<ps::ServerRole>) {
    loop {
        let mut header = [0u8; frame::HEADER_LEN];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let Ok(len) = frame::body_len(&header) else {
            return;
        };
        let mut body = vec![0; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let Ok(message) = frame::decode_body::<ps::Message>(&body) else {
            return;
        };
        let Some(ps::message::MessageType::Request(request)) = message.message_type else {
            return;
        };
        let answer = match request.conversation_type {
            Some(ps::request::ConversationType::SingleRequest(single)) => match single.request_type
            {
                Some(Single::ListRoles(_)) => response::single(
                    message.id,
                    vec![1, 0, 0],
                    SingleResp::ListRoles(ps::ListRolesResponse {
                        roles: roles.clone(),
                    }),
                ),
                _ => response::error(message.id, Status::ErrorUnsupported, ""),
            },
            Some(ps::request::ConversationType::ConversationRequest(conversation)) => {
                match conversation.request_type {
                    Some(Conv::Start(start)) => response::conversation(
                        message.id,
                        identity.sign(&start.client_challenge),
                        ConvResp::Start(ps::StartConversationResponse {
                            version: vec![1, 0, 0],
                            public_key: identity.public_key(),
                            challenge: vec![7; 32],
                            client_challenge: start.client_challenge,
                        }),
                    ),
                    _ => response::error(message.id, Status::ErrorUnsupported, ""),
                }
            }
            None => return,
        };
        if stream.write_all(&frame::encode(&answer)).await.is_err() {
            return;
        }
    }
}

fn role(role: Role, port: u16, is_tls: bool) -> ps::ServerRole {
    ps::ServerRole {
        role: role.wire_value(),
        port: u32::from(port),
        is_tcp: true,
        is_tls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_a_closed_port_and_a_plain_port_where_tls_is_expected() {
    let server = TestServer::start(&Options::default()).await;
    let closed = free_port();
    // The real server's primary port speaks the protocol without TLS.
    let plain = server.port(Role::Primary);
    let identity = Identity::random();
    let roles = vec![
        role(Role::SrNeighbor, closed, true),
        role(Role::ClNonCustomer, plain, true),
    ];
    let primary = fake_primary(identity.clone(), roles).await;
    let out = probe(vec![format!("127.0.0.1:{primary}")]).await;
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = |port: u16| {
        text.lines()
            .find(|line| line.starts_with(&format!("port {port:<5}")))
            .unwrap_or_else(|| panic!("no line for port {port} in:\n{text}"))
            .to_owned()
    };
    let id = hex::encode(identity.network_id());
    assert!(line(primary).contains("ok  plain"), "{text}");
    assert!(line(primary).ends_with(&id), "{text}");
    let refused = line(closed);
    assert!(
        refused.contains("(sr_neighbor)  FAILED: connection failed"),
        "{refused}"
    );
    let not_tls = line(plain);
    assert!(not_tls.contains("(cl_non_customer)  FAILED: "), "{not_tls}");
    assert!(not_tls.contains("TLS handshake"), "{not_tls}");
    assert!(text.ends_with("2 of 3 ports failed\n"), "{text}");
}

#[tokio::test]
async fn issue27_a_probe_is_counted_as_closed_by_its_peer_and_a_tls_port_is_named_as_such() {
    let port = free_port();
    let server = TestServer::start(&Options {
        extra: format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"),
        ..Options::default()
    })
    .await;
    let primary = server.port(Role::Primary);
    let out = probe(vec![format!("127.0.0.1:{primary}")]).await;
    assert!(out.status.success(), "{}", stdout_of(&out));
    // Both connections closed cleanly: nothing an alert on I/O errors would count.
    let mut closed = String::new();
    for _ in 0..50 {
        let body = crate::metrics::get(port, "/metrics").await.2;
        closed = body
            .lines()
            .filter(|line| line.starts_with("iop_connections_closed_total{"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n");
        if closed.contains("reason=\"peer_closed\"} 2") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed.contains("reason=\"peer_closed\"} 2"), "{closed}");
    assert!(closed.contains("reason=\"io_error\"} 0"), "{closed}");

    let tls = server.port(Role::ClNonCustomer);
    let out = probe(vec![format!("127.0.0.1:{tls}")]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!(
            "port {tls} speaks TLS, so it is not a primary port"
        )),
        "{text}"
    );
}
