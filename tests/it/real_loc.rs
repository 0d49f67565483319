//! The neighbourhood with the real LOC daemon (iop-locnetd 2.0.0-a1, built from
//! `../shared/tools/loc` by its `build.sh`): five nodes, each a LOC and a server in a network
//! namespace of its own, joined by a bridge in another namespace (10.77.0.0/24 exists only
//! inside them). The LOC refuses loopback node addresses outside its test mode, hence the
//! namespaces; the test reaches a node's server from a thread that entered its namespace.
//!
//! Needs root and the daemon: CI builds it into a cached folder and runs
//! `IOP_LOCNETD=<path> cargo test --locked --test it real_loc -- --ignored`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use iop_profile_server::wire::ps;

use crate::kit::lab::{Lab, Node, NodePorts, kill, locnetd};
use crate::kit::*;
use crate::ps06::{base, search};

const NODES: usize = 5;
/// Longest wait for the mesh to form or for a change to arrive.
const PATIENCE: Duration = Duration::from_secs(60);
/// Short intervals, so that the test takes seconds.
const NEIGHBORHOOD: &str = "action_interval_secs = 1\ninit_delay_max_secs = 1";

/// Whether a search on `node` finds a profile by `name`.
fn finds(node: &Node, name: &str) -> bool {
    let name = name.to_owned();
    let port = node.ports.others;
    node.with_client(async move || {
        let mut client = Client::tls(port).await;
        let request = ps::ProfileSearchRequest { name, ..base(100) };
        !search(&mut client, 1, request).await.profiles.is_empty()
    })
}

fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    started.elapsed()
}

fn mesh(lab: &Lab) -> Duration {
    let others = lab.nodes.len() - 1;
    let started = Instant::now();
    while !lab
        .nodes
        .iter()
        .all(|node| node.initialised(others, others))
    {
        if started.elapsed() > PATIENCE {
            for node in &lab.nodes {
                let log = std::fs::read_to_string(node.server_log());
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!(
                    "== {} (its LOC lists {:?} nodes) {:?}\n{}",
                    node.address,
                    node.loc_neighbors().map(|listed| listed.len()),
                    node.status(),
                    tail.join("\n")
                );
                let loc = node.dir.path().join("loc");
                for file in ["stdout.log", "debug.log"] {
                    let text = std::fs::read_to_string(loc.join(file)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(8).collect();
                    eprintln!("-- LOC {file}\n{}", tail.join("\n"));
                }
            }
            panic!("no full mesh within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    started.elapsed()
}

/// A profile named `name` hosted on `node` (registered and initialised on first use).
fn rename(node: &Node, hosted: Option<Hosted>, name: &str) -> Hosted {
    let name = name.to_owned();
    let ports: NodePorts = node.ports;
    node.with_client(async move || match hosted {
        None => {
            let identity = Identity::random();
            let mut update = Update::new(&identity);
            update.profile.name = name;
            Hosted::create(&ports, identity, update).await
        }
        Some(mut hosted) => {
            let mut update = hosted.update();
            update.profile.name = name;
            hosted.change(&ports, update).await;
            hosted
        }
    })
}

#[test]
#[ignore = "needs root (ip netns) and iop-locnetd: IOP_LOCNETD=<path>, see tests/it/real_loc.rs"]
fn issue23_five_nodes_with_the_real_loc_form_and_keep_a_full_mesh() {
    let locnetd: PathBuf = locnetd().expect("IOP_LOCNETD is set");
    let mut lab = Lab::namespaces(NODES);
    // The seed first: a LOC that finds no seed explores again only after a long delay.
    for (i, node) in lab.nodes.iter_mut().enumerate() {
        node.start_loc(&locnetd);
        std::thread::sleep(Duration::from_secs(if i == 0 { 2 } else { 1 }));
    }
    // Servers one second apart: the order in which LOC 2.0 left half the relations unformed.
    for node in &mut lab.nodes {
        node.start_server(NEIGHBORHOOD, 5);
        std::thread::sleep(Duration::from_secs(1));
    }
    let formed = mesh(&lab);
    eprintln!("full mesh {formed:?} after the last server started");

    let tag = hex::encode(iop_profile_server::crypto::random_bytes::<4>());
    let hosted = rename(&lab.nodes[0], None, &format!("first-{tag}"));
    let hosted = rename(&lab.nodes[0], Some(hosted), &format!("renamed-{tag}"));
    for node in &lab.nodes[1..] {
        until("the rename reaches every node", || {
            finds(node, &format!("renamed-{tag}"))
        });
    }

    // kill -9 of one server; a change made meanwhile reaches it once it is back.
    kill(&mut lab.nodes[2].server);
    let _hosted = rename(&lab.nodes[0], Some(hosted), &format!("meanwhile-{tag}"));
    lab.nodes[2].start_server(NEIGHBORHOOD, 5);
    let again = mesh(&lab);
    eprintln!("full mesh again {again:?} after a server's kill -9 and restart");
    until("the change made meanwhile arrives", || {
        finds(&lab.nodes[2], &format!("meanwhile-{tag}"))
    });

    // One LOC killed and restarted: the mesh holds or forms again.
    kill(&mut lab.nodes[3].loc);
    std::thread::sleep(Duration::from_secs(2));
    lab.nodes[3].start_loc(&locnetd);
    let after_loc = mesh(&lab);
    eprintln!("full mesh {after_loc:?} after a LOC's kill and restart");

    // SIGTERM: the server deregisters from LOC and exits promptly.
    let node = &mut lab.nodes[1];
    let pid = node.server_pid().expect("running");
    let mut server = node.server.take().expect("running");
    let stopping = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = server.wait().expect("the server exits");
    let took = stopping.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "{status}");
    // A bound, not a measurement: far above the milliseconds it takes, far below systemd's
    // stop timeout.
    assert!(took < Duration::from_secs(2), "the stop took {took:?}");
}
