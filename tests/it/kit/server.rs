//! Starts the real server in-process on ephemeral loopback ports with a temporary data directory
//! and short timeouts.

use std::fmt::Write as _;
use std::time::Duration;

use iop_profile_server::config::Config;
use iop_profile_server::role::Role;
use iop_profile_server::runtime::{self, RunningServer};
use tempfile::TempDir;

/// How roles are spread over ports (PS02 conventions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `primary` alone; every TLS role on one shared port (the operator default).
    Shared,
    /// `primary` alone; each TLS role on a port of its own.
    Split,
    /// `primary`, `sr_neighbor`, and the three client roles together (PS00006).
    ClientsApart,
}

/// Knobs a test may turn; everything else is the documented default.
#[derive(Clone, Debug)]
pub struct Options {
    /// Port layout.
    pub layout: Layout,
    /// `timeouts.client_idle_secs`.
    pub client_idle_secs: u64,
    /// `timeouts.server_idle_secs`.
    pub server_idle_secs: u64,
    /// Extra TOML appended to `[limits]`.
    pub limits: String,
    /// Extra TOML appended to `[timeouts]`.
    pub timeouts: String,
    /// Extra TOML appended to `[neighborhood]`.
    pub neighborhood: String,
    /// TOML of a `[loc]` table, which is written only when this is not empty.
    pub loc: String,
    /// Extra TOML appended at the end, after every table (e.g. a `[loc]` table).
    pub extra: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            layout: Layout::Shared,
            client_idle_secs: 60,
            server_idle_secs: 300,
            limits: String::new(),
            timeouts: String::new(),
            neighborhood: String::new(),
            loc: String::new(),
            extra: String::new(),
        }
    }
}

impl Options {
    /// Default options with `layout`.
    pub fn layout(layout: Layout) -> Options {
        Options {
            layout,
            ..Options::default()
        }
    }

    /// Short idle timeouts for the PS00 idle tests (client 2 s, server 3 s).
    pub fn short_idle(layout: Layout) -> Options {
        Options {
            layout,
            client_idle_secs: 2,
            server_idle_secs: 3,
            ..Options::default()
        }
    }
}

/// Anything that tells which port serves a role: the in-process server or a server process.
pub trait Ports {
    /// The port of `role`.
    fn port(&self, role: Role) -> u16;
}

impl Ports for TestServer {
    fn port(&self, role: Role) -> u16 {
        TestServer::port(self, role)
    }
}

/// A running server and its data directory; stopping it keeps the directory.
pub struct TestServer {
    server: Option<RunningServer>,
    /// The temporary data directory, kept across restarts and removed when the test ends.
    pub dir: TempDir,
    /// The configuration text it was started with.
    pub config_text: String,
    /// That text with the ports the server had when it was last stopped.
    same_ports: Option<String>,
}

impl TestServer {
    /// Starts a server with `options` on a fresh data directory.
    pub async fn start(options: &Options) -> TestServer {
        TestServer::start_in(tempfile::tempdir().expect("temp dir"), options).await
    }

    /// Starts a server on a data directory prepared by the test (e.g. seeded with neighbour
    /// profiles through the store).
    pub async fn start_in(dir: TempDir, options: &Options) -> TestServer {
        let config_text = config_text(options, &dir);
        let server = start_with(&config_text).await;
        TestServer {
            server: Some(server),
            dir,
            config_text,
            same_ports: None,
        }
    }

