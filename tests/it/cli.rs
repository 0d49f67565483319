//! The command line as operators and packagers use it: exit codes and one-line errors.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::kit::{ServerProcess, free_port, server_command};

fn cli(args: &[&str]) -> Output {
    server_command().args(args).output().expect("binary runs")
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("config.toml");
    let text = format!(
        "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n{body}",
        dir.join("data").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn listeners(primary: u16, tls: u16) -> String {
    format!(
        "[[listener]]\nport = {primary}\nroles = [\"primary\"]\n[[listener]]\nport = {tls}\n\
         roles = [\"sr_neighbor\", \"cl_non_customer\", \"cl_customer\", \"cl_app_service\"]\n"
    )
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &listeners(16987, 16988));
    let out = cli(&["check-config", "--config", &config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_refuses_a_can_url_on_one_of_our_ports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = format!(
        "{}[can]\napi_url = \"http://127.0.0.1:16988\"\n",
        listeners(16987, 16988)
    );
    let config = write_config(dir.path(), &body);
    let out = cli(&["check-config", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("can.api_url"), "{printed}");
    let fine = format!(
        "{}[can]\napi_url = \"http://127.0.0.1:15001\"\n",
        listeners(16987, 16988)
    );
    let out = cli(&["check-config", "--config", &write_config(dir.path(), &fine)]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"));
}

#[test]
fn check_config_names_every_bad_key_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = "[[listener]]\nport = 1\nroles = [\"primary\", \"cl_customer\"]\n\
                [limits]\nmax_hosted_identities = 50000\n";
    let config = write_config(dir.path(), body);
    let out = cli(&["check-config", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listener[0].roles"), "{stderr}");
    assert!(stderr.contains("limits.max_hosted_identities"), "{stderr}");
}

#[test]
fn run_with_a_bad_value_prints_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "[timeouts]\nclient_idle_secs = \"soon\"\n");
    let out = cli(&["run", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("client_idle_secs"), "{stderr}");
    assert!(!dir.path().join("data").exists());
}

#[test]
fn run_on_a_port_in_use_exits_2_naming_the_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = write_config(dir.path(), &listeners(free_port(), port));
    let out = cli(&["run", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listener[1].port"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing written");
}

#[test]
fn init_creates_a_stable_identity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &listeners(16987, 16988));
    let first = cli(&["init", "--config", &config]);
    let second = cli(&["init", "--config", &config]);
    assert!(first.status.success() && second.status.success());
    let id = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(first.stdout, second.stdout);
    let mode = std::fs::metadata(dir.path().join("data/identity.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn run_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(dir.path());
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.primary)).is_ok());
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    // The database was closed cleanly: the server starts on it again.
    let mut again = ServerProcess::start(dir.path());
    assert!(again.terminate().success());
}

fn run_config(dir: &Path) -> String {
    write_config(dir, &listeners(free_port(), free_port()))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that is expected to refuse; one that goes on serving is stopped and fails
/// the test instead of hanging it.
fn refused(args: &[&str]) -> Output {
    let child = server_command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let pid = child.id().to_string();
    let (exited, exit_seen) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timeout = std::time::Duration::from_secs(60);
        if exit_seen.recv_timeout(timeout).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
    });
    let out = child.wait_with_output().expect("exit status");
    // The child is gone: the watchdog must not signal its (reusable) pid.
    let _ = exited.send(());
    let _ = watchdog.join();
    assert_eq!(out.status.code(), Some(2), "{args:?} did not refuse");
    out
}

#[test]
fn a_lost_database_beside_its_identity_is_not_recreated_by_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = run_config(dir.path());
    let id = cli(&["init", "--config", &config]).stdout;
    let database = dir.path().join("data/profile-server.redb");
    std::fs::remove_file(&database).expect("init created the database");
    let error = stderr_of(&refused(&["run", "--config", &config]));
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains("profile-server.redb: missing"), "{error}");
    assert!(error.contains("init"), "{error}");
    assert!(!database.exists(), "nothing was created");
    // Going on with an empty database is an explicit step, and keeps the network id.
    let again = cli(&["init", "--config", &config]);
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert_eq!(again.stdout, id);
    assert!(database.exists());
}

