//! Log output: the systemd journal (with structured fields) when systemd started us, stderr
//! otherwise, coloured only when stderr is a terminal. The level comes from `RUST_LOG` (default
//! `info`).
//!
//! tracing-journald is a tracing layer, so each event also carries the fields of the spans it
//! happens in: a connection's events arrive with `SPAN_NAME=conn`, `F_PEER`, `F_PORT` and, once
//! known, `F_IDENTITY`, and `journalctl F_PEER=…` picks out one connection.
//! `.ci/journal-fields.py` checks this against a stand-in journald.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber. Safe to call once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // systemd sets JOURNAL_STREAM for services whose output goes to the journal.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| {
            layer
                .with_syslog_identifier("iop-profile-server".to_owned())
                .boxed()
        });
    // Colour codes only on a terminal: a file or a pipe gets plain text.
    let colour = std::io::stderr().is_terminal();
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .boxed()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}
