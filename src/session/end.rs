//! Why a connection ended.

/// Why a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer closed the connection.
    PeerClosed,
    /// No complete message within the idle timeout.
    Idle,
    /// `session_max_secs` reached.
    SessionLimit,
    /// The server is shutting down.
    Shutdown,
    /// A final answer (a protocol violation, or a refusal that ends the session) was sent.
    FinalAnswer,
    /// Another task asked to close it (e.g. a newer check-in).
    Replaced,
    /// Reading or writing failed or timed out.
    Io,
}

impl End {
    /// The label of each way to end in the metrics (`iop_connections_closed_total`), in
    /// declaration order.
    pub(crate) const LABELS: [&'static str; 7] = [
        "peer_closed",
        "timeout_idle",
        "timeout_session",
        "shutdown",
        "final_answer",
        "replaced",
        "io_error",
    ];

    /// This end's position in [`End::LABELS`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_its_own_metrics_label() {
        let ends = [
            (End::PeerClosed, "peer_closed"),
            (End::Idle, "timeout_idle"),
            (End::SessionLimit, "timeout_session"),
            (End::Shutdown, "shutdown"),
            (End::FinalAnswer, "final_answer"),
            (End::Replaced, "replaced"),
            (End::Io, "io_error"),
        ];
        assert_eq!(ends.len(), End::LABELS.len());
        for (end, label) in ends {
            assert_eq!(End::LABELS[end.index()], label, "{end:?}");
        }
    }
}
