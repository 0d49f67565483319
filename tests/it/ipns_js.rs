//! The server's V2 IPNS records checked by the npm package `ipns`, the reference implementation
//! JavaScript IPFS nodes validate records with (tests/ipns-js). CI installs it (`npm ci` in
//! tests/ipns-js) and runs it with `cargo test --locked --test it ipns_js -- --ignored`; a plain
//! `cargo test` lists it as ignored, never as passed.

use std::path::Path;
use std::process::Command;

use iop_profile_server::can::{from_multibase, ipns_name};
use iop_profile_server::role::Role;
use iop_profile_server::wire::proto::ipns::IpnsEntry;
use prost::Message as _;

use crate::kit::*;

const CHECKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ipns-js");

/// Runs the npm checker on `record` for `name`: its JSON output and whether it exited 0.
fn npm_verdict(name: &str, record: &[u8]) -> (bool, serde_json::Value) {
    let cid = from_multibase(name).expect("a base36 name");
    // CIDv1 (0x01), libp2p-key (0x72), then the identity multihash of the key.
    let multihash = hex::encode(&cid[2..]);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), record).expect("write record");
    let output = Command::new("node")
        .arg("verify.mjs")
        .arg(multihash)
        .arg(file.path())
        .current_dir(CHECKER)
        .output()
        .expect("node runs");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "checker output: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), printed)
}

#[tokio::test(start_paused = true)]
#[ignore = "needs Node.js and `npm ci` in tests/ipns-js; CI runs it with -- --ignored"]
async fn the_npm_ipns_package_accepts_the_servers_record_and_refuses_a_forged_one() {
    assert!(
        Path::new(CHECKER).join("node_modules/ipns").is_dir(),
        "run `npm ci` in tests/ipns-js first"
    );
    let can = CanStandIn::start(CanFlavour::Stock).await;
    let options = Options {
        extra: can.config(),
        ..Options::default()
    };
    let server = TestServer::start(&options).await;
    let mut client = Client::plain(server.port(Role::Primary)).await;
    let name = ipns_name(&client.start_conversation(1).await.public_key);
    let state = can
        .wait_for("routing/put", |s| s.v2_records.contains_key(&name))
        .await;
    let record = &state.v2_records[&name];

    let (valid, printed) = npm_verdict(&name, record);
    assert!(valid, "{printed}");
    let value = printed["value"].as_str().expect("value");
    assert!(value.starts_with("/ipfs/Qm"), "{printed}");
    assert_eq!(printed["sequence"], "1");

    let mut forged = IpnsEntry::decode(record.as_slice()).expect("record");
    if let Some(signature) = forged.signature_v2.as_mut() {
        signature[0] ^= 1;
    }
    let (valid, printed) = npm_verdict(&name, &forged.encode_to_vec());
    assert!(!valid, "a forged signature passed: {printed}");
}
