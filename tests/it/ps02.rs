//! PS02: the conversation handshake on the TLS clNonCustomer port (spec/tests/PS02.md).
//! Tests that need hosting (registration, profiles, stats) come with that feature.

use iop_profile_server::crypto::random_bytes;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use prost::Message as _;

use crate::kit::*;

const LAYOUTS: [Layout; 2] = [Layout::Shared, Layout::Split];

async fn non_customer(layout: Layout) -> (TestServer, Client) {
    let server = TestServer::start(&Options::layout(layout)).await;
    let client = Client::tls(server.port(Role::ClNonCustomer)).await;
    (server, client)
}

fn start_request(versions: Vec<Vec<u8>>, key: Vec<u8>, challenge_len: usize) -> Conv {
    Conv::Start(ps::StartConversationRequest {
        supported_versions: versions,
        public_key: key,
        client_challenge: random_bytes::<32>()[..challenge_len].to_vec(),
    })
}

#[tokio::test]
async fn ps02001_ping_over_tls() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let answer = client.ping(1, b"Hello").await;
        assert_status(&answer, Status::Ok);
        let ResponseType::Ping(ping) = single_body(answer) else {
            panic!("not a ping response")
        };
        assert_eq!(ping.payload, b"Hello");
        assert!((ping.clock - now_ms()).abs() <= 600_000);
    }
}

#[tokio::test]
async fn ps02002_list_roles_off_primary_is_bad_role() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let answer = client
            .single(1, Single::ListRoles(ps::ListRolesRequest {}))
            .await;
        assert_status(&answer, Status::ErrorBadRole);
    }
}

#[tokio::test]
async fn ps02003_start_conversation_succeeds() {
    for layout in LAYOUTS {
        let (server, mut client) = non_customer(layout).await;
        let start = client.start_conversation(1).await;
        assert_eq!(start.version, [1, 0, 0]);
        assert_eq!(start.public_key.len(), 32);
        assert_eq!(start.challenge.len(), 32);
        // Clients derive the server's network id from this key.
        assert_eq!(
            iop_profile_server::crypto::sha256(&start.public_key),
            server.network_id()
        );
    }
}

#[tokio::test]
async fn ps02004_no_common_version_is_unsupported() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let versions = vec![vec![255, 255, 255], vec![255, 255, 254]];
        let body = start_request(versions, client.identity.public_key(), 32);
        assert_status(
            &client.conversation(1, Vec::new(), body).await,
            Status::ErrorUnsupported,
        );
    }
}

#[tokio::test]
async fn ps02006_register_hosting_before_start_conversation() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        assert_status(
            &client.register_hosting(1).await,
            Status::ErrorBadConversationStatus,
        );
    }
}

#[tokio::test]
async fn ps02009_verify_identity_succeeds() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        client.start_conversation(1).await;
        assert_status(&client.verify_identity(2).await, Status::Ok);
    }
}

#[tokio::test]
async fn ps02010_verify_identity_with_bad_signatures() {
    for layout in LAYOUTS {
        let server = TestServer::start(&Options::layout(layout)).await;
        let variants: [fn(Vec<u8>) -> Vec<u8>; 3] = [
            |mut valid| {
                valid[0] ^= 0x12;
                valid
            },
            |_| vec![1, 2, 3],
            |_| vec![0x12; 200],
        ];
        for variant in variants {
            let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
            client.start_conversation(1).await;
            let request = ps::VerifyIdentityRequest {
                challenge: client.server_challenge.clone(),
            };
            let signature = variant(client.identity.sign(&request.encode_to_vec()));
            let answer = client
                .conversation(2, signature, Conv::VerifyIdentity(request))
                .await;
            assert_status(&answer, Status::ErrorInvalidSignature);
        }
    }
}

#[tokio::test]
async fn ps02012_verify_identity_without_conversation() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let request = ps::VerifyIdentityRequest {
            challenge: Vec::new(),
        };
        let answer = client
            .conversation(1, Vec::new(), Conv::VerifyIdentity(request))
            .await;
        assert_status(&answer, Status::ErrorBadConversationStatus);
    }
}

#[tokio::test]
async fn ps02014_check_in_on_non_customer_port_is_bad_role() {
    let (_server, mut client) = non_customer(Layout::Split).await;
    client.start_conversation(1).await;
    assert_status(&client.check_in(2).await, Status::ErrorBadRole);
}

fn call_test_service() -> Conv {
    Conv::CallIdentityApplicationService(ps::CallIdentityApplicationServiceRequest {
        identity_network_id: sha256_test(),
        service_name: "Test Service".into(),
    })
}

#[tokio::test]
async fn ps02018_call_without_conversation_is_unauthorized() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let answer = client
            .conversation(1, Vec::new(), call_test_service())
            .await;
        assert_status(&answer, Status::ErrorUnauthorized);
    }
}

#[tokio::test]
async fn ps02019_call_without_verification_is_unauthorized() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        client.start_conversation(1).await;
        let answer = client
            .conversation(2, Vec::new(), call_test_service())
            .await;
        assert_status(&answer, Status::ErrorUnauthorized);
    }
}

