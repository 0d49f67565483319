//! The daemon under a service manager: the `Type=notify` messages of
//! `systemd/iop-profile-server.service` arrive on `NOTIFY_SOCKET`, in order.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kit::server_command;

/// Generous, because the ARM runs start the binary under qemu.
const WAIT: Duration = Duration::from_secs(30);

/// A stand-in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        NotifySocket {
            socket,
            _dir: dir,
            path: path.display().to_string(),
        }
    }

    /// Reads messages until one has the line `wanted`; returns every line read on the way.
    fn wait_for(&self, wanted: &str, child: &mut Child) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status} before sending {wanted}; got {seen:?}");
            }
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            seen.extend(text.lines().map(str::to_owned));
            if text.lines().any(|line| line == wanted) {
                return seen;
            }
        }
        let _ = child.kill();
        panic!("no {wanted} within {WAIT:?}; got {seen:?}");
    }
}

fn start_server(notify: &NotifySocket, dir: &std::path::Path) -> Child {
    let config = dir.join("config.toml");
    let text = format!(
        "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n\
         [[listener]]\nport = 0\nroles = [\"primary\"]\n\
         [[listener]]\nport = 0\nroles = [\"cl_non_customer\", \"cl_customer\"]\n",
        dir.join("data").display().to_string()
    );
    std::fs::write(&config, text).expect("write config");
    server_command()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        // 1 s watchdog: the daemon must ping every 500 ms.
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server")
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn notifies_ready_watchdog_and_stopping() {
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = start_server(&notify, dir.path());

    let before_ready = notify.wait_for("READY=1", &mut child);
    assert!(
        !before_ready.iter().any(|line| line == "STOPPING=1"),
        "{before_ready:?}"
    );
    assert!(
        before_ready
            .iter()
            .any(|line| line.starts_with("STATUS=serving as ")),
        "{before_ready:?}"
    );
    // At least two pings: the watchdog keeps going, it is not a one-off after READY. Each
    // comes with a fresh status line that `systemctl status` shows.
    let first = notify.wait_for("WATCHDOG=1", &mut child);
    let second = notify.wait_for("WATCHDOG=1", &mut child);
    let status = second
        .iter()
        .chain(&first)
        .find(|line| line.starts_with("STATUS=serving as "))
        .unwrap_or_else(|| panic!("no STATUS= with a watchdog ping: {first:?} {second:?}"));
    assert!(
        status.ends_with(": 0 hosted, 0 online, 0 neighbours, no LOC, no CAN"),
        "{status}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    notify.wait_for("STOPPING=1", &mut child);
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn without_notify_socket_the_daemon_runs_and_stops_as_usual() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let text = format!(
        "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n\
         [[listener]]\nport = 0\nroles = [\"primary\"]\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&config, text).expect("write config");
    // The watchdog variable alone must not make the daemon fail: no socket, no messages.
    let mut child = server_command()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .any(|line| line.contains("serving"));
    assert!(serving, "server logs that it is serving");
    std::thread::spawn(move || lines.for_each(drop));
    // Long enough for two watchdog periods to pass.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(child.try_wait().expect("wait").is_none(), "server exited");
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    assert!(wait_exit(&mut child).success());
}
