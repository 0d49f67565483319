//! Hosting behaviour beyond the public conformance tests: every RegisterHosting rule, the
//! single authenticated connection, services, plans, images on disk, restart and crash safety.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use prost::Message as _;

use crate::kit::*;

async fn started_non_customer(server: &TestServer) -> Client {
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.start_conversation(1).await;
    client
}

fn contract(client: &Client, start_time: i64, identity_type: &str) -> ps::HostingPlanContract {
    ps::HostingPlanContract {
        plan_id: Vec::new(),
        identity_public_key: client.identity.public_key(),
        start_time,
        identity_type: identity_type.into(),
    }
}

#[tokio::test]
async fn register_hosting_rules_in_order() {
    let server = TestServer::start(&Options::default()).await;
    let mut client = started_non_customer(&server).await;
    let good = contract(&client, now_ms(), "Test Type");

    let signature = Identity::random().sign(&good.encode_to_vec());
    let request = ps::RegisterHostingRequest {
        contract: Some(good.clone()),
    };
    let answer = client
        .conversation(2, signature, Conv::RegisterHosting(request))
        .await;
    assert_status(&answer, Status::ErrorInvalidSignature);

    let mut other_key = good.clone();
    other_key.identity_public_key = Identity::random().public_key();
    assert_invalid(
        &client.register_contract(3, other_key).await,
        "contract.identityPublicKey",
    );

    for start in [1_234_567_890_123_456_789, now_ms() - 2 * 3_600_000] {
        let answer = client
            .register_contract(4, contract(&client, start, "Test Type"))
            .await;
        assert_invalid(&answer, "contract.startTime");
    }
    for bad_type in [String::new(), "a".repeat(100), "ɐ".repeat(50)] {
        let answer = client
            .register_contract(5, contract(&client, now_ms(), &bad_type))
            .await;
        assert_invalid(&answer, "contract.identityType");
    }
    // 32 two-byte characters are exactly 64 bytes: allowed.
    assert_status(
        &client
            .register_contract(6, contract(&client, now_ms(), &"ɐ".repeat(32)))
            .await,
        Status::Ok,
    );
    assert_status(
        &client.register_contract(7, good).await,
        Status::ErrorAlreadyExists,
    );
}

#[tokio::test]
async fn cancelled_identity_can_register_again_but_not_check_in() {
    let server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let cancel = Conv::CancelHostingAgreement(ps::CancelHostingAgreementRequest::default());
    assert_status(
        &customer.conversation(3, Vec::new(), cancel.clone()).await,
        Status::Ok,
    );
    // Later customer requests on the still open connection get NOT_FOUND.
    let update = Update::new(&customer.identity);
    assert_status(
        &customer.update_profile(4, &update).await,
        Status::ErrorNotFound,
    );
    assert_status(
        &customer.conversation(5, Vec::new(), cancel).await,
        Status::ErrorNotFound,
    );
    // Spec §4.9: services and relationship cards of a cancelled identity no longer change.
    let services = Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
        service_names: vec!["chat".into()],
    });
    let remove_service = Conv::ApplicationServiceRemove(ps::ApplicationServiceRemoveRequest {
        service_name: "chat".into(),
    });
    let add_card = Conv::AddRelatedIdentity(ps::AddRelatedIdentityRequest::default());
    let remove_card = Conv::RemoveRelatedIdentity(ps::RemoveRelatedIdentityRequest {
        application_id: vec![1],
    });
    for (id, request) in [(10, services), (11, remove_service), (12, remove_card)] {
        let answer = customer.conversation(id, Vec::new(), request).await;
        assert_status(&answer, Status::ErrorNotFound);
    }
    let answer = customer.conversation(13, vec![0; 64], add_card).await;
    assert_status(&answer, Status::ErrorNotFound);
    // Without a redirect the target server is not known.
    let id = customer.identity.network_id();
    let info = profile_information(customer.profile_information(6, id, false, false).await);
    assert!(!info.is_hosted && !info.is_target_profile_server_known);

    let mut again = Client::tls(server.port(Role::ClCustomer)).await;
    again.identity = customer.identity.clone();
    again.start_conversation(1).await;
    assert_status(&again.check_in(2).await, Status::ErrorNotFound);
    register(&server, &customer.identity, "Test Type").await;
    check_in(&server, &customer.identity).await;
}

