//! Floods a hostile neighbour or follower can throw (issue 25), each against a fresh release
//! server: refresh items from an initialised neighbour, initialisations started without end,
//! and followers that answer every batch just before the idle timeout.

use std::time::{Duration, Instant};

use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, shared_profile_update_item::ActionType};

use super::Pinger;
use crate::common::kit::lab::NodePorts;
use crate::common::kit::loc::{Generation, LocStandIn, announcement};
use crate::common::kit::{
    Follower, Hosted, Identity, Images, Neighbor, SimServer, finish_request,
    random_profiles_with_images, update_request,
};
use crate::common::{Seeded, Server, seed_hosted, spawn_server};

/// How long each peer flood lasts.
const FLOOD: Duration = Duration::from_secs(30);
/// The servers' idle timeout for servers: the slow followers answer just under it.
const SERVER_IDLE_SECS: u64 = 20;

/// What one peer flood did to the server.
pub struct Outcome {
    /// Bytes the server wrote to disk meanwhile (`write_bytes` of /proc/<pid>/io).
    pub disk_bytes: u64,
    /// The worst round trip of the unrelated client's pings meanwhile.
    pub worst_ping: Duration,
    /// What the flood got.
    pub what: String,
}

/// Bytes `pid` has caused to be written to storage so far.
fn disk_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("write_bytes: "))
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A fresh server on `dir` with `limits` added to its `[limits]` and `extra` tables, and a
/// pinger on it.
fn server(dir: &std::path::Path, limits: &str, extra: &str) -> (Server, Pinger) {
    let server = spawn_server(
        dir,
        &format!(
            "[limits]\nexempt_loopback = false\n{limits}\n[timeouts]\nserver_idle_secs = \
             {SERVER_IDLE_SECS}\n{extra}"
        ),
    );
    let pinger = Pinger::start(server.primary);
    (server, pinger)
}

/// Runs `flood` against `server`, measuring disk writes and the pinger.
async fn measured(
    server: &Server,
    pinger: &Pinger,
    flood: impl std::future::Future<Output = String>,
) -> Outcome {
    let pid = server.child.id();
    let _ = pinger.take_worst();
    let before = disk_bytes(pid);
    let what = flood.await;
    Outcome {
        disk_bytes: disk_bytes(pid).saturating_sub(before),
        worst_ping: pinger.take_worst(),
        what,
    }
}

/// Two connections of an initialised neighbour send updates of 30,000 refresh items each, as
/// fast as they are answered, for [`FLOOD`].
pub async fn refresh_flood() -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    // The server's identity and an empty database, so that S knows whom it serves.
    let sut_id = seed_hosted(&data, &[]);
    let loc = LocStandIn::start(Generation::V2).await;
    let (mut server, pinger) = server(
        dir.path(),
        "",
        &format!(
            "[neighborhood]\ninit_delay_max_secs = 0\n{}",
            loc.config("string")
        ),
    );
    let key = Identity::random();
    let mut simulated = SimServer::start(key.clone(), sut_id.to_vec()).await;
    loc.wait_attached(1).await;
    let id: [u8; 32] = key.network_id().try_into().expect("32 bytes");
    loc.add_neighbor(announcement(&id, simulated.primary_port))
        .await;
    let mut link = simulated.handover(Duration::from_secs(30)).await;
    let finished = link.call(finish_request()).await;
    assert_eq!(finished.status, Status::Ok as i32, "{}", finished.details);
    let neighbor = Neighbor { identity: key };
    let outcome = measured(&server, &pinger, async {
        let refresh = ps::SharedProfileUpdateItem {
            action_type: Some(ActionType::Refresh(ps::SharedProfileRefreshAllItem {})),
        };
        let started = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..2 {
            let mut client = neighbor.verify(&server).await;
            let items = vec![refresh.clone(); 30_000];
            senders.push(tokio::spawn(async move {
                let mut frames = 0u32;
                while started.elapsed() < FLOOD {
                    let body = update_request(items.clone());
                    let answer = client.conversation(3 + frames, Vec::new(), body).await;
                    if answer.status != Status::Ok as i32 {
                        break;
                    }
                    frames += 1;
                }
                frames
            }));
        }
        let mut frames = 0;
        for sender in senders {
            frames += sender.await.unwrap_or(0);
        }
        format!("{frames} updates of 30,000 refresh items answered OK")
    })
    .await;
    pinger.stop();
    let _ = server.terminate();
    outcome
}

