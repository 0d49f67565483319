//! Command line: `run`, `check-config`, `init`, `status`, `probe`. Exit code 2 for any
//! configuration, data-directory or port problem, with a one-line message naming the key or
//! path; 1 when `status` finds no server or `probe` a port that fails.

mod args;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use iop_profile_server::config::{Config, Problem};
use iop_profile_server::runtime::{self, logging, observe, shutdown, systemd};
use iop_profile_server::store::inspect_data_dir;

use args::{Command, Request};

const EXIT_USAGE: u8 = 2;
/// `status` could not reach a running server; `probe` found a port that does not answer.
const EXIT_NOT_RUNNING: u8 = 1;

/// Where `status` looks for a server's observation socket. With `--config`, where that file
/// puts it (the service's runtime directory when the service made one). Without, where a
/// server would be: the service's runtime socket, the built-in data directory (relative to
/// the working directory), and the service's state directory.
fn status_places(config: &Config, configured: bool) -> Vec<PathBuf> {
    let service_dir = Path::new(observe::SERVICE_RUNTIME_DIR);
    let service_socket = service_dir.join("status.sock");
    if configured {
        let runtime_dir = service_socket.exists().then_some(service_dir);
        return vec![config.status_socket(runtime_dir)];
    }
    let mut places = vec![
        service_socket,
        config.status_socket(None),
        Path::new(iop_profile_server::config::SERVICE_DATA_DIR).join("status.sock"),
    ];
    places.dedup();
    places
}

/// Whether a socket this user may not open stands for a server that is there: the socket is
/// visibly there, or it is in the service's runtime directory, which exists only while the
/// service runs. (Behind a closed state directory nothing can be told either way.)
fn server_behind(socket: &Path) -> bool {
    socket.starts_with(observe::SERVICE_RUNTIME_DIR) || socket.symlink_metadata().is_ok()
}

/// `status`: asks the first server that answers at one of `places` for its snapshot and prints
/// it; names every place tried when none answers.
fn status(places: &[PathBuf], json: bool) -> ExitCode {
    let mut tried = Vec::new();
    let mut answer = None;
    for place in places {
        match observe::query(place, json) {
            Ok(text) => {
                answer = Some((place, text));
                break;
            }
            Err(error) => tried.push((place, error)),
        }
    }
    let Some((path, text)) = answer else {
        let busy = tried.iter().find(|(_, error)| {
            matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        });
        if let Some((path, error)) = busy {
            eprintln!(
                "error: the server is running but did not answer on {} in time (busy?): {error}",
                path.display()
            );
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
        let refused = tried.iter().find(|(path, error)| {
            error.kind() == std::io::ErrorKind::PermissionDenied && server_behind(path)
        });
        if let Some((path, error)) = refused {
            eprintln!(
                "error: no permission to open {} ({error}): run status as root or as a member of \
                 the group {}",
                path.display(),
                observe::SERVICE_STATUS_GROUP
            );
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
        let places: Vec<String> = tried
            .iter()
            .map(|(path, error)| format!("{} ({error})", path.display()))
            .collect();
        eprintln!(
            "error: the server is not running (no answer on {})",
            places.join(", ")
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    };
    if text == observe::BUSY {
        eprintln!(
            "error: the server is busy: it serves a few status connections at a time on {} \
             and all are taken; try again",
            path.display()
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    let expected = if json { "{\"version\"" } else { "network id" };
    if !text.starts_with(expected) {
        eprintln!(
            "error: unexpected answer on {}: {}",
            path.display(),
            text.trim_end()
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    if json {
        println!("{text}");
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

/// `probe`: checks a server from outside and prints a line per port.
fn probe(target: &str, timeout_secs: u64) -> ExitCode {
    let address = match iop_profile_server::probe::resolve(target) {
        Ok(address) => address,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let wait = std::time::Duration::from_secs(timeout_secs.max(1));
    let report = runtime.block_on(iop_profile_server::probe::probe(address, wait));
    print!("{}", report.render());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    }
}

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Command(command)) => command,
        // A failed write (stdout closed, as by `| true`) is ignored rather than a panic.
        Ok(Request::Help(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Request::Version) => {
            let name = env!("CARGO_PKG_NAME");
            let _ = writeln!(std::io::stdout(), "{name} {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(checked) => {
                if let Err(error) = inspect_data_dir(&checked.data_dir) {
                    eprintln!("{}: data_dir: {error}", config.display());
                    return ExitCode::from(EXIT_USAGE);
                }
                println!("{}: ok", config.display());
                println!(
                    "note: ports are checked when the server binds them (`run`), and the data \
                     directory for the user running this command"
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for problem in &problems {
                    eprintln!("{}: {problem}", config.display());
                }
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Status { config: path, json } => {
            let Some(config) = load(path.as_ref()) else {
                return ExitCode::from(EXIT_USAGE);
            };
            status(&status_places(&config, path.is_some()), json)
        }
        Command::Probe {
            target,
            timeout_secs,
        } => probe(&target, timeout_secs),
        Command::Init { config } => {
            let Some(config) = load(config.as_ref()) else {
                return ExitCode::from(EXIT_USAGE);
            };
            match runtime::init_data_dir(&config) {
                Ok(key) => {
                    println!("{}", key.network_id());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: data_dir: {error}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Run { config } => {
            let Some(config) = load(config.as_ref()) else {
                return ExitCode::from(EXIT_USAGE);
            };
            run(config)
        }
    }
}

/// Loads the file or the built-in defaults; prints the first problem on one line.
fn load(path: Option<&PathBuf>) -> Option<Config> {
    let loaded = path.map_or_else(Config::builtin, |p| Config::load(p));
    match loaded {
        Ok(config) => Some(config),
        Err(problems) => {
            let first = problems
                .first()
                .map_or_else(String::new, Problem::to_string);
            let more = problems.len().saturating_sub(1);
            let hint = if more > 0 {
                format!(" (and {more} more; see check-config)")
            } else {
                String::new()
            };
            eprintln!("error: config: {first}{hint}");
            None
        }
    }
}

fn run(config: Config) -> ExitCode {
    logging::init();
    let shape = config.runtime;
    let built = if shape.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(usize::from(shape.max_blocking_threads))
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(shape.worker_threads))
            .max_blocking_threads(usize::from(shape.max_blocking_threads))
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: runtime.worker_threads: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(async {
        let signals = shutdown::Signals::install().inspect_err(|error| {
            tracing::error!(%error, "cannot install signal handlers; stop the server with SIGKILL");
        });
        let server = match runtime::start(config).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        if let Ok(signals) = signals {
            server.spawn(signals.cancel_on_signal(server.shutdown_token()));
        }
        // Not under the server's tracker: it keeps pinging the watchdog while the server drains,
        // and holds nothing of the server's.
        let status = server.status();
        tokio::spawn(systemd::supervise(server.shutdown_token(), status.clone()));
        let line = status.line().await;
        systemd::ready(&line.unwrap_or_else(|| format!("serving as {}", server.network_id())));
        server.wait().await;
        ExitCode::SUCCESS
    })
}
