//! The command line, parsed by hand: five subcommands and four options do not need an argument
//! parsing library, and the one the binary used to link cost more than 100 KiB on the boards.
//!
//! Options take their value as the next argument or after `=` (`--config FILE`,
//! `--config=FILE`). Every mistake is one line naming the argument; `main` prints it and exits
//! with code 2.

use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

/// Name of the program in help texts.
const PROGRAM: &str = "iop-profile-server";
/// How long `probe` waits for each port by default, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Run a subcommand.
    Command(Command),
    /// Print this help text to stdout and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
}

/// A subcommand with its options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the server until SIGTERM or SIGINT.
    Run {
        /// Configuration file; the built-in defaults without it.
        config: Option<PathBuf>,
    },
    /// Check a configuration file and print every problem.
    CheckConfig {
        /// The file to check.
        config: PathBuf,
    },
    /// Print what the running server is doing.
    Status {
        /// The server's configuration file.
        config: Option<PathBuf>,
        /// JSON instead of text.
        json: bool,
    },
    /// Check a server from outside.
    Probe {
        /// HOST[:PORT] of its primary port.
        target: String,
        /// Longest wait for each port.
        timeout_secs: u64,
    },
    /// Create the data directory, identity and certificate.
    Init {
        /// Configuration file; the built-in defaults without it.
        config: Option<PathBuf>,
    },
}

/// A command line that cannot be used, with the line to print (without "error: ").
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError {
    message: String,
    /// Where the help for the failing part is (`iop-profile-server run --help`, say).
    help: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see `{} --help`)", self.message, self.help)
    }
}

/// One subcommand's name, summary and options, for parsing and help.
struct Spec {
    name: &'static str,
    about: &'static str,
    positional: Option<(&'static str, &'static str)>,
    options: &'static [Opt],
}

/// An option: its name without dashes, the value it takes (none for a switch), its help.
struct Opt {
    name: &'static str,
    value: Option<&'static str>,
    help: &'static str,
}

const CONFIG_OPTIONAL: Opt = Opt {
    name: "config",
    value: Some("FILE"),
    help: "configuration file; without it the built-in defaults apply (data in ./iop-data)",
};

const SPECS: [Spec; 5] = [
    Spec {
        name: "run",
        about: "Run the server until SIGTERM or SIGINT",
        positional: None,
        options: &[CONFIG_OPTIONAL],
    },
    Spec {
        name: "check-config",
        about: "Check a configuration file and print every problem",
        positional: None,
        options: &[Opt {
            name: "config",
            value: Some("FILE"),
            help: "configuration file to check (required)",
        }],
    },
    Spec {
        name: "status",
        about: "Print what the running server is doing (read from its observation socket)",
        positional: None,
        options: &[
            CONFIG_OPTIONAL,
            Opt {
                name: "json",
                value: None,
                help: "print the snapshot as JSON, for scripts",
            },
        ],
    },
    Spec {
        name: "probe",
        about: "Check a profile server from outside: ListRoles, then TLS, Ping and its identity \
                on every port it lists; exit 0 when every port answers",
        positional: Some((
            "TARGET",
            "HOST[:PORT] of the primary port (default port 16987)",
        )),
        options: &[Opt {
            name: "timeout-secs",
            value: Some("SECS"),
            help: "longest wait for each port, in seconds (default 10)",
        }],
    },
    Spec {
        name: "init",
        about: "Create the data directory, identity and TLS certificate; print the network id",
        positional: None,
        options: &[CONFIG_OPTIONAL],
    },
];

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Request, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err(usage_error("a subcommand is required", PROGRAM));
    };
    match first.to_str() {
        Some("-h" | "--help") => return Ok(Request::Help(overview())),
        Some("-V" | "--version") => return Ok(Request::Version),
        // `help [COMMAND]`: the overview, or one subcommand's help.
        Some("help") => {
            return match args.next() {
                None => Ok(Request::Help(overview())),
                Some(name) => find_spec(&name).map(|spec| Request::Help(subcommand_help(spec))),
            };
        }
        _ => {}
    }
    let spec = find_spec(&first)?;
    let mut found = Found::default();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "-h" || text == "--help" {
            return Ok(Request::Help(subcommand_help(spec)));
        }
        if let Some(flag) = text.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((name, _)) => (name, Some(after_equals(&arg))),
                None => (flag, None),
            };
            let Some(opt) = spec.options.iter().find(|o| o.name == name) else {
                return Err(spec_error(spec, &format!("unknown option '--{name}'")));
            };
            let value = match (opt.value, inline) {
                (None, None) => OsString::new(),
                (None, Some(_)) => {
                    return Err(spec_error(spec, &format!("'--{name}' takes no value")));
                }
                (Some(_), Some(value)) => value,
                // The next argument, unless it is an option (`--config --json`): a missing value.
                (Some(_), None) => args
                    .next()
                    .filter(|next| !is_option(next))
                    .unwrap_or_default(),
            };
            if let Some(value_name) = opt.value
                && value.is_empty()
            {
                return Err(spec_error(
                    spec,
                    &format!("'--{name}' needs a value: --{name} <{value_name}>"),
                ));
            }
            found.set(spec, opt.name, value)?;
        } else if is_option(&arg) {
            return Err(spec_error(spec, &format!("unknown option '{text}'")));
        } else if spec.positional.is_some() && found.positional.is_none() {
            found.positional = Some(arg);
        } else {
            return Err(spec_error(spec, &format!("unexpected argument '{text}'")));
        }
    }
    found.into_command(spec).map(Request::Command)
}

