//! Turns SIGTERM and SIGINT into a cancelled shutdown token.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// SIGTERM and SIGINT handlers, catching signals from the moment they are installed.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers; from here on the signals no longer kill the process but are kept
    /// for [`Signals::cancel_on_signal`]. Install before the ports open, so that a SIGTERM
    /// right after start-up (systemd, a test) still shuts down cleanly. Needs a tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Cancels `token` on the first SIGTERM or SIGINT, including one caught before this runs.
    pub async fn cancel_on_signal(mut self, token: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT received, shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    }
}