#[tokio::test]
async fn ps02022_four_byte_client_challenge_is_invalid() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let body = start_request(vec![vec![1, 0, 0]], client.identity.public_key(), 4);
        assert_invalid(
            &client.conversation(1, Vec::new(), body).await,
            "clientChallenge",
        );
    }
}

#[tokio::test]
async fn ps02025_empty_or_oversized_public_key_twice_on_one_connection() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let empty = start_request(vec![vec![1, 0, 0]], Vec::new(), 32);
        assert_invalid(
            &client.conversation(1, Vec::new(), empty).await,
            "publicKey",
        );
        let oversized = start_request(vec![vec![1, 0, 0]], vec![0x40; 130], 32);
        assert_invalid(
            &client.conversation(2, Vec::new(), oversized).await,
            "publicKey",
        );
        // The conversation was never started, so a proper start still works.
        client.start_conversation(3).await;
    }
}

#[tokio::test]
async fn verify_identity_with_a_wrong_challenge_is_invalid() {
    let (_server, mut client) = non_customer(Layout::Shared).await;
    client.start_conversation(1).await;
    let mut challenge = client.server_challenge.clone();
    challenge[0] ^= 0x12;
    let request = ps::VerifyIdentityRequest { challenge };
    let signature = client.identity.sign(&request.encode_to_vec());
    let answer = client
        .conversation(2, signature, Conv::VerifyIdentity(request))
        .await;
    assert_invalid(&answer, "challenge");
}

#[tokio::test]
async fn second_start_conversation_is_bad_conversation_status() {
    let (_server, mut client) = non_customer(Layout::Shared).await;
    client.start_conversation(1).await;
    let body = start_request(vec![vec![1, 0, 0]], client.identity.public_key(), 32);
    let answer = client.conversation(2, Vec::new(), body).await;
    assert_status(&answer, Status::ErrorBadConversationStatus);
}

#[tokio::test]
async fn server_identity_survives_restart() {
    let mut server = TestServer::start(&Options::default()).await;
    let before = server.network_id();
    server.restart().await;
    assert_eq!(server.network_id(), before);
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let start = client.start_conversation(1).await;
    assert_eq!(
        iop_profile_server::crypto::sha256(&start.public_key),
        before
    );
}

#[tokio::test]
async fn ps02005_register_hosting_succeeds() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        client.start_conversation(1).await;
        assert_status(&client.register_hosting(2).await, Status::Ok);
    }
}

#[tokio::test]
async fn ps02007_register_hosting_quota() {
    for layout in LAYOUTS {
        let options = Options {
            limits: "max_hosted_identities = 1".into(),
            ..Options::layout(layout)
        };
        let server = TestServer::start(&options).await;
        register(&server, &Identity::random(), "Test Type").await;
        let mut second = Client::tls(server.port(Role::ClNonCustomer)).await;
        second.start_conversation(1).await;
        assert_status(
            &second.register_hosting(2).await,
            Status::ErrorQuotaExceeded,
        );
    }
}

#[tokio::test]
async fn ps02015_profile_of_uninitialised_identity() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        client.start_conversation(1).await;
        assert_status(&client.register_hosting(2).await, Status::Ok);
        let id = client.identity.network_id();
        let answer = client.profile_information(3, id, false, false).await;
        assert_status(&answer, Status::ErrorUninitialized);
    }
}

#[tokio::test]
async fn ps02016_profile_of_unknown_identity() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let answer = client
            .profile_information(1, sha256_test(), false, false)
            .await;
        assert_status(&answer, Status::ErrorNotFound);
    }
}

#[tokio::test]
async fn ps02017_update_profile_on_non_customer_port_is_bad_role() {
    let (_server, mut client) = non_customer(Layout::Split).await;
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::Ok);
    assert_status(&client.verify_identity(3).await, Status::Ok);
    let mut update = Update::new(&client.identity);
    update.profile.name = "Test Identity".into();
    update.profile.latitude = 0;
    update.profile.longitude = 0;
    assert_status(
        &client.update_profile(4, &update).await,
        Status::ErrorBadRole,
    );
}

#[tokio::test]
async fn ps02024_profile_stats_on_empty_server() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        let answer = client
            .single(1, Single::ProfileStats(ps::ProfileStatsRequest {}))
            .await;
        assert_status(&answer, Status::Ok);
        let ResponseType::ProfileStats(stats) = single_body(answer) else {
            panic!("not stats")
        };
        assert!(stats.stats.is_empty());
    }
}

#[tokio::test]
async fn ps02020_call_to_unknown_identity() {
    for layout in LAYOUTS {
        let (_server, mut client) = non_customer(layout).await;
        client.start_conversation(1).await;
        assert_status(&client.verify_identity(2).await, Status::Ok);
        let answer = client
            .conversation(3, Vec::new(), call_test_service())
            .await;
        assert_invalid(&answer, "identityNetworkId");
    }
}