#[tokio::test]
async fn a_new_check_in_closes_the_older_connection() {
    let server = TestServer::start(&Options::default()).await;
    let mut first = new_customer(&server).await;
    let mut second = check_in(&server, &first.identity).await;
    assert!(
        first.is_closed_within(ANSWER_TIMEOUT).await,
        "older connection is closed"
    );
    assert_status(&second.ping(9, b"still here").await, Status::Ok);
}

#[tokio::test(start_paused = true)]
async fn application_services_are_per_session_and_limited_to_fifty() {
    let server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let id = customer.identity.network_id();
    let mut update = Update::new(&customer.identity);
    update.profile.name = "Services".into();
    assert_status(&customer.update_profile(3, &update).await, Status::Ok);
    let add = |names: Vec<String>| {
        Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
            service_names: names,
        })
    };
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();

    assert_status(
        &customer
            .conversation(4, Vec::new(), add(names("a", 24)))
            .await,
        Status::Ok,
    );
    assert_status(
        &customer
            .conversation(5, Vec::new(), add(names("b", 30)))
            .await,
        Status::ErrorQuotaExceeded,
    );
    assert_status(
        &customer
            .conversation(6, Vec::new(), add(names("b", 26)))
            .await,
        Status::Ok,
    );
    let invalid = vec!["fine".to_owned(), "ɐ".repeat(17)];
    assert_invalid(
        &customer.conversation(7, Vec::new(), add(invalid)).await,
        "serviceNames[1]",
    );
    let remove = |name: &str| {
        Conv::ApplicationServiceRemove(ps::ApplicationServiceRemoveRequest {
            service_name: name.into(),
        })
    };
    assert_status(
        &customer.conversation(8, Vec::new(), remove("a0")).await,
        Status::Ok,
    );
    assert_status(
        &customer.conversation(9, Vec::new(), remove("a0")).await,
        Status::ErrorNotFound,
    );

    let mut observer = Client::tls(server.port(Role::ClNonCustomer)).await;
    let info = profile_information(
        observer
            .profile_information(1, id.clone(), false, true)
            .await,
    );
    assert!(info.is_online);
    assert_eq!(info.application_services.len(), 49);
    assert!(info.application_services.contains(&"b25".to_owned()));
    drop(customer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = profile_information(observer.profile_information(2, id, false, true).await);
    assert!(!info.is_online && info.application_services.is_empty());
}

#[tokio::test]
async fn list_hosting_plans_offers_one_free_plan_until_full() {
    let options = Options {
        limits: "max_hosted_identities = 1".into(),
        ..Options::default()
    };
    let server = TestServer::start(&options).await;
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    let request = || {
        Single::ListHostingPlans(ps::ListHostingPlansRequest {
            identity_type: "Test Type".into(),
        })
    };
    let answer = client.single(1, request()).await;
    assert_status(&answer, Status::Ok);
    let ResponseType::ListHostingPlans(list) = single_body(answer) else {
        panic!("not plans")
    };
    assert_eq!(list.plans.len(), 1);
    let plan = &list.plans[0];
    assert_eq!(plan.server_network_id, server.network_id());
    let mut zeroed = plan.clone();
    zeroed.plan_id = vec![0; 32];
    assert_eq!(
        plan.plan_id,
        iop_profile_server::crypto::sha256(&zeroed.encode_to_vec())
    );
    register(&server, &Identity::random(), "Test Type").await;
    assert_status(
        &client.single(2, request()).await,
        Status::ErrorQuotaExceeded,
    );
}

fn image_files(server: &TestServer) -> Vec<std::path::PathBuf> {
    let root = server.dir.path().join("images");
    let Ok(prefixes) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    prefixes
        .flatten()
        .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .collect()
}

