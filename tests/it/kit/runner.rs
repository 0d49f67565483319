//! Starts the server binary as a child process, the way an operator or systemd would.
//!
//! Under qemu-user (the ARM test runs in `.ci/run`) a test process cannot start another ARM
//! program directly, because nothing registers qemu with the kernel's binfmt handler. There
//! `IOP_TEST_RUNNER` holds the emulator command line, and the binary runs under it.

use std::process::Command;

/// The server binary Cargo built for these tests.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_iop-profile-server");

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
            command.args(words).arg(SERVER_BIN);
            command
        }
        None => Command::new(SERVER_BIN),
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
    command.arg(format!("--data={bytes}")).arg(SERVER_BIN);
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
