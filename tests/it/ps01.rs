//! PS01: the plain-TCP primary port (spec/tests/PS01.md).

use std::collections::HashSet;

use iop_profile_server::role::Role;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use iop_profile_server::wire::{Status, request};

use crate::kit::*;

async fn primary() -> (TestServer, Client) {
    let server = TestServer::start(&Options::default()).await;
    let client = Client::plain(server.port(Role::Primary)).await;
    (server, client)
}

#[tokio::test]
async fn ps01001_ping_on_primary() {
    let (_server, mut client) = primary().await;
    let answer = client.ping(1234, b"Hello").await;
    assert_status(&answer, Status::Ok);
    let ResponseType::Ping(ping) = single_body(answer) else {
        panic!("not a ping response")
    };
    assert_eq!(ping.payload, b"Hello");
    assert!(
        (ping.clock - now_ms()).abs() <= 600_000,
        "clock within 10 minutes"
    );
}

#[tokio::test]
async fn ps01002_ping_with_two_byte_version_is_a_violation() {
    let (_server, mut client) = primary().await;
    let mut bad = request::single(
        1,
        Single::Ping(ps::PingRequest {
            payload: b"Hello".to_vec(),
        }),
    );
    if let Some(ps::message::MessageType::Request(ps::Request {
        conversation_type: Some(ps::request::ConversationType::SingleRequest(single)),
    })) = &mut bad.message_type
    {
        single.version = vec![1, 0];
    }
    let answer = client.call(&bad).await;
    assert_status(&answer, Status::ErrorProtocolViolation);
    assert_eq!(answer.details, "version");
    let ping = request::single(
        2,
        Single::Ping(ps::PingRequest {
            payload: b"Hello".to_vec(),
        }),
    );
    client
        .assert_closed_after_sending(&iop_profile_server::wire::frame::encode(&ping))
        .await;
}

/// ListRoles on primary: one entry per role, each with its configured port.
async fn list_roles_matches_layout(layout: Layout) {
    let server = TestServer::start(&Options::layout(layout)).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let answer = client
        .single(1, Single::ListRoles(ps::ListRolesRequest {}))
        .await;
    assert_status(&answer, Status::Ok);
    let ResponseType::ListRoles(list) = single_body(answer) else {
        panic!("not ListRoles")
    };
    assert_eq!(list.roles.len(), 5);
    let mut seen = HashSet::new();
    for entry in &list.roles {
        let role = Role::ALL
            .into_iter()
            .find(|r| r.wire_value() == entry.role)
            .expect("known role");
        assert!(seen.insert(role), "{role} listed twice");
        assert!(entry.is_tcp);
        assert_eq!(entry.is_tls, role != Role::Primary);
        assert_eq!(entry.port, u32::from(server.port(role)));
    }
    let primary_port = server.port(Role::Primary);
    assert!(
        list.roles
            .iter()
            .filter(|e| e.port == u32::from(primary_port))
            .count()
            == 1
    );
}

#[tokio::test]
async fn ps01004_list_roles_returns_the_full_role_map() {
    list_roles_matches_layout(Layout::Shared).await;
    list_roles_matches_layout(Layout::Split).await;
}

#[tokio::test]
async fn ps01005_conversation_starts_on_primary_but_register_hosting_is_refused() {
    let (_server, mut client) = primary().await;
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01006_check_in_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    client.start_conversation(1).await;
    assert_status(&client.check_in(2).await, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01007_verify_identity_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    client.start_conversation(1).await;
    assert_status(&client.verify_identity(2).await, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01008_get_profile_information_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::GetProfileInformationRequest {
        identity_network_id: client.identity.network_id(),
        ..Default::default()
    };
    let answer = client
        .single(1, Single::GetProfileInformation(request))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01009_call_on_primary_without_conversation_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::CallIdentityApplicationServiceRequest {
        identity_network_id: sha256_test(),
        service_name: "Test Service".into(),
    };
    let answer = client
        .conversation(1, Vec::new(), Conv::CallIdentityApplicationService(request))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01011_send_message_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::ApplicationServiceSendMessageRequest {
        token: sha256_test(),
        message: b"Test message".to_vec(),
    };
    let answer = client
        .single(1, Single::ApplicationServiceSendMessage(request))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01012_client_sent_receive_notification_is_a_violation() {
    let (_server, mut client) = primary().await;
    let request = ps::ApplicationServiceReceiveMessageNotificationRequest {
        message: b"Test message".to_vec(),
    };
    let answer = client
        .single(
            1,
            Single::ApplicationServiceReceiveMessageNotification(request),
        )
        .await;
    assert_status(&answer, Status::ErrorProtocolViolation);
    let ping = request::single(
        2,
        Single::Ping(ps::PingRequest {
            payload: b"Hello".to_vec(),
        }),
    );
    client
        .assert_closed_after_sending(&iop_profile_server::wire::frame::encode(&ping))
        .await;
}

#[tokio::test]
async fn ps01014_profile_stats_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let answer = client
        .single(1, Single::ProfileStats(ps::ProfileStatsRequest {}))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01015_profile_search_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::ProfileSearchRequest {
        include_hosted_only: false,
        include_thumbnail_images: true,
        max_response_record_count: 100,
        max_total_record_count: 1000,
        latitude: 0x7FFF_FFFF,
        longitude: 0x7FFF_FFFF,
        ..Default::default()
    };
    let answer = client.single(1, Single::ProfileSearch(request)).await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01017_add_related_identity_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::AddRelatedIdentityRequest::default();
    let answer = client
        .conversation(1, Vec::new(), Conv::AddRelatedIdentity(request))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01018_remove_related_identity_on_primary_is_bad_role() {
    let (_server, mut client) = primary().await;
    let request = ps::RemoveRelatedIdentityRequest::default();
    let answer = client
        .conversation(1, Vec::new(), Conv::RemoveRelatedIdentity(request))
        .await;
    assert_status(&answer, Status::ErrorBadRole);
}

#[tokio::test]
async fn ps01019_neighborhood_requests_on_primary_are_bad_role() {
    let (_server, mut client) = primary().await;
    let requests = [
        Conv::StartNeighborhoodInitialization(ps::StartNeighborhoodInitializationRequest {
            primary_port: 1,
            sr_neighbor_port: 1,
            ip_address: vec![127, 0, 0, 1],
        }),
        Conv::FinishNeighborhoodInitialization(ps::FinishNeighborhoodInitializationRequest {}),
        Conv::NeighborhoodSharedProfileUpdate(ps::NeighborhoodSharedProfileUpdateRequest::default()),
        Conv::StopNeighborhoodUpdates(ps::StopNeighborhoodUpdatesRequest {}),
    ];
    for (id, request) in (1..).zip(requests) {
        let answer = client.conversation(id, Vec::new(), request).await;
        assert_status(&answer, Status::ErrorBadRole);
    }
    // The connection survived all four.
    assert_status(&client.ping(5, b"still here").await, Status::Ok);
}