#[test]
fn data_without_its_identity_never_gets_a_new_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = run_config(dir.path());
    assert!(cli(&["init", "--config", &config]).status.success());
    let identity = dir.path().join("data/identity.key");
    std::fs::remove_file(&identity).expect("remove");
    for command in ["run", "init"] {
        let error = stderr_of(&refused(&[command, "--config", &config]));
        assert!(
            error.contains("identity.key: missing"),
            "{command}: {error}"
        );
        assert!(!identity.exists(), "{command} created a new identity");
    }
}

#[test]
fn check_config_refuses_a_data_dir_run_would_refuse() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &listeners(16987, 16988));
    let data = dir.path().join("data");
    // A file where the directory should be.
    std::fs::write(&data, b"not a directory").expect("write");
    let out = cli(&["check-config", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains(": data_dir: "), "{printed}");
    // A database without the identity that named it.
    std::fs::remove_file(&data).expect("remove");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("profile-server.redb"), b"x").expect("write");
    let out = cli(&["check-config", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("identity.key"), "{printed}");
}

#[test]
fn status_prints_the_running_server_for_people_and_scripts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(dir.path());
    let config = dir.path().join("config.toml").display().to_string();
    let out = cli(&["status", "--config", &config]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for expected in [
        "network id",
        "connections     0 of 1000",
        "identities      0 hosted",
        "LOC             off",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    assert!(
        text.contains(&format!("{} (primary)", server.primary)),
        "{text}"
    );

    let out = cli(&["status", "--config", &config, "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let snapshot: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(snapshot["network_id"].as_str().map(str::len), Some(64));
    assert_eq!(snapshot["connections"]["limit"], 1000);
    assert_eq!(snapshot["can"], "off");
    assert_eq!(snapshot["ports"][0]["port"], server.primary);

    assert!(server.terminate().success());
    let out = cli(&["status", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let printed = stderr_of(&out);
    assert!(
        printed.starts_with("error: the server is not running"),
        "{printed}"
    );
    assert_eq!(printed.lines().count(), 1, "{printed}");
}

#[test]
fn help_and_version_print_to_stdout_and_succeed() {
    let version = cli(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("iop-profile-server {}", env!("CARGO_PKG_VERSION"))
    );
    let help = cli(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["run", "check-config", "init", "status", "probe"] {
        assert!(text.contains(command), "{command} missing from --help");
    }
    let run_help = cli(&["run", "--help"]);
    assert!(run_help.status.success());
    assert!(String::from_utf8_lossy(&run_help.stdout).contains("--config <FILE>"));
    let probe_help = cli(&["help", "probe"]);
    assert!(probe_help.status.success());
    assert!(String::from_utf8_lossy(&probe_help.stdout).contains("--timeout-secs"));
}

#[test]
fn command_line_mistakes_exit_2_with_one_line_naming_the_argument() {
    let cases: [(&[&str], &str); 6] = [
        (&[], "subcommand"),
        (&["run", "--conifg", "x.toml"], "--conifg"),
        (&["check-config", "--config"], "--config"),
        // An option where the value should be is a missing value, not a file name.
        (&["init", "--config", "--help"], "'--config' needs a value"),
        (&["check-config"], "--config"),
        (
            &["probe", "localhost", "--timeout-secs", "ten"],
            "--timeout-secs",
        ),
    ];
    for (args, named) in cases {
        // `refused`: a `run` that wrongly accepted its arguments is stopped, not waited for.
        let out = refused(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(named),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn issue25_status_answers_beside_idle_observers_and_says_busy_when_they_are_many() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(dir.path());
    let config = dir.path().join("config.toml").display().to_string();
    let socket = dir.path().join("data").join("status.sock");
    wait_for_socket(&socket);
    // Three connections that never ask.
    let mut idle: Vec<_> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).expect("connect"))
        .collect();
    let started = std::time::Instant::now();
    let out = cli(&["status", "--config", &config]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Enough idle ones to take every place: the next is told the server is busy.
    idle.extend(
        (0..10).map(|_| std::os::unix::net::UnixStream::connect(&socket).expect("connect")),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = cli(&["status", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let printed = stderr_of(&out);
    assert!(
        printed.starts_with("error: the server is busy"),
        "{printed}"
    );
    drop(idle);
    assert!(server.terminate().success());
}

#[test]
fn issue27_start_lines_name_ports_and_addresses_in_plain_words() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let (primary, tls, metrics) = (free_port(), free_port(), free_port());
    let body = format!(
        "{}[metrics]\naddress = \"127.0.0.1:{metrics}\"\n",
        listeners(primary, tls)
    );
    let config = write_config(dir.path(), &body);
    let mut child = server_command()
        .args(["run", "--config", &config])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stderr).lines().take(60) {
        let line = line.expect("a log line");
        if line.contains("serving") {
            seen.push(line);
        }
        if seen.len() == 2 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains(&format!("{primary} (primary)")), "{text}");
    assert!(
        text.contains(&format!("{tls} (sr_neighbor, cl_non_customer")),
        "{text}"
    );
    assert!(
        text.contains(&format!("address=127.0.0.1:{metrics}")),
        "{text}"
    );
    for debug in ["Some(", "[(", "Primary"] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
}

#[test]
fn issue27_status_without_a_config_finds_the_server_where_it_would_be_and_names_every_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (primary, tls) = (free_port(), free_port());
    let config = dir.path().join("config.toml");
    let text = format!(
        "data_dir = {:?}\ntest_mode = true\nbind_address = \"127.0.0.1\"\n{}",
        dir.path().join("iop-data").display().to_string(),
        listeners(primary, tls)
    );
    std::fs::write(&config, text).expect("config");
    let mut child = server_command()
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server starts");
    let socket = dir.path().join("iop-data").join("status.sock");
    wait_for_socket(&socket);
    // Where `cargo run -- run` keeps its data: ./iop-data, seen from the directory it ran in.
    let found = server_command()
        .arg("status")
        .current_dir(dir.path())
        .output()
        .expect("binary runs");
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.status.success(), "{}", stderr_of(&found));
    assert!(String::from_utf8_lossy(&found.stdout).contains(&format!("{primary} (primary)")));
    // From elsewhere, nothing answers: every place tried is named.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = server_command()
        .arg("status")
        .current_dir(elsewhere.path())
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(1));
    let printed = stderr_of(&out);
    for place in [
        "/run/iop-profile-server/status.sock",
        "iop-data/status.sock",
        "/var/lib/iop-profile-server/status.sock",
    ] {
        assert!(printed.contains(place), "{place} not in {printed}");
    }
    assert_eq!(printed.lines().count(), 1, "{printed}");
}

/// `command` run without the power to pass file permissions: as root, through `setpriv` with
/// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped; as anyone else, as it is.
fn without_permission_override(command: std::process::Command) -> std::process::Command {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        return command;
    }
    let mut wrapped = std::process::Command::new("setpriv");
    wrapped
        .args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

#[test]
fn issue27_a_data_directory_behind_a_closed_directory_blames_that_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = dir.path().join("closed");
    std::fs::create_dir_all(closed.join("data")).expect("mkdir");
    let config = write_config(dir.path(), &listeners(16987, 16988));
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        &format!("{:?}", dir.path().join("data").display().to_string()),
        &format!("{:?}", closed.join("data").display().to_string()),
    );
    std::fs::write(&config, text).expect("config");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut command = server_command();
    command.args(["check-config", "--config", &config]);
    let out = without_permission_override(command)
        .output()
        .expect("binary runs");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let printed = stderr_of(&out);
    assert!(
        printed.contains(&format!(
            "{}: cannot be entered by this user",
            closed.display()
        )),
        "{printed}"
    );
    assert!(!printed.contains("identity.key"), "{printed}");
}

/// Waits (up to 5 s) for a starting server's observation socket to appear.
fn wait_for_socket(socket: &Path) {
    for _ in 0..100 {
        if socket.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn issue25_status_refused_by_the_socket_names_the_group_rather_than_a_stopped_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start(dir.path());
    let socket = dir.path().join("data").join("status.sock");
    wait_for_socket(&socket);
    let config = dir.path().join("config.toml").display().to_string();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut command = server_command();
    command.args(["status", "--config", &config]);
    let out = without_permission_override(command)
        .output()
        .expect("binary runs");
    assert!(server.terminate().success());
    assert_eq!(out.status.code(), Some(1));
    let printed = stderr_of(&out);
    assert!(
        printed.starts_with(&format!(
            "error: no permission to open {}",
            socket.display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("member of the group iop-profile-server-status"),
        "{printed}"
    );
}