#[tokio::test]
async fn images_are_shared_by_content_and_deleted_when_unused() {
    let server = TestServer::start(&Options::default()).await;
    let mut alice = new_customer(&server).await;
    let mut bob = new_customer(&server).await;
    let image = fixture("profile.jpg");
    let png = fixture("thumbnail.png");
    let alice_update = Update::new(&alice.identity)
        .with_profile_image(image.clone())
        .with_thumbnail(png);
    assert_status(&alice.update_profile(3, &alice_update).await, Status::Ok);
    let bob_update = Update::new(&bob.identity).with_profile_image(image);
    assert_status(&bob.update_profile(3, &bob_update).await, Status::Ok);
    assert_eq!(image_files(&server).len(), 2, "one file per distinct image");

    // Alice drops both images: the shared one stays for Bob, the PNG goes.
    assert_status(
        &alice.update_profile(4, &Update::new(&alice.identity)).await,
        Status::Ok,
    );
    assert_eq!(image_files(&server).len(), 1);
    // Bob cancels: nothing references the JPEG any more.
    let cancel = Conv::CancelHostingAgreement(ps::CancelHostingAgreementRequest::default());
    assert_status(&bob.conversation(4, Vec::new(), cancel).await, Status::Ok);
    assert!(image_files(&server).is_empty());
}

#[tokio::test]
async fn truncated_and_mislabelled_images_are_rejected() {
    let server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let image = fixture("profile.jpg");
    let truncated = image[..image.len() - 1].to_vec();
    let update = Update::new(&customer.identity).with_profile_image(truncated);
    assert_invalid(&customer.update_profile(3, &update).await, "profileImage");
    let mut oversized = fixture("big.jpg");
    oversized.truncate(20_481);
    let update = Update::new(&customer.identity).with_profile_image(oversized);
    assert_invalid(&customer.update_profile(4, &update).await, "profileImage");
    let update = Update::new(&customer.identity).with_thumbnail(image);
    assert_invalid(&customer.update_profile(5, &update).await, "thumbnailImage");
}

#[tokio::test]
async fn no_propagation_is_allowed_after_the_first_update() {
    let server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    assert_status(
        &customer
            .update_profile(3, &Update::new(&customer.identity))
            .await,
        Status::Ok,
    );
    let mut quiet = Update::new(&customer.identity);
    quiet.no_propagation = true;
    quiet.profile.extra_data = "k=v".into();
    assert_status(&customer.update_profile(4, &quiet).await, Status::Ok);
}

#[tokio::test]
async fn profile_with_images_survives_a_restart() {
    let mut server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let id = customer.identity.network_id();
    let update = Update::new(&customer.identity)
        .with_profile_image(fixture("profile.jpg"))
        .with_thumbnail(fixture("thumbnail.jpg"));
    assert_status(&customer.update_profile(3, &update).await, Status::Ok);
    let add = Conv::ApplicationServiceAdd(ps::ApplicationServiceAddRequest {
        service_names: vec!["chat".into()],
    });
    assert_status(&customer.conversation(4, Vec::new(), add).await, Status::Ok);
    let before = profile_information(
        customer
            .profile_information(5, id.clone(), true, false)
            .await,
    );
    drop(customer);

    server.restart().await;
    let mut observer = Client::tls(server.port(Role::ClNonCustomer)).await;
    let after = profile_information(observer.profile_information(1, id, true, true).await);
    assert_eq!(after.signed_profile, before.signed_profile);
    assert_eq!(after.profile_image, fixture("profile.jpg"));
    assert_eq!(after.thumbnail_image, fixture("thumbnail.jpg"));
    assert!(
        !after.is_online && after.application_services.is_empty(),
        "services die with the session"
    );
}

/// A hosted, checked-in client of a server process, with its identity.
async fn checked_in_writer(server: &ServerProcess) -> Client {
    let mut client = Client::tls(server.tls).await;
    client.identity = Identity::random();
    client.start_conversation(1).await;
    assert_status(&client.register_hosting(2).await, Status::Ok);
    assert_status(&client.check_in(3).await, Status::Ok);
    client
}

/// Sends `count` profile updates named "name 0", "name 1", … without waiting for answers.
async fn stream_updates(client: &mut Client, count: u32) {
    let mut batch = Vec::new();
    for i in 0..count {
        let mut update = Update::new(&client.identity);
        update.profile.name = format!("name {i}");
        let (signature, body) = update.signed(&client.identity);
        let message = iop_profile_server::wire::request::conversation(10 + i, signature, body);
        batch.extend(iop_profile_server::wire::frame::encode(&message));
    }
    client.send_raw(&batch).await.expect("send updates");
}

