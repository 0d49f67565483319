//! A whole neighbourhood on one machine: `cargo bench --bench network`.
//!
//! N nodes (`IOP_BENCH_NODES`, default 100), each a release server process hosting 50 signed
//! profiles and a LOC of its own. As root with `IOP_LOCNETD` naming the real LOC daemon
//! (iop-locnetd 2.0.0-a1), every node is a network namespace running that daemon; otherwise
//! every node's LOC is an in-process stand-in playing the daemon's habits (two nodes are
//! neighbours when each is among the other's 50 nearest, as a full LOC refuses farther ones;
//! nodes are announced first without their profile service; change notifications go only to
//! the first session it ever accepted).
//!
//! It prints: the time from the last server start until every server has initialised as
//! neighbour, and serves as follower, every node its LOC lists with its profile service and
//! every node whose LOC lists it so (the pairs a LOC lists without giving either side the
//! other's service are counted apart: no server can learn of them); how long 20 profile
//! changes take to be found by search on every node that has their server as neighbour; the
//! servers' resident memory and idle CPU (beside a lone server with the same profiles and no
//! neighbourhood, measured in the same window); and, after `kill -9` of 10 % of the servers
//! and their restart (three profiles elsewhere renamed meanwhile), the time until the mesh is
//! whole again: every relation initialised and every node's search holding exactly its own and
//! its neighbours' hosted profiles, each once and in its latest version; what is still lost,
//! duplicated or unexpected when that does not happen within 10 minutes.
//!
//! Propagation is timed by searches every 100 ms on every receiving node: figures are good to
//! about 100 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use iop_profile_server::wire::ps;
use iop_profile_server::wire::ps::single_request::RequestType as Single;
use iop_profile_server::wire::ps::single_response::ResponseType as Found;
use prost::Message as _;

mod common;
use common::kit::lab::{Lab, Node, NodePorts, kill, locnetd, node_id};
use common::kit::loc::{Generation, LocStandIn, announcement};
use common::kit::{Client, Hosted, Identity, Update, below, pick, single_body};
use common::{Seeded, cpu_ns, rss_kib, seed_hosted};

/// Profiles each server hosts.
const PROFILES: usize = 50;
/// Profile changes timed for propagation.
const CHANGES: usize = 20;
/// How many neighbours the real LOC keeps (its NEIGHBOURHOOD_TARGET_SIZE).
const LOC_NEIGHBOURHOOD: usize = 50;
/// The servers' `[neighborhood]` keys: updates leave within a second, initialisations start
/// within 5 s of learning a neighbour (the defaults, 20 s and 60 s, are for a quiet home node).
const NEIGHBORHOOD: &str = "action_interval_secs = 1\ninit_delay_max_secs = 5";
/// How often servers re-read LOC's neighbourhood (the default is 60 s).
const LOC_REFRESH_SECS: u32 = 30;
/// How often the bench reads every LOC's list while it waits for a mesh: each read is a LOC
/// session, and the real daemon's CPU is the scarce resource at 100 nodes on a small machine.
const LIST_EVERY: Duration = Duration::from_secs(15);
/// How often a node is searched for a change.
const SEARCH_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for a mesh, a change or convergence.
const PATIENCE: Duration = Duration::from_secs(600);
/// Spec §1.3: "no location" in a search.
const NO_LOCATION: i32 = 0x7FFF_FFFF;

