//! The server as a separate process, for tests that kill it.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::runner::{server_command, server_command_with_data_limit};

/// A memory line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, ...) in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a memory line")
}

/// A free loopback port (taken and released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A server process with fixed ports on a data directory that outlives it.
pub struct ServerProcess {
    /// The child process.
    pub child: Child,
    /// The primary port.
    pub primary: u16,
    /// The port of every TLS role.
    pub tls: u16,
}

impl ServerProcess {
    /// Writes a configuration into `dir` and starts the binary on it; waits until it serves.
    pub fn start(dir: &Path) -> ServerProcess {
        ServerProcess::start_with(dir, "")
    }

    /// Like [`ServerProcess::start`], with `extra` TOML appended to the configuration.
    pub fn start_with(dir: &Path, extra: &str) -> ServerProcess {
        ServerProcess::start_with_command(dir, extra, server_command())
    }

    /// Like [`ServerProcess::start`], under a data memory limit of `bytes` (natively; see
    /// [`server_command_with_data_limit`]).
    pub fn start_with_data_limit(dir: &Path, bytes: u64) -> ServerProcess {
        ServerProcess::start_with_command(dir, "", server_command_with_data_limit(bytes))
    }

    /// Like [`ServerProcess::start_with`], run by `command` (a [`server_command`] the caller
    /// changed, such as its environment).
    pub fn start_with_command(
        dir: &Path,
        extra: &str,
        mut command: std::process::Command,
    ) -> ServerProcess {
        let (primary, tls) = (free_port(), free_port());
        let config = config_file(dir, primary, tls, extra);
        let mut child = command
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut problem = Some("server process did not start".to_owned());
        let mut said = Vec::new();
        for line in lines.by_ref().take(50).map_while(Result::ok) {
            said.push(line.clone());
            // Logs to a pipe are plain text: no colour codes.
            if line.contains('\x1b') {
                problem = Some(format!("colour codes in piped logs: {line:?}"));
                break;
            }
            if line.contains("serving") {
                problem = None;
                break;
            }
        }
        if let Some(problem) = problem {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{problem}; it said: {}", said.join(" | "));
        }
        // The rest of the log is dropped, or kept in IOP_TEST_SERVER_LOG to look into a run.
        let keep = std::env::var_os("IOP_TEST_SERVER_LOG").and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        std::thread::spawn(move || match keep {
            Some(mut file) => lines.map_while(Result::ok).for_each(|line| {
                let _ = writeln!(file, "{line}");
            }),
            None => lines.for_each(drop),
        });
        ServerProcess {
            child,
            primary,
            tls,
        }
    }

    /// SIGTERM, then waits (up to 15 s) for the exit status of an orderly shutdown.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(signalled.is_ok_and(|s| s.success()), "SIGTERM delivered");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl super::server::Ports for ServerProcess {
    fn port(&self, role: iop_profile_server::role::Role) -> u16 {
        if role == iop_profile_server::role::Role::Primary {
            self.primary
        } else {
            self.tls
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(dir: &Path, primary: u16, tls: u16, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n\
         [[listener]]\nport = {primary}\nroles = [\"primary\"]\n\
         [[listener]]\nport = {tls}\nroles = [\"sr_neighbor\", \"cl_non_customer\", \"cl_customer\", \"cl_app_service\"]\n{extra}\n",
        dir.join("data").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    path
}
