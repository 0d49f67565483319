//! PS03: the clCustomer port on its own (spec/tests/PS03.md).

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, conversation_request::RequestType as Conv};

use crate::kit::*;

async fn customer_port(layout: Layout) -> (TestServer, Client) {
    let server = TestServer::start(&Options::layout(layout)).await;
    let client = Client::tls(server.port(Role::ClCustomer)).await;
    (server, client)
}

#[tokio::test]
async fn ps03002_register_hosting_on_customer_port_is_bad_role() {
    let (_server, mut client) = customer_port(Layout::Split).await;
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps03003_verify_identity_on_customer_port_is_bad_role() {
    let (_server, mut client) = customer_port(Layout::Split).await;
    client.start_conversation(1).await;
    assert_status(&client.verify_identity(2).await, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps03004_check_in_without_conversation() {
    for layout in [Layout::Shared, Layout::Split] {
        let (_server, mut client) = customer_port(layout).await;
        let request = ps::CheckInRequest {
            challenge: sha256_test(),
        };
        let answer = client
            .conversation(1, Vec::new(), Conv::CheckIn(request))
            .await;
        assert_status(&answer, Status::ErrorBadConversationStatus);
    }
}

#[tokio::test]
async fn ps03005_add_related_identity_before_check_in() {
    for layout in [Layout::Shared, Layout::Split] {
        let (_server, mut client) = customer_port(layout).await;
        let request = ps::AddRelatedIdentityRequest::default();
        let answer = client
            .conversation(1, Vec::new(), Conv::AddRelatedIdentity(request))
            .await;
        assert_status(&answer, Status::ErrorUnauthorized);
    }
}