fn main() {
    if !common::selected("network") {
        return;
    }
    let count = env_number("IOP_BENCH_NODES", 100);
    let idle = Duration::from_secs(env_number("IOP_BENCH_IDLE_SECS", 60) as u64);
    let mut net = Network::start(count);
    let mesh = net.until_meshed("mesh");
    println!("{}", net.mode);
    println!(
        "full mesh after the last start: {}{}",
        seconds(mesh.as_ref().map(|mesh| mesh.took)),
        mesh.as_ref().map_or(String::new(), |mesh| format!(
            " (the LOCs' lists last changed after {:.1} s)",
            mesh.lists_changed.as_secs_f64()
        ))
    );
    let lists = mesh.map(|mesh| mesh.lists).unwrap_or_default();
    let knowable = &lists.knowable;
    println!(
        "neighbor relations: {} (each node has {} to {}); pairs LOC lists without giving \
         either side the other's service: {}",
        knowable.iter().map(BTreeSet::len).sum::<usize>() / 2,
        knowable.iter().map(BTreeSet::len).min().unwrap_or(0),
        knowable.iter().map(BTreeSet::len).max().unwrap_or(0),
        lists.unknowable()
    );

    let delays = net.propagate(&lists.knowable);
    let p99 = percentile(&delays, 99);
    println!(
        "propagation of {CHANGES} changes to {} nodes: p50 {} ms, p99 {} ms, max {} ms",
        delays.len(),
        percentile(&delays, 50),
        p99,
        percentile(&delays, 100)
    );

    let rss_max = net.idle(idle);

    let churn = net.churn();
    println!(
        "after kill -9 of {} servers and restart: mesh {}; lost {}, duplicated {}, \
         unexpected {}; log lines per node per minute during churn: max {:.0}",
        churn.victims,
        seconds(churn.mesh),
        churn.audit.lost,
        churn.audit.duplicated,
        churn.audit.unexpected,
        churn.log_rate
    );
    println!(
        "network: {count} nodes, mesh {} s, propagation p99 {p99} ms, rss max {rss_max:.1} MiB, \
         after churn mesh {} s, lost {}, duplicated {}",
        seconds_value(net.first_mesh),
        seconds_value(churn.mesh),
        churn.audit.lost,
        churn.audit.duplicated
    );
}

