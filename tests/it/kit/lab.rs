//! Several nodes on one machine, each a LOC and a server process: with the real LOC daemon
//! (iop-locnetd 2.0.0-a1) every node gets a network namespace of its own, joined by a bridge
//! in another namespace (10.77.0.0/24 exists only inside them), since the daemon refuses
//! loopback node addresses outside its test mode; with LOC stand-ins every node stays on
//! loopback with ports of its own. Used by `tests/it/real_loc.rs` and `benches/network.rs`.

use std::fmt::Write as _;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::frame;
use iop_profile_server::wire::loc::local_service_request::LocalServiceRequestType as LocalRequest;
use iop_profile_server::wire::loc::local_service_response::LocalServiceResponseType as LocalResponse;
use iop_profile_server::wire::loc::message::MessageType;
use iop_profile_server::wire::loc::{self, response::ResponseType};
use iop_profile_server::wire::loc_envelope;
use iop_profile_server::wire::loc_service::ServiceType;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Ports, read_loc_frame, server_bin};

/// The ports of a node in its own namespace, as the real LOC's neighbours expect them.
pub const NS_PRIMARY: u16 = 16987;
/// The port of every other role of a node in its own namespace.
pub const NS_OTHERS: u16 = 16988;
/// The real LOC's local service port.
pub const LOC_LOCAL_PORT: u16 = 16982;
/// The most nodes one /24 bridge holds.
pub const MAX_NS_NODES: usize = 250;

/// Where a node's server listens.
#[derive(Clone, Copy, Debug)]
pub struct NodePorts {
    /// The primary port.
    pub primary: u16,
    /// The port of every other role.
    pub others: u16,
}

impl Ports for NodePorts {
    fn port(&self, role: Role) -> u16 {
        if role == Role::Primary {
            self.primary
        } else {
            self.others
        }
    }
}

/// One node: where it stands, its files and its processes.
pub struct Node {
    /// Its number, from 1.
    pub index: usize,
    /// Its namespace, when it has one.
    pub ns: Option<String>,
    /// The address its server announces.
    pub address: Ipv4Addr,
    /// Where its server listens (inside its namespace when it has one).
    pub ports: NodePorts,
    /// Where its LOC takes local services.
    pub loc_port: u16,
    /// Its files: LOC home, server data, configuration and logs.
    pub dir: tempfile::TempDir,
    /// The LOC daemon, when it runs one.
    pub loc: Option<Child>,
    /// The server process.
    pub server: Option<Child>,
    /// Environment variables set for the server.
    pub environment: Vec<(String, String)>,
}