/// Four followers from one address start an initialisation with a new key each time, read
/// nothing and leave, for [`FLOOD`].
pub async fn initialisation_churn() -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    seed(dir.path(), 200);
    let (mut server, pinger) = server(dir.path(), "", "");
    let outcome = measured(&server, &pinger, async {
        let started = Instant::now();
        let mut attackers = Vec::new();
        for _ in 0..4 {
            let ports = ports_of(&server);
            attackers.push(tokio::spawn(async move {
                let (mut accepted, mut refused) = (0u32, 0u32);
                while started.elapsed() < FLOOD {
                    let (follower, answer) = Neighbor::random().start(&ports, 1, 2).await;
                    if answer.status == Status::Ok as i32 {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                    drop::<Follower>(follower);
                }
                (accepted, refused)
            }));
        }
        let (mut accepted, mut refused) = (0, 0);
        for attacker in attackers {
            let (a, r) = attacker.await.unwrap_or((0, 0));
            accepted += a;
            refused += r;
        }
        format!("{accepted} started, {refused} refused")
    })
    .await;
    pinger.stop();
    let _ = server.terminate();
    outcome
}

/// Ten followers answer each batch 1 s before the idle timeout; a legitimate follower tries
/// to start every 2 s until it may.
pub async fn slow_followers() -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    seed(dir.path(), 400);
    // The quota of starts per address would refuse the legitimate follower, on the same
    // loopback address, long before the slots matter: here it is out of the way.
    let (mut server, pinger) = server(
        dir.path(),
        "follower_starts_per_address_per_hour = 100000",
        "[neighborhood]\nfollower_init_timeout_secs = 30\n",
    );
    // The slow followers' connections are cut at the deadline, which fails their reads: that is
    // the point, not a panic worth printing.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ports = ports_of(&server);
    let outcome = measured(&server, &pinger, async {
        let mut slow = Vec::new();
        for _ in 0..10 {
            let mut follower = Neighbor::random().initialise(&ports, 1, 2).await;
            follower.answer_delay = Duration::from_secs(SERVER_IDLE_SECS - 1);
            slow.push(tokio::spawn(async move { follower.until_finish().await }));
        }
        let started = Instant::now();
        let waited = loop {
            let (_, answer) = Neighbor::random().start(&ports, 1, 2).await;
            if answer.status == Status::Ok as i32 || started.elapsed() > Duration::from_secs(300) {
                break started.elapsed();
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        slow.iter().for_each(tokio::task::JoinHandle::abort);
        for task in slow {
            let _ = task.await;
        }
        format!(
            "10 slots held; a legitimate follower waited {:.0} s",
            waited.as_secs_f64()
        )
    })
    .await;
    std::panic::set_hook(hook);
    pinger.stop();
    let _ = server.terminate();
    outcome
}

fn ports_of(server: &Server) -> NodePorts {
    NodePorts {
        primary: server.primary,
        others: server.tls,
    }
}

/// `count` hosted profiles with thumbnails, written before the server starts.
fn seed(dir: &std::path::Path, count: usize) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    let seeded: Vec<Seeded> = random_profiles_with_images(count, &Images::jpeg())
        .into_iter()
        .map(|(identity, update)| Hosted::signed(identity, update))
        .map(|hosted| Seeded {
            public_key: hosted.identity.public_key(),
            identity_type: hosted.profile.r#type.clone(),
            profile: prost::Message::encode_to_vec(&hosted.profile),
            signature: hosted.signature,
            thumbnail: hosted.thumbnail,
        })
        .collect();
    seed_hosted(&data, &seeded);
}