/// Reads `count` answers, each of which must be OK; returns the index of the last update
/// acknowledged.
async fn acknowledged(client: &mut Client, count: u32) -> u32 {
    for _ in 0..count {
        assert_status(&into_response(client.receive().await), Status::Ok);
    }
    count - 1
}

/// The index of the update stored for `id`, read through a fresh server process.
async fn stored_update(server: &ServerProcess, id: Vec<u8>) -> u32 {
    let mut observer = Client::tls(server.tls).await;
    let info = profile_information(observer.profile_information(1, id, false, false).await);
    let name = info
        .signed_profile
        .and_then(|s| s.decode_profile())
        .map(|p| p.name)
        .expect("profile");
    name.trim_start_matches("name ")
        .parse()
        .expect("one of ours")
}

#[tokio::test]
async fn acknowledged_updates_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(dir.path());
    let mut client = checked_in_writer(&server).await;
    // Stream updates without waiting, then kill the server while answers are still coming.
    stream_updates(&mut client, 200).await;
    let last_ok = acknowledged(&mut client, 41).await;
    server.kill_hard();

    let server = ServerProcess::start(dir.path());
    let stored = stored_update(&server, client.identity.network_id()).await;
    assert!(
        stored >= last_ok,
        "update {last_ok} was acknowledged but {stored} is stored"
    );
}

/// Many clients writing at once share fsyncs (group commit); whatever any of them was told is
/// stored must be there after kill -9, whichever batch it was in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_concurrent_updates_survive_kill_9() {
    const WRITERS: usize = 16;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(dir.path());
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(checked_in_writer(&server).await);
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            tokio::spawn(async move {
                stream_updates(&mut client, 150).await;
                // Writers stop listening at different points, so the kill lands while some
                // batches are being written and others are being answered.
                let last_ok =
                    acknowledged(&mut client, 20 + 3 * u32::try_from(n).unwrap_or(0)).await;
                (client, last_ok)
            })
        })
        .collect();
    let mut acknowledged_by = Vec::new();
    for task in tasks {
        acknowledged_by.push(task.await.expect("writer"));
    }
    server.kill_hard();

    let server = ServerProcess::start(dir.path());
    for (client, last_ok) in acknowledged_by {
        let stored = stored_update(&server, client.identity.network_id()).await;
        assert!(
            stored >= last_ok,
            "update {last_ok} was acknowledged but {stored} is stored"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn call_checks_run_in_order() {
    let server = TestServer::start(&Options::default()).await;
    let mut callee = new_customer(&server).await;
    let callee_id = callee.identity.network_id();
    let mut dialler = Client::tls(server.port(Role::ClNonCustomer)).await;
    dialler.start_conversation(1).await;
    assert_status(&dialler.verify_identity(2).await, Status::Ok);
    let call = |service: &str| {
        Conv::CallIdentityApplicationService(ps::CallIdentityApplicationServiceRequest {
            identity_network_id: callee_id.clone(),
            service_name: service.into(),
        })
    };
    assert_status(
        &dialler.conversation(3, Vec::new(), call("chat")).await,
        Status::ErrorUninitialized,
    );
    assert_status(
        &callee
            .update_profile(3, &Update::new(&callee.identity))
            .await,
        Status::Ok,
    );
    assert_invalid(
        &dialler.conversation(4, Vec::new(), call("chat")).await,
        "serviceName",
    );
    drop(callee);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_status(
        &dialler.conversation(5, Vec::new(), call("chat")).await,
        Status::ErrorNotAvailable,
    );
}

#[tokio::test]
async fn name_limits_count_utf8_bytes() {
    let server = TestServer::start(&Options::default()).await;
    let mut customer = new_customer(&server).await;
    let mut update = Update::new(&customer.identity);
    update.profile.name = "ɐ".repeat(33);
    assert_invalid(&customer.update_profile(3, &update).await, "profile.name");
    update.profile.name = "ɐ".repeat(32);
    assert_status(&customer.update_profile(4, &update).await, Status::Ok);
    update.profile.extra_data = "ɐ".repeat(101);
    assert_invalid(
        &customer.update_profile(5, &update).await,
        "profile.extraData",
    );
    update.profile.extra_data = "ɐ".repeat(100);
    assert_status(&customer.update_profile(6, &update).await, Status::Ok);
}