/// The options and positional argument given to one subcommand.
#[derive(Default)]
struct Found {
    config: Option<PathBuf>,
    json: bool,
    timeout_secs: Option<u64>,
    positional: Option<OsString>,
    seen: Vec<&'static str>,
}

impl Found {
    fn set(&mut self, spec: &Spec, name: &'static str, value: OsString) -> Result<(), UsageError> {
        if self.seen.contains(&name) {
            return Err(spec_error(spec, &format!("'--{name}' is given twice")));
        }
        self.seen.push(name);
        match name {
            "config" => self.config = Some(PathBuf::from(value)),
            "json" => self.json = true,
            _ => {
                let text = value.to_string_lossy();
                let secs = text.parse::<u64>().map_err(|_| {
                    spec_error(
                        spec,
                        &format!("'--{name}' needs a whole number of seconds, not '{text}'"),
                    )
                })?;
                self.timeout_secs = Some(secs);
            }
        }
        Ok(())
    }

    fn into_command(self, spec: &Spec) -> Result<Command, UsageError> {
        Ok(match spec.name {
            "run" => Command::Run {
                config: self.config,
            },
            "check-config" => Command::CheckConfig {
                config: self
                    .config
                    .ok_or_else(|| spec_error(spec, "'--config <FILE>' is required"))?,
            },
            "status" => Command::Status {
                config: self.config,
                json: self.json,
            },
            "probe" => Command::Probe {
                target: self
                    .positional
                    .ok_or_else(|| spec_error(spec, "the TARGET (HOST[:PORT]) is required"))?
                    .to_string_lossy()
                    .into_owned(),
                timeout_secs: self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
            },
            _ => Command::Init {
                config: self.config,
            },
        })
    }
}

/// The subcommand called `name`.
fn find_spec(name: &OsStr) -> Result<&'static Spec, UsageError> {
    SPECS
        .iter()
        .find(|spec| name.to_str() == Some(spec.name))
        .ok_or_else(|| {
            let shown = name.to_string_lossy();
            usage_error(&format!("unknown subcommand '{shown}'"), PROGRAM)
        })
}

/// Whether `arg` is an option (`--name`, `-x`); a lone `-` is a value.
fn is_option(arg: &OsStr) -> bool {
    arg.as_bytes().starts_with(b"-") && arg.len() > 1
}

/// What follows the first `=` of an option given as `--name=value`, bytes kept as they are
/// (a path need not be UTF-8).
fn after_equals(arg: &OsStr) -> OsString {
    let bytes = arg.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| b == b'=')
        .map_or(bytes.len(), |i| i + 1);
    OsStr::from_bytes(&bytes[start..]).to_os_string()
}

fn usage_error(message: &str, help: &str) -> UsageError {
    UsageError {
        message: message.to_owned(),
        help: help.to_owned(),
    }
}

fn spec_error(spec: &Spec, message: &str) -> UsageError {
    usage_error(
        &format!("{}: {message}", spec.name),
        &format!("{PROGRAM} {}", spec.name),
    )
}

/// The help text of the program: its subcommands.
fn overview() -> String {
    let mut text =
        format!("IoP Profile Server\n\nUsage: {PROGRAM} <COMMAND> [OPTIONS]\n\nCommands:\n");
    for spec in &SPECS {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "  {:<14}{}", spec.name, spec.about);
    }
    let _ = writeln!(
        text,
        "  {:<14}Print this help or that of a subcommand",
        "help"
    );
    let _ = write!(
        text,
        "\nOptions:\n  -h, --help     Print help (also `{PROGRAM} <COMMAND> --help`)\n  \
         -V, --version  Print version\n"
    );
    text
}

