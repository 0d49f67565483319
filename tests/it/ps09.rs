//! PS09: CAN integration (`spec/tests/PS09.md`), against the CAN stand-in.

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::can::{CanIdentityData, CanKeyValue, can_key_value::Value};
use prost::Message as _;

use crate::kit::*;

fn pair(key: &str, value: Value) -> CanKeyValue {
    CanKeyValue {
        key: key.into(),
        value: Some(value),
    }
}

/// PS09 D1.
fn d1(server_id: &[u8]) -> CanIdentityData {
    CanIdentityData {
        hosting_server_id: server_id.to_vec(),
        key_value_list: vec![
            pair("key1", Value::StringValue("value 1".into())),
            pair("key2", Value::Uint32Value(2)),
            pair("key3", Value::BoolValue(true)),
            pair("key4", Value::BinaryValue(vec![1, 2, 3])),
        ],
    }
}

/// PS09 D2: about 500 KB, more than one 256 KiB IPFS chunk.
fn d2(server_id: &[u8]) -> CanIdentityData {
    CanIdentityData {
        hosting_server_id: server_id.to_vec(),
        key_value_list: vec![
            pair("key1", Value::StringValue("value 1".into())),
            pair("key2", Value::Uint32Value(3)),
            pair("key3", Value::BoolValue(false)),
            pair("keyX", Value::BinaryValue(vec![0x40; 500_000])),
        ],
    }
}

/// A server on layout S that uses `can`, with K registered and checked in.
async fn checked_in(can: &CanStandIn) -> (TestServer, Client) {
    let options = Options {
        extra: can.config(),
        ..Options::default()
    };
    let server = TestServer::start(&options).await;
    let identity = Identity::random();
    register(&server, &identity, "Test Type").await;
    let client = check_in(&server, &identity).await;
    (server, client)
}

#[tokio::test]
async fn ps09001_can_requests_without_check_in_are_unauthorized() {
    for layout in [Layout::Shared, Layout::Split] {
        let server = TestServer::start(&Options::layout(layout)).await;
        let mut client = Client::tls(server.port(Role::ClCustomer)).await;
        assert_status(
            &store_data(&mut client, 1, None).await,
            Status::ErrorUnauthorized,
        );
        assert_status(
            &publish_record(&mut client, 2, None).await,
            Status::ErrorUnauthorized,
        );
    }
}

#[tokio::test]
async fn ps09002_store_publish_refresh_replace_and_delete() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let (server, mut client) = checked_in(&can).await;
    let key = client.identity.public_key();
    let data1 = d1(&server.network_id());
    let p1 = path_of(&stored_hash(
        store_data(&mut client, 3, Some(data1.clone())).await,
    ));
    let record = signed_record(&client.identity, &p1, &month_ahead(), 1);
    assert_status(
        &publish_record(&mut client, 4, Some(record)).await,
        Status::Ok,
    );
    assert_eq!(resolve(&can, &key).await, p1);
    let (status, bytes) = can.harness("cat", &p1).await;
    assert_eq!((status, bytes), (200, data1.encode_to_vec()));

    let record = signed_record(&client.identity, &p1, &month_ahead(), 2);
    assert_status(
        &publish_record(&mut client, 5, Some(record)).await,
        Status::Ok,
    );
    assert_eq!(resolve(&can, &key).await, p1);

    let data2 = d2(&server.network_id());
    let p2 = path_of(&stored_hash(
        store_data(&mut client, 6, Some(data2.clone())).await,
    ));
    let record = signed_record(&client.identity, &p2, &month_ahead(), 3);
    assert_status(
        &publish_record(&mut client, 7, Some(record)).await,
        Status::Ok,
    );
    // The public test waits out the 6 s TTL for a real node's cache; the stand-in keeps no
    // cache, so the newest record resolves at once.
    assert_eq!(resolve(&can, &key).await, p2);
    let (status, bytes) = can.harness("cat", &p2).await;
    assert_eq!((status, bytes.len()), (200, data2.encoded_len()));
    assert!(bytes == data2.encode_to_vec());

    assert_eq!(
        stored_hash(store_data(&mut client, 8, None).await),
        Vec::<u8>::new()
    );
    assert_no_pin_left(&can, &p2).await;
    assert_no_pin_left(&can, &p1).await;
}

#[tokio::test]
async fn ps09003_foreign_hosting_server_id_is_refused_before_can() {
    let can = CanStandIn::start(CanFlavour::Fork).await;
    let (_server, mut client) = checked_in(&can).await;
    let foreign = d1(&[0x40; 5]);
    let answer = store_data(&mut client, 3, Some(foreign.clone())).await;
    assert_status(&answer, Status::ErrorInvalidValue);
    assert_eq!(answer.details, "data.hostingServerId");
    let stored = can.state();
    assert!(
        !stored
            .objects
            .values()
            .any(|o| *o == foreign.encode_to_vec())
    );
}
