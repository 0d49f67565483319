//! Log output: the systemd journal (with structured fields) when systemd started us, stderr
//! otherwise, as plain text without colour codes. The level comes from `RUST_LOG`
//! (`error`, `warn`, `info`, `debug` or `trace`; default `info`).
//!
//! tracing-journald is a tracing layer, so each event also carries the fields of the spans it
//! happens in: a connection's events arrive with `SPAN_NAME=conn`, `F_PEER`, `F_PORT` and, once
//! known, `F_IDENTITY`, and `journalctl F_PEER=…` picks out one connection.
//! `.ci/journal-fields.py` checks this against a stand-in journald.

use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Safe to call once; later calls do nothing.
pub fn init() {
    // RUST_LOG names one level for everything; per-module directives are not supported.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|level| level.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    // systemd sets JOURNAL_STREAM for services whose output goes to the journal.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| {
            layer
                .with_syslog_identifier("iop-profile-server".to_owned())
                .boxed()
        });
    // Plain text without colour codes (tracing-subscriber is built without `ansi`): a log on a
    // file or a pipe stays readable, and the binary stays small.
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}