/// Nanoseconds as seconds.
fn secs(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

/// A count or size far below 2^32, as a float.
fn small(value: impl TryInto<u32>) -> f64 {
    f64::from(value.try_into().unwrap_or(u32::MAX))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn seconds(took: Option<Duration>) -> String {
    took.map_or_else(
        || format!("not within {} s", PATIENCE.as_secs()),
        |took| format!("{:.1} s", took.as_secs_f64()),
    )
}

fn seconds_value(took: Option<Duration>) -> String {
    took.map_or_else(
        || format!(">{}", PATIENCE.as_secs()),
        |took| format!("{:.1}", took.as_secs_f64()),
    )
}

/// The `percent`th percentile of `values` in milliseconds (0 when empty).
fn percentile(values: &[Duration], percent: usize) -> u128 {
    let mut sorted: Vec<u128> = values.iter().map(Duration::as_millis).collect();
    sorted.sort_unstable();
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// The in-process LOC stand-ins of a loopback network, and what each lists.
struct StandIns {
    runtime: tokio::runtime::Runtime,
    locs: Vec<LocStandIn>,
    /// Node ids (as `node_id` gives them) of the servers each stand-in announces.
    listed: Vec<BTreeSet<usize>>,
}

/// The nodes, the profiles they host, and their LOCs.
struct Network {
    lab: Lab,
    /// What this run's LOCs are.
    mode: String,
    /// Each node's hosted profiles in their latest state.
    hosted: Vec<Vec<Hosted>>,
    /// Each node's server network id.
    ids: Vec<[u8; 32]>,
    stand_ins: Option<StandIns>,
    /// How long the first mesh took.
    first_mesh: Option<Duration>,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}

/// 50 signed profiles for `node`.
fn profiles(node: &Node) -> Vec<Hosted> {
    (0..PROFILES)
        .map(|k| {
            let identity = Identity::random();
            let mut update = Update::new(&identity);
            update.profile.name = format!("node {} profile {k}", node.index);
            Hosted::signed(identity, update)
        })
        .collect()
}

/// `hosted` as database records.
fn seeds(hosted: &[Hosted]) -> Vec<Seeded> {
    hosted
        .iter()
        .map(|h| Seeded {
            public_key: h.identity.public_key(),
            identity_type: h.profile.r#type.clone(),
            profile: h.profile.encode_to_vec(),
            signature: h.signature.clone(),
            thumbnail: Vec::new(),
        })
        .collect()
}

/// A node's profiles, written into its data directory before its server starts, and the
/// server's network id.
fn seed(node: &Node) -> (Vec<Hosted>, [u8; 32]) {
    std::fs::create_dir_all(node.data_dir()).expect("data directory");
    let hosted = profiles(node);
    let id = seed_hosted(&node.data_dir(), &seeds(&hosted));
    (hosted, id)
}

/// Where the loopback nodes' ports start: below the kernel's range for outgoing connections
/// (32768 and up), which 200 servers and their peers use by the thousand; a port taken from
/// that range between choosing it and binding it left servers unable to start.
const FIRST_PORT: u16 = 21_000;

/// The first port from `next` on that nothing listens on; `next` moves past it.
fn unused_port(next: &mut u16) -> u16 {
    loop {
        let port = *next;
        *next += 1;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// Panics, with the end of its log, when a node's server has exited.
fn assert_running(node: &mut Node) {
    let exited = node
        .server
        .as_mut()
        .and_then(|child| child.try_wait().ok().flatten());
    if let Some(status) = exited {
        let log = std::fs::read_to_string(node.server_log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        panic!(
            "node {}'s server exited ({status}): {}",
            node.index,
            tail.join(" | ")
        );
    }
}

/// The `LOC_NEIGHBOURHOOD` nodes nearest to `node` on the line (1-based), itself excluded.
fn nearest(node: usize, count: usize) -> BTreeSet<usize> {
    let mut others: Vec<usize> = (1..=count).filter(|&other| other != node).collect();
    others.sort_by_key(|&other| (other.abs_diff(node), other));
    others.into_iter().take(LOC_NEIGHBOURHOOD).collect()
}

/// The nodes a LOC at `node` keeps as neighbours: a full LOC accepts (and renews) only nodes
/// closer than its farthest neighbour, so two nodes are neighbours when each is among the
/// other's nearest.
fn neighborhood(node: usize, count: usize) -> BTreeSet<usize> {
    nearest(node, count)
        .into_iter()
        .filter(|&other| nearest(other, count).contains(&node))
        .collect()
}

impl Network {
    fn start(count: usize) -> Network {
        match locnetd().filter(|_| is_root()) {
            Some(daemon) => Network::with_real_loc(count, &daemon),
            None => Network::with_stand_ins(count),
        }
    }

    fn seeded(lab: Lab, mode: String, stand_ins: Option<StandIns>) -> Network {
        let (hosted, ids) = lab.nodes.iter().map(seed).unzip();
        Network {
            lab,
            mode,
            hosted,
            ids,
            stand_ins,
            first_mesh: None,
        }
    }

    fn with_real_loc(count: usize, daemon: &Path) -> Network {
        let lab = Lab::namespaces(count);
        let mut net = Network::seeded(
            lab,
            format!(
                "LOC: the real daemon {}, one namespace per node",
                daemon.display()
            ),
            None,
        );
        // The seed first: a LOC that finds no seed explores again only after a long delay.
        for (i, node) in net.lab.nodes.iter_mut().enumerate() {
            node.start_loc(daemon);
            std::thread::sleep(Duration::from_millis(if i == 0 { 2_000 } else { 300 }));
        }
        for node in &mut net.lab.nodes {
            node.start_server(NEIGHBORHOOD, LOC_REFRESH_SECS);
            std::thread::sleep(Duration::from_millis(300));
        }
        net.lab.nodes.iter_mut().for_each(assert_running);
        net
    }

    fn with_stand_ins(count: usize) -> Network {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let locs: Vec<LocStandIn> = (0..count)
            .map(|_| runtime.block_on(LocStandIn::start(Generation::V2)))
            .collect();
        let mut next_port = FIRST_PORT;
        let nodes = locs
            .iter()
            .enumerate()
            .map(|(i, loc)| {
                loc.notify_first_session_only();
                let ports = NodePorts {
                    primary: unused_port(&mut next_port),
                    others: unused_port(&mut next_port),
                };
                Node::new(i + 1, None, Ipv4Addr::LOCALHOST, ports, loc.port())
            })
            .collect();
        let stand_ins = StandIns {
            runtime,
            locs,
            listed: vec![BTreeSet::new(); count],
        };
        let mut net = Network::seeded(
            Lab::loopback(nodes),
            "LOC: in-process stand-ins (not root, or IOP_LOCNETD unset)".into(),
            Some(stand_ins),
        );
        // Each server is announced to its neighbours' LOCs as it starts, first without its
        // service (as the real LOC accepts a neighbour), with it once the next one starts.
        let mut previous = None;
        for index in 1..=count {
            net.lab.nodes[index - 1].start_server(NEIGHBORHOOD, LOC_REFRESH_SECS);
            net.announce(index, false);
            if let Some(earlier) = previous.replace(index) {
                net.announce(earlier, true);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some(last) = previous {
            net.announce(last, true);
        }
        net.lab.nodes.iter_mut().for_each(assert_running);
        net
    }

    /// Announces node `index` to the stand-ins whose neighbourhood it belongs to.
    fn announce(&mut self, index: usize, with_service: bool) {
        let count = self.lab.nodes.len();
        let mut node = announcement(
            &self.ids[index - 1],
            self.lab.nodes[index - 1].ports.primary,
        );
        node.node_id = node_id(index);
        if !with_service {
            node.services.clear();
        }
        let stand_ins = self.stand_ins.as_mut().expect("stand-ins");
        for listener in neighborhood(index, count) {
            let loc = &stand_ins.locs[listener - 1];
            stand_ins
                .runtime
                .block_on(loc.update_neighbor(node.clone()));
            stand_ins.listed[listener - 1].insert(index);
        }
    }

    /// What every node's LOC lists now, as node numbers, each with whether LOC gives its
    /// profile service; `None` for a LOC that did not answer.
    fn neighbor_lists(&self) -> Vec<Option<BTreeMap<usize, bool>>> {
        if let Some(stand_ins) = &self.stand_ins {
            let served = |list: &BTreeSet<usize>| list.iter().map(|&n| (n, true)).collect();
            return stand_ins.listed.iter().map(|l| Some(served(l))).collect();
        }
        let numbers: BTreeMap<Vec<u8>, usize> = (1..=self.lab.nodes.len())
            .map(|index| (node_id(index), index))
            .collect();
        self.lab
            .nodes
            .iter()
            .map(|node| {
                let listed = node.loc_neighbors()?;
                let known = listed
                    .into_iter()
                    .filter_map(|(id, served)| numbers.get(&id).map(|&number| (number, served)));
                Some(known.collect())
            })
            .collect()
    }

    /// Every node's relations as the LOCs give them now; `None` when a LOC did not answer.
    fn all_lists(&self) -> Option<Lists> {
        let listed: Vec<BTreeMap<usize, bool>> =
            self.neighbor_lists().into_iter().collect::<Option<_>>()?;
        let mut lists = Lists {
            knowable: vec![BTreeSet::new(); listed.len()],
            listed: vec![BTreeSet::new(); listed.len()],
        };
        for (i, list) in listed.iter().enumerate() {
            for (&other, &served) in list {
                let (a, b) = (i + 1, other);
                lists.listed[a - 1].insert(b);
                lists.listed[b - 1].insert(a);
                if served {
                    lists.knowable[a - 1].insert(b);
                    lists.knowable[b - 1].insert(a);
                }
            }
        }
        Some(lists)
    }

    /// How many servers have fewer initialised neighbours or followers than their knowable
    /// `relations`. More is allowed: a server keeps a neighbour that LOC still lists, now
    /// without its service, or that LOC stopped listing without telling it (iop-locnetd
    /// notifies only the first session it ever accepted), until the neighbour expires.
    fn unmeshed(&self, relations: &[BTreeSet<usize>]) -> usize {
        self.lab
            .nodes
            .iter()
            .filter(|node| {
                let peers = relations[node.index - 1].len();
                !node.status().is_some_and(|status| {
                    let initialised = |side: &str| {
                        status[side]["initialized"]
                            .as_u64()
                            .and_then(|n| usize::try_from(n).ok())
                            .is_some_and(|n| n >= peers)
                    };
                    initialised("neighbours") && initialised("followers")
                })
            })
            .count()
    }

    /// Waits until every relation the LOCs make knowable is initialised both ways; the lists
    /// are read every [`LIST_EVERY`], and once more to confirm a mesh.
    fn until_meshed(&mut self, what: &str) -> Option<Mesh> {
        let started = Instant::now();
        let mut reported = Instant::now();
        let mut lists: Option<(Instant, Lists)> = None;
        let mut lists_changed = Duration::ZERO;
        let mut read = |net: &Network, lists: &mut Option<(Instant, Lists)>| {
            let fresh = net.all_lists();
            let same = matches!((&fresh, &*lists), (Some(f), Some((_, known))) if f.knowable == known.knowable);
            if !same && fresh.is_some() {
                lists_changed = started.elapsed();
                *lists = fresh.map(|l| (Instant::now(), l));
            }
            same
        };
        while started.elapsed() < PATIENCE {
            if lists
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() > LIST_EVERY)
            {
                read(self, &mut lists);
            }
            if let Some((_, known)) = &lists {
                let unmeshed = self.unmeshed(&known.knowable);
                if unmeshed == 0 {
                    let took = started.elapsed();
                    if read(self, &mut lists) {
                        self.first_mesh.get_or_insert(took);
                        let lists = lists.map(|(_, l)| l)?;
                        return Some(Mesh {
                            took,
                            lists_changed,
                            lists,
                        });
                    }
                } else if reported.elapsed() > Duration::from_secs(30) {
                    let took = started.elapsed().as_secs();
                    eprintln!("{what}: {unmeshed} servers not yet meshed after {took} s");
                    reported = Instant::now();
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        None
    }

    /// Renames 20 random profiles, one at a time, and times until a search on every node
    /// listing their server finds the new name.
    fn propagate(&mut self, lists: &[BTreeSet<usize>]) -> Vec<Duration> {
        let tag = hex::encode(iop_profile_server::crypto::random_bytes::<4>());
        let count = self.lab.nodes.len();
        let mut delays = Vec::new();
        let mut missing = 0;
        for change in 0..CHANGES {
            let origin = 1 + usize::try_from(below(count as u64)).expect("small");
            let targets: Vec<usize> = (1..=count)
                .filter(|&t| lists.get(t - 1).is_some_and(|l| l.contains(&origin)))
                .collect();
            let name = format!("change {change} {tag}");
            let sent = OnceLock::new();
            let (nodes, hosted) = (&self.lab.nodes, &mut self.hosted);
            let profile =
                &mut hosted[origin - 1][usize::try_from(below(PROFILES as u64)).expect("small")];
            std::thread::scope(|scope| {
                let pollers: Vec<_> = targets
                    .iter()
                    .map(|&t| {
                        let (node, name, sent) = (&nodes[t - 1], &name, &sent);
                        scope.spawn(move || until_found(node, name, sent))
                    })
                    .collect();
                rename(&nodes[origin - 1], profile, &name, &sent);
                for poller in pollers {
                    match poller.join().expect("poller") {
                        Some(delay) => delays.push(delay),
                        None => missing += 1,
                    }
                }
            });
        }
        if missing > 0 {
            println!(
                "changes not found within {} s: {missing}",
                PATIENCE.as_secs()
            );
        }
        delays
    }

    /// Leaves the network alone for `window` beside a lone server (the same 50 profiles, no
    /// LOC, no neighbours) and prints memory and CPU of both; returns the servers' largest
    /// resident MiB.
    fn idle(&self, window: Duration) -> f64 {
        let lone_dir = tempfile::tempdir().expect("temp dir");
        let lone_node = Node::new(0, None, Ipv4Addr::LOCALHOST, self.lab.nodes[0].ports, 0);
        let lone_data = lone_dir.path().join("data");
        std::fs::create_dir_all(&lone_data).expect("data directory");
        seed_hosted(&lone_data, &seeds(&profiles(&lone_node)));
        let mut lone = common::spawn_server(lone_dir.path(), "");
        let mut pids: Vec<u32> = self.lab.nodes.iter().filter_map(Node::server_pid).collect();
        pids.push(lone.child.id());
        let locs: Vec<u32> = self
            .lab
            .nodes
            .iter()
            .filter_map(|n| Some(n.loc.as_ref()?.id()))
            .collect();
        let before: Vec<u64> = pids.iter().map(|&pid| cpu_ns(pid)).collect();
        let locs_before: u64 = locs.iter().map(|&pid| cpu_ns(pid)).sum();
        std::thread::sleep(window);
        let minutes = window.as_secs_f64() / 60.0;
        if !locs.is_empty() {
            let used = locs.iter().map(|&pid| cpu_ns(pid)).sum::<u64>() - locs_before;
            println!(
                "idle: the LOC daemons used {:.3} CPU s per daemon per minute",
                secs(used) / minutes / small(locs.len())
            );
        }
        let mut cpu: Vec<f64> = pids
            .iter()
            .zip(before)
            .map(|(&pid, before)| secs(cpu_ns(pid).saturating_sub(before)) / minutes)
            .collect();
        let mut rss: Vec<f64> = pids
            .iter()
            .map(|&pid| small(rss_kib(pid)) / 1024.0)
            .collect();
        let (lone_cpu, lone_rss) = (cpu.pop().unwrap_or(0.0), rss.pop().unwrap_or(0.0));
        lone.terminate();
        cpu.sort_by(f64::total_cmp);
        rss.sort_by(f64::total_cmp);
        let median = |values: &[f64]| values.get(values.len() / 2).copied().unwrap_or(0.0);
        let max = |values: &[f64]| values.last().copied().unwrap_or(0.0);
        println!(
            "idle {} s, CPU s per server per minute: median {:.3}, max {:.3}; a lone server \
             {lone_cpu:.3}",
            window.as_secs(),
            median(&cpu),
            max(&cpu),
        );
        println!(
            "resident per server: median {:.1} MiB, max {:.1} MiB; a lone server {lone_rss:.1} \
             MiB (ratio of the max {:.2})",
            median(&rss),
            max(&rss),
            max(&rss) / lone_rss.max(0.1)
        );
        max(&rss)
    }

    /// Kills 10 % of the servers (SIGKILL), renames a profile on three others meanwhile,
    /// restarts them after 5 s, waits for the mesh and checks every node's search.
    fn churn(&mut self) -> Churn {
        let count = self.lab.nodes.len();
        let victims: Vec<usize> = pick(count, count.div_ceil(10));
        let logs_before: Vec<usize> = self.lab.nodes.iter().map(log_lines).collect();
        let started = Instant::now();
        for &victim in &victims {
            kill(&mut self.lab.nodes[victim].server);
        }
        let survivors: Vec<usize> = (0..count).filter(|i| !victims.contains(i)).collect();
        for (n, &pick) in pick(survivors.len(), 3.min(survivors.len()))
            .iter()
            .enumerate()
        {
            let node = survivors[pick];
            let profile = &mut self.hosted[node][n];
            let unused = OnceLock::new();
            rename(
                &self.lab.nodes[node],
                profile,
                &format!("meanwhile {n}"),
                &unused,
            );
        }
        std::thread::sleep(Duration::from_secs(5));
        for &victim in &victims {
            self.lab.nodes[victim].start_server(NEIGHBORHOOD, LOC_REFRESH_SECS);
        }
        std::thread::sleep(Duration::from_secs(1));
        self.lab.nodes.iter_mut().for_each(assert_running);
        // A restarted server finds its neighbours and followers in its database at once; the
        // mesh is whole again when, besides, every node's search holds what it should.
        let restarted = Instant::now();
        let mut audit = Audit::default();
        let mut mesh = None;
        while restarted.elapsed() < PATIENCE {
            if let Some(formed) = self.until_meshed("mesh after churn") {
                audit = self.audit(&formed.lists);
                if audit.clean() {
                    mesh = Some(restarted.elapsed());
                    break;
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        let log_rate = self
            .lab
            .nodes
            .iter()
            .zip(logs_before)
            .map(|(node, before)| small(log_lines(node).saturating_sub(before)) / minutes)
            .fold(0.0, f64::max);
        Churn {
            victims: victims.len(),
            mesh,
            audit,
            log_rate,
        }
    }

    /// Compares every node's search with the profiles it must hold (its own and those of its
    /// knowable relations) and may hold (those of every relation its LOCs list); every
    /// profile found must be in its latest version.
    fn audit(&self, lists: &Lists) -> Audit {
        let latest: BTreeMap<Vec<u8>, &str> = self
            .hosted
            .iter()
            .flatten()
            .map(|hosted| (hosted.identity.public_key(), hosted.profile.name.as_str()))
            .collect();
        let keys_of = |sources: &BTreeSet<usize>, own: usize| -> BTreeSet<Vec<u8>> {
            sources
                .iter()
                .chain([&own])
                .flat_map(|&source| &self.hosted[source - 1])
                .map(|hosted| hosted.identity.public_key())
                .collect()
        };
        let mut audit = Audit::default();
        for node in &self.lab.nodes {
            let expected = keys_of(&lists.knowable[node.index - 1], node.index);
            let allowed = keys_of(&lists.listed[node.index - 1], node.index);
            let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
            for (key, name) in everything_on(node) {
                *seen.entry(key.clone()).or_default() += 1;
                if !allowed.contains(&key) {
                    audit.unexpected += 1;
                } else if latest.get(&key).is_some_and(|latest| *latest != name) {
                    audit.lost += 1;
                }
            }
            audit.lost += expected
                .iter()
                .filter(|key| !seen.contains_key(*key))
                .count();
            audit.duplicated += seen.values().map(|n| n - 1).sum::<usize>();
        }
        audit
    }
}

/// A mesh, once formed.
struct Mesh {
    /// How long it took.
    took: Duration,
    /// When, within that time, the LOCs' lists last changed.
    lists_changed: Duration,
    /// Every node's relations.
    lists: Lists,
}

/// Every node's relations as the LOCs give them.
#[derive(Clone, Default, PartialEq, Eq)]
struct Lists {
    /// Relations a server can learn of: one side's LOC lists the other with its service.
    knowable: Vec<BTreeSet<usize>>,
    /// Relations some LOC lists, with or without the service.
    listed: Vec<BTreeSet<usize>>,
}

impl Lists {
    /// Listed pairs that no server can learn of.
    fn unknowable(&self) -> usize {
        let all: usize = self.listed.iter().map(BTreeSet::len).sum();
        let knowable: usize = self.knowable.iter().map(BTreeSet::len).sum();
        (all - knowable) / 2
    }
}

/// What the churn showed.
struct Churn {
    victims: usize,
    mesh: Option<Duration>,
    audit: Audit,
    log_rate: f64,
}

/// Differences between what nodes' searches hold and what their neighbourhoods host: `lost`
/// counts profiles missing or in an older version, `unexpected` those of servers that no LOC
/// lists as the node's neighbour.
#[derive(Default)]
struct Audit {
    lost: usize,
    duplicated: usize,
    unexpected: usize,
}

impl Audit {
    /// Nothing lost or duplicated; `unexpected` profiles come from neighbours a server keeps
    /// after its LOC stopped listing them without telling it, until they expire.
    fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

/// Lines in the node's server log so far.
fn log_lines(node: &Node) -> usize {
    std::fs::read_to_string(node.server_log()).map_or(0, |log| log.lines().count())
}

/// Every profile a search on `node` finds, as (public key, name), all pages.
fn everything_on(node: &Node) -> Vec<(Vec<u8>, String)> {
    let port = node.ports.others;
    node.with_client(async move || {
        let mut client = Client::tls(port).await;
        let answer = client
            .single(1, Single::ProfileSearch(search_all(10_000)))
            .await;
        let Found::ProfileSearch(first) = single_body(answer) else {
            panic!("not a search answer");
        };
        let mut found = first.profiles;
        let total = usize::try_from(first.total_record_count).expect("small");
        while found.len() < total {
            let part = ps::ProfileSearchPartRequest {
                record_index: u32::try_from(found.len()).expect("small"),
                record_count: 1_000.min(u32::try_from(total - found.len()).expect("small")),
            };
            let answer = client.single(2, Single::ProfileSearchPart(part)).await;
            let Found::ProfileSearchPart(next) = single_body(answer) else {
                panic!("not a search part");
            };
            if next.profiles.is_empty() {
                break;
            }
            found.extend(next.profiles);
        }
        found
            .iter()
            .filter_map(|p| p.signed_profile.as_ref()?.decode_profile())
            .map(|profile| (profile.public_key, profile.name))
            .collect()
    })
}

/// Renames `profile` on `node` to `name`, noting in `sent` when the request left.
fn rename(node: &Node, profile: &mut Hosted, name: &str, sent: &OnceLock<Instant>) {
    let ports = node.ports;
    node.with_client(async move || {
        let mut update = profile.update();
        update.profile.name = name.to_owned();
        let _ = sent.set(Instant::now());
        profile.change(&ports, update).await;
    });
}

/// Searches `node` for `name` every [`SEARCH_EVERY`] until found; the time since `sent`.
fn until_found(node: &Node, name: &str, sent: &OnceLock<Instant>) -> Option<Duration> {
    let port = node.ports.others;
    node.with_client(async move || {
        let mut client = Client::tls(port).await;
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            let request = ps::ProfileSearchRequest {
                name: name.to_owned(),
                ..search_all(10)
            };
            let answer = client.single(1, Single::ProfileSearch(request)).await;
            if let Found::ProfileSearch(found) = single_body(answer)
                && !found.profiles.is_empty()
            {
                return sent.get().map(Instant::elapsed);
            }
            tokio::time::sleep(SEARCH_EVERY).await;
        }
        None
    })
}

/// A search for every profile, without images, up to `max_total` of them.
fn search_all(max_total: u32) -> ps::ProfileSearchRequest {
    ps::ProfileSearchRequest {
        include_hosted_only: false,
        include_thumbnail_images: false,
        max_response_record_count: max_total.min(1_000),
        max_total_record_count: max_total,
        latitude: NO_LOCATION,
        longitude: NO_LOCATION,
        ..Default::default()
    }
}
