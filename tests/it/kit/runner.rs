//! Starts the server binary as a child process, the way an operator or systemd would.
//!
//! Under qemu-user (the ARM test runs in `.ci/run`) a test process cannot start another ARM
//! program directly, because nothing registers qemu with the kernel's binfmt handler. There
//! `IOP_TEST_RUNNER` holds the emulator command line, and the binary runs under it.
//!
//! `IOP_TEST_SERVER_BIN` points these tests at another build of the server, such as the
//! size-tuned release binary that ships (`.ci/run` runs the black-box tests against it).

use std::ffi::OsString;
use std::process::Command;

/// The server binary Cargo built for these tests.
const BUILT_SERVER_BIN: &str = env!("CARGO_BIN_EXE_iop-profile-server");

/// Environment variable naming the server binary to test instead of [`BUILT_SERVER_BIN`].
pub const SERVER_BIN_VAR: &str = "IOP_TEST_SERVER_BIN";

/// The server binary under test: `IOP_TEST_SERVER_BIN` when set, else the one Cargo built.
pub fn server_bin() -> OsString {
    std::env::var_os(SERVER_BIN_VAR)
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| BUILT_SERVER_BIN.into())
}

/// Environment variable with the command that runs a target binary, words split on whitespace
/// (for example `qemu-aarch64 -L /usr/aarch64-linux-gnu`). Unset or empty: run it directly.
pub const RUNNER_VAR: &str = "IOP_TEST_RUNNER";

/// A command that runs the server binary, under the runner when one is set.
///
/// systemd's variables are removed, so a test suite that itself runs inside a systemd service
/// never talks to the real service manager or journal.
pub fn server_command() -> Command {
    let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
    let mut words = runner.split_whitespace();
    let command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(server_bin());
            command
        }
        None => Command::new(server_bin()),
    };
    without_systemd(command)
}

/// Like [`server_command`], but with at most `bytes` of data memory (`prlimit --data`), so a
/// test sees an allocation beyond it fail as it would under systemd's limits. Under a runner
/// the limit is not applied: the emulator itself needs far more.
pub fn server_command_with_data_limit(bytes: u64) -> Command {
    if !std::env::var(RUNNER_VAR)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        return server_command();
    }
    let mut command = Command::new("prlimit");
    command.arg(format!("--data={bytes}")).arg(server_bin());
    without_systemd(command)
}

fn without_systemd(mut command: Command) -> Command {
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
    ] {
        command.env_remove(var);
    }
    command
}