    /// Stops the server and starts it again on the same data directory and configuration.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(start_with(&self.config_text).await);
    }

    /// Starts the server again on the same data directory and the ports it last had, as a
    /// node with configured ports comes back after a crash or an upgrade (stops it first when
    /// it runs).
    pub async fn restart_on_same_ports(&mut self) {
        self.stop().await;
        let text = self
            .same_ports
            .clone()
            .unwrap_or_else(|| self.config_text.clone());
        self.server = Some(start_with(&text).await);
    }

    /// The configuration with every `port = 0` replaced by the port the server got.
    fn with_ports(&self, running: &RunningServer) -> String {
        let mut text = String::new();
        let mut lines = self.config_text.lines().peekable();
        while let Some(line) = lines.next() {
            let roles = lines
                .peek()
                .and_then(|next| next.strip_prefix("roles = [\""));
            let role = roles.and_then(|rest| rest.split('"').next());
            let port = role
                .and_then(Role::from_config_name)
                .and_then(|role| running.port_of(role));
            let _ = match port {
                Some(port) if line == "port = 0" => writeln!(text, "port = {port}"),
                _ => writeln!(text, "{line}"),
            };
        }
        text
    }

    /// Stops the server.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.same_ports = Some(self.with_ports(&server));
            server.stop().await;
        }
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    /// The port of `role`.
    pub fn port(&self, role: Role) -> u16 {
        self.running().port_of(role).expect("role is served")
    }

    /// The server's network id.
    pub fn network_id(&self) -> [u8; 32] {
        self.running().network_id().0
    }

    /// The JSON snapshot `iop-profile-server status --json` prints, read from the observation
    /// socket in the data directory.
    pub async fn snapshot(&self) -> serde_json::Value {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let path = self.dir.path().join("status.sock");
        let mut stream = tokio::net::UnixStream::connect(&path)
            .await
            .expect("observation socket");
        stream.write_all(b"json").await.expect("ask");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("snapshot");
        serde_json::from_str(&text).expect("JSON snapshot")
    }

    /// Polls the operator's status line until it contains `part`; fails after a minute of
    /// (possibly paused) time.
    pub async fn wait_for_status(&self, part: &str) -> String {
        let status = self.running().status();
        for _ in 0..600 {
            let line = status.line().await.expect("server runs");
            if line.contains(part) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the status line never showed {part:?}");
    }
}

async fn start_with(text: &str) -> RunningServer {
    let config = Config::parse(text).expect("test configuration is valid");
    runtime::start(config).await.expect("server starts")
}

fn config_text(options: &Options, dir: &TempDir) -> String {
    let listeners = match options.layout {
        Layout::Shared => vec![
            vec!["primary"],
            vec![
                "sr_neighbor",
                "cl_non_customer",
                "cl_customer",
                "cl_app_service",
            ],
        ],
        Layout::Split => vec![
            vec!["primary"],
            vec!["sr_neighbor"],
            vec!["cl_non_customer"],
            vec!["cl_customer"],
            vec!["cl_app_service"],
        ],
        Layout::ClientsApart => vec![
            vec!["primary"],
            vec!["sr_neighbor"],
            vec!["cl_non_customer", "cl_customer", "cl_app_service"],
        ],
    };
    let mut text = format!(
        "data_dir = {:?}\nbind_address = \"127.0.0.1\"\ntest_mode = true\n",
        dir.path().display().to_string()
    );
    for roles in listeners {
        let quoted: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
        let _ = writeln!(
            text,
            "[[listener]]\nport = 0\nroles = [{}]",
            quoted.join(", ")
        );
    }
    let _ = writeln!(text, "[limits]\n{}", options.limits);
    let _ = writeln!(
        text,
        "[timeouts]\nclient_idle_secs = {}\nserver_idle_secs = {}\ntls_handshake_secs = 5\n{}",
        options.client_idle_secs, options.server_idle_secs, options.timeouts
    );
    let _ = writeln!(text, "[neighborhood]\n{}", options.neighborhood);
    if !options.loc.is_empty() {
        let _ = writeln!(text, "[loc]\n{}", options.loc);
    }
    text += "[storage]\ncache_bytes = 1048576\n";
    text += &options.extra;
    text
}

/// Idle tests wait this long past the timeout before checking the connection is closed.
pub const IDLE_MARGIN: Duration = Duration::from_secs(2);
