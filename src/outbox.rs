//! The bounded queue into one connection, used by anything that is not that connection's own
//! request handling: deferred responses, server-initiated requests, and "close now".

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::session::pending::{Reply, ServerRequestKind};
use crate::wire::ps;

/// Something another task asks a connection to do.
#[derive(Debug)]
pub enum Command {
    /// Write an already encoded frame.
    Send(Vec<u8>),
    /// Send a server-initiated request; its answer goes to `reply`.
    Request {
        /// Type of the request, checked against the answer.
        kind: ServerRequestKind,
        /// The request; its id is assigned by the connection.
        message: Box<ps::Message>,
        /// Where the answer goes.
        reply: Reply,
        /// In-flight bytes the request's payload holds until it is written.
        budget: Option<OwnedSemaphorePermit>,
    },
    /// Close the connection (for example when a newer check-in replaces it).
    Close,
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The connection's queue is full: it is not keeping up.
    #[error("connection queue is full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Sending side of a connection's command queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    sender: mpsc::Sender<Command>,
}

impl Outbox {
    /// A new queue holding at most `capacity` commands.
    pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<Command>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Outbox { sender }, receiver)
    }

    /// Queues a command without waiting; a full queue is an error, never growth.
    pub fn try_push(&self, command: Command) -> Result<(), OutboxError> {
        self.sender.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OutboxError::Full,
            mpsc::error::TrySendError::Closed(_) => OutboxError::Closed,
        })
    }

    /// Whether the connection behind the queue has ended.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Completes when the connection behind the queue has ended.
    pub async fn closed(&self) {
        self.sender.closed().await;
    }
}