/// The help text of one subcommand: its arguments and options.
fn subcommand_help(spec: &Spec) -> String {
    let positional = spec
        .positional
        .map_or(String::new(), |(name, _)| format!(" <{name}>"));
    let mut text = format!(
        "{}\n\nUsage: {PROGRAM} {} [OPTIONS]{positional}\n",
        spec.about, spec.name
    );
    if let Some((name, help)) = spec.positional {
        let _ = write!(text, "\nArguments:\n  <{name}>  {help}\n");
    }
    text.push_str("\nOptions:\n");
    for opt in spec.options {
        let head = match opt.value {
            Some(value) => format!("--{} <{value}>", opt.name),
            None => format!("--{}", opt.name),
        };
        let _ = writeln!(text, "  {head:<22}{}", opt.help);
    }
    let _ = writeln!(text, "  {:<22}Print help", "-h, --help");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Request, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn command(args: &[&str]) -> Command {
        match parse_str(args) {
            Ok(Request::Command(command)) => command,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match parse_str(args) {
            Err(error) => error.to_string(),
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn every_subcommand_and_option_form() {
        assert_eq!(command(&["run"]), Command::Run { config: None });
        assert_eq!(
            command(&["run", "--config", "a.toml"]),
            Command::Run {
                config: Some("a.toml".into())
            }
        );
        assert_eq!(
            command(&["run", "--config=b=c.toml"]),
            Command::Run {
                config: Some("b=c.toml".into())
            }
        );
        assert_eq!(
            command(&["check-config", "--config", "x"]),
            Command::CheckConfig { config: "x".into() }
        );
        assert_eq!(
            command(&["status", "--json", "--config", "s"]),
            Command::Status {
                config: Some("s".into()),
                json: true
            }
        );
        assert_eq!(
            command(&["probe", "node.example:16987"]),
            Command::Probe {
                target: "node.example:16987".into(),
                timeout_secs: DEFAULT_TIMEOUT_SECS
            }
        );
        assert_eq!(
            command(&["probe", "--timeout-secs", "3", "h"]),
            Command::Probe {
                target: "h".into(),
                timeout_secs: 3
            }
        );
        assert_eq!(
            command(&["probe", "--timeout-secs=0", "-"]),
            Command::Probe {
                target: "-".into(),
                timeout_secs: 0
            }
        );
        assert_eq!(
            command(&["init", "--config", "i"]),
            Command::Init {
                config: Some("i".into())
            }
        );
    }

    #[test]
    fn a_path_after_equals_keeps_its_bytes() {
        let raw = OsStr::from_bytes(b"--config=/data/\xff.toml").to_os_string();
        let parsed = parse([OsString::from("run"), raw]);
        assert_eq!(
            parsed,
            Ok(Request::Command(Command::Run {
                config: Some(PathBuf::from(OsStr::from_bytes(b"/data/\xff.toml")))
            }))
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_str(&["--version"]), Ok(Request::Version));
        assert_eq!(parse_str(&["-V"]), Ok(Request::Version));
        let Ok(Request::Help(overview)) = parse_str(&["--help"]) else {
            panic!("no help");
        };
        for spec in &SPECS {
            assert!(overview.contains(spec.name), "{} missing", spec.name);
        }
        let Ok(Request::Help(help)) = parse_str(&["probe", "-h"]) else {
            panic!("no help");
        };
        assert!(help.contains("--timeout-secs <SECS>") && help.contains("<TARGET>"));
        assert_eq!(parse_str(&["help", "probe"]), Ok(Request::Help(help)));
        assert_eq!(parse_str(&["help"]), Ok(Request::Help(overview)));
        // Help wins over what follows it, not over a mistake before it.
        assert!(matches!(
            parse_str(&["status", "--json", "--help", "--bogus"]),
            Ok(Request::Help(_))
        ));
        assert!(parse_str(&["status", "--bogus", "--help"]).is_err());
    }

    #[test]
    fn every_mistake_is_one_line_naming_the_argument() {
        let cases: [(&[&str], &str); 17] = [
            (&[], "a subcommand is required"),
            (&["serve"], "unknown subcommand 'serve'"),
            (&["help", "serve"], "unknown subcommand 'serve'"),
            (&["--config", "x", "run"], "unknown subcommand '--config'"),
            (&["run", "--conf", "x"], "run: unknown option '--conf'"),
            (&["run", "-c", "x"], "run: unknown option '-c'"),
            (&["run", "--version"], "run: unknown option '--version'"),
            (&["run", "--config"], "run: '--config' needs a value"),
            (&["run", "--config="], "run: '--config' needs a value"),
            (&["run", "--config", ""], "run: '--config' needs a value"),
            (
                &["status", "--config", "--json"],
                "status: '--config' needs a value",
            ),
            (&["run", "extra"], "run: unexpected argument 'extra'"),
            (
                &["check-config"],
                "check-config: '--config <FILE>' is required",
            ),
            (&["status", "--json=yes"], "status: '--json' takes no value"),
            (
                &["run", "--config", "a", "--config", "b"],
                "run: '--config' is given twice",
            ),
            (
                &["probe", "h", "--timeout-secs", "soon"],
                "probe: '--timeout-secs' needs a whole number of seconds, not 'soon'",
            ),
            (&["probe"], "probe: the TARGET (HOST[:PORT]) is required"),
        ];
        for (args, expected) in cases {
            let line = error(args);
            assert!(line.starts_with(expected), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{args:?}: {line}");
        }
        assert!(error(&["init", "--json"]).ends_with("(see `iop-profile-server init --help`)"));
    }
}