/// The nodes and their namespaces; dropping it kills every process and deletes the
/// namespaces.
pub struct Lab {
    hub: Option<String>,
    /// The nodes, node i at index i - 1.
    pub nodes: Vec<Node>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// `ip -n ns -batch -` with `commands`, one per line.
fn ip_batch(ns: &str, commands: &str) {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(commands.as_bytes()).expect("ip reads");
    drop(stdin);
    let status = child.wait().expect("ip ends");
    assert!(status.success(), "ip -n {ns} -batch");
}

/// The link-layer address of node `index`'s interface: locally administered, unique.
fn mac(index: usize) -> String {
    format!("02:77:00:00:{:02x}:{:02x}", index >> 8, index & 0xff)
}

/// The real LOC daemon named by `IOP_LOCNETD`, when it is set.
pub fn locnetd() -> Option<PathBuf> {
    std::env::var_os("IOP_LOCNETD").map(PathBuf::from)
}

/// The LOC node id of node `index`, as `--nodeid` gives it and LOC reports it.
pub fn node_id(index: usize) -> Vec<u8> {
    format!("{index:064x}").into_bytes()
}

impl Lab {
    /// `count` namespaces on one bridge, node i at 10.77.0.i; needs root.
    pub fn namespaces(count: usize) -> Lab {
        assert!(count <= MAX_NS_NODES, "at most {MAX_NS_NODES} nodes");
        let tag = std::process::id() % 100_000;
        let hub = format!("iop{tag}hub");
        ip(&["netns", "add", &hub]);
        let mut lab = Lab {
            hub: Some(hub.clone()),
            nodes: Vec::new(),
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for index in 1..=count {
            let ns = format!("iop{tag}n{index}");
            let (inner, outer) = (format!("v{tag}i{index}"), format!("v{tag}o{index}"));
            ip(&["netns", "add", &ns]);
            lab.nodes.push(Node::new(
                index,
                Some(ns.clone()),
                Ipv4Addr::new(10, 77, 0, u8::try_from(index).expect("few nodes")),
                NodePorts {
                    primary: NS_PRIMARY,
                    others: NS_OTHERS,
                },
                LOC_LOCAL_PORT,
            ));
            ip(&[
                "link",
                "add",
                &inner,
                "address",
                &mac(index),
                "type",
                "veth",
                "peer",
                "name",
                &outer,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &hub]);
            let address = format!("10.77.0.{index}/24");
            ip(&["-n", &ns, "addr", "add", &address, "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &outer, "up"]);
        }
        // The kernel keeps one neighbour table for all namespaces and refuses new entries
        // beyond gc_thresh3 (1,024 by default): at 100 nodes, ARP for a third of them failed
        // ("neighbor table overflow") and their LOCs never reached the seed. Permanent
        // entries are not counted, so every node knows every other's address from the start.
        for node in &lab.nodes {
            let ns = node.ns.as_deref().expect("a namespace");
            let inner = format!("v{tag}i{}", node.index);
            let mut entries = String::new();
            for other in (1..=count).filter(|&other| other != node.index) {
                let _ = writeln!(
                    entries,
                    "neigh replace 10.77.0.{other} lladdr {} dev {inner} nud permanent",
                    mac(other)
                );
            }
            ip_batch(ns, &entries);
        }
        lab
    }

    /// `nodes` on loopback, without namespaces (their LOCs are stand-ins).
    #[allow(dead_code, reason = "benches/network.rs runs nodes on loopback")]
    pub fn loopback(nodes: Vec<Node>) -> Lab {
        Lab { hub: None, nodes }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill(&mut node.server);
            kill(&mut node.loc);
            if let Some(ns) = &node.ns {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        if let Some(hub) = &self.hub {
            let _ = Command::new("ip").args(["netns", "del", hub]).status();
        }
    }
}

/// Kills a process (SIGKILL) and reaps it.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Node {
    /// A node whose files live in a fresh temporary directory.
    pub fn new(
        index: usize,
        ns: Option<String>,
        address: Ipv4Addr,
        ports: NodePorts,
        loc_port: u16,
    ) -> Node {
        Node {
            index,
            ns,
            address,
            ports,
            loc_port,
            dir: tempfile::tempdir().expect("node directory"),
            loc: None,
            server: None,
            environment: Vec::new(),
        }
    }

    /// Where node `i` stands: a line of nodes about a kilometre apart, one neighbourhood.
    pub fn location(&self) -> (f64, f64) {
        let i = f64::from(u32::try_from(self.index).expect("few nodes"));
        (47.5 + i * 0.01, 19.0 + i * 0.01)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log (stdout and stderr).
    pub fn server_log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, program: &Path) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Starts (or restarts) this node's real LOC; node 1 is everyone's seed.
    pub fn start_loc(&mut self, locnetd: &Path) {
        let home = self.dir.path().join("loc");
        std::fs::create_dir_all(&home).expect("LOC home");
        let (latitude, longitude) = self.location();
        let log = File::create(home.join("stdout.log")).expect("LOC log");
        let child = self
            .command(locnetd)
            .env("HOME", &home)
            .arg("--nodeid")
            .arg(String::from_utf8(node_id(self.index)).expect("hex"))
            .args(["--latitude", &latitude.to_string()])
            .args(["--longitude", &longitude.to_string()])
            .args(["--host", &self.address.to_string()])
            .args(["--seednode", "10.77.0.1"])
            .arg("--dbpath")
            .arg(home.join("locnet.sqlite"))
            .arg("--logpath")
            .arg(home.join("debug.log"))
            .arg("--configfile")
            .arg(home.join("none.cfg"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("iop-locnetd starts");
        self.loc = Some(child);
    }

    /// The server's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Starts (or restarts) this node's server, on the same ports and data every time, with
    /// `neighborhood` as its `[neighborhood]` table's keys and LOC's neighbourhood re-read
    /// every `loc_refresh_secs`.
    pub fn start_server(&mut self, neighborhood: &str, loc_refresh_secs: u32) {
        let (latitude, longitude) = self.location();
        let NodePorts { primary, others } = self.ports;
        let config = format!(
            "data_dir = {:?}\ntest_mode = true\nexternal_address = \"{}\"\n\
             [[listener]]\nport = {primary}\nroles = [\"primary\"]\n\
             [[listener]]\nport = {others}\n\
             roles = [\"sr_neighbor\", \"cl_non_customer\", \"cl_customer\", \"cl_app_service\"]\n\
             [location]\nlatitude = {latitude}\nlongitude = {longitude}\n\
             [neighborhood]\n{neighborhood}\n\
             [loc]\naddress = \"127.0.0.1:{}\"\nreconnect_secs = 1\n\
             neighborhood_refresh_secs = {loc_refresh_secs}\n",
            self.data_dir().display().to_string(),
            self.address,
            self.loc_port,
        );
        std::fs::write(self.config_path(), config).expect("server config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.server_log())
            .expect("server log");
        let child = self
            .command(Path::new(&server_bin()))
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the server starts");
        self.server = Some(child);
    }

    /// The server's process id (`ip netns exec` runs the server in its own place).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The server's status snapshot (over its observation socket, which no namespace hides).
    pub fn status(&self) -> Option<serde_json::Value> {
        let output = Command::new(server_bin())
            .args(["status", "--json", "--config"])
            .arg(self.config_path())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    }

    /// Whether the server has `neighbours` initialised neighbours and `followers` initialised
    /// followers.
    pub fn initialised(&self, neighbors: usize, followers: usize) -> bool {
        self.status().is_some_and(|status| {
            status["neighbours"]["initialized"] == neighbors
                && status["followers"]["initialized"] == followers
        })
    }

    /// Runs `client` on a thread of its own (inside this node's namespace, when it has one),
    /// where the node's server and LOC are on loopback.
    pub fn with_client<T: Send>(&self, client: impl AsyncFnOnce() -> T + Send) -> T {
        let path = self.ns.as_ref().map(|ns| format!("/var/run/netns/{ns}"));
        std::thread::scope(|scope| {
            let entered = scope.spawn(move || {
                if let Some(path) = path {
                    let namespace = File::open(&path).expect("the namespace");
                    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("enter the namespace");
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(client())
            });
            entered.join().expect("the client thread")
        })
    }

    /// The node ids this node's LOC lists as neighbours, each with whether LOC gives its
    /// profile service, or `None` when it does not answer.
    pub fn loc_neighbors(&self) -> Option<Vec<(Vec<u8>, bool)>> {
        let port = self.loc_port;
        self.with_client(async move || {
            let ask = async {
                let mut socket = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let request =
                    LocalRequest::GetNeighbourNodes(loc::GetNeighbourNodesByDistanceLocalRequest {
                        keep_alive_and_send_updates: false,
                    });
                let message = loc_envelope::request(1, request);
                socket.write_all(&frame::encode(&message)).await.ok()?;
                let bytes = read_loc_frame(&mut socket).await?;
                let answer: loc::Message =
                    frame::decode_body(bytes.get(frame::HEADER_LEN..)?).ok()?;
                let Some(MessageType::Response(loc::Response {
                    response_type: Some(ResponseType::LocalService(local)),
                    ..
                })) = answer.message_type
                else {
                    return None;
                };
                let Some(LocalResponse::GetNeighbourNodes(list)) =
                    local.local_service_response_type
                else {
                    return None;
                };
                let profile = ServiceType::profile_name();
                let listed = list.nodes.into_iter().map(|node| {
                    let served = node
                        .services
                        .iter()
                        .any(|service| service.r#type == profile);
                    (node.node_id, served)
                });
                Some(listed.collect())
            };
            tokio::time::timeout(Duration::from_secs(5), ask)
                .await
                .ok()
                .flatten()
        })
    }
}
