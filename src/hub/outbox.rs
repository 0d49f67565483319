//! The bounded queue into one connection, used by anything that is not that connection's own
//! request handling (deferred answers, server-initiated requests, "close now"), and what a
//! server-initiated request's answer is owed to.

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;

use crate::wire::ps;

/// Something another task asks a connection to do.
///
/// Kept small (the request lives behind a box): every connection's queue allocates room for
/// a block of these up front, idle or not.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write an already encoded frame.
    Send(Vec<u8>),
    /// Send a server-initiated request; its answer goes to its `reply`.
    Request(Box<ServerRequest>),
    /// Close the connection (for example when a newer check-in replaces it).
    Close,
}

impl Command {
    /// A server-initiated request of `kind`, whose answer goes to `reply`.
    pub(crate) fn request(
        kind: ServerRequestKind,
        message: ps::Message,
        reply: Reply,
        budget: Option<OwnedSemaphorePermit>,
    ) -> Command {
        Command::Request(Box::new(ServerRequest {
            kind,
            message,
            reply,
            budget,
        }))
    }
}

/// A request the server sends to a connection's peer.
#[derive(Debug)]
pub(crate) struct ServerRequest {
    /// Type of the request, checked against the answer.
    pub kind: ServerRequestKind,
    /// The request; its id is assigned by the connection.
    pub message: ps::Message,
    /// Where the answer goes.
    pub reply: Reply,
    /// In-flight bytes the request's payload holds until it is written.
    pub budget: Option<OwnedSemaphorePermit>,
}

/// The type of a server-initiated request, used to check the answer's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerRequestKind {
    /// IncomingCallNotificationRequest (conversation).
    IncomingCallNotification,
    /// NeighborhoodSharedProfileUpdateRequest (conversation).
    NeighborhoodSharedProfileUpdate,
    /// FinishNeighborhoodInitializationRequest (conversation).
    FinishNeighborhoodInitialization,
    /// ApplicationServiceReceiveMessageNotificationRequest (single).
    ReceiveMessageNotification,
}

/// Where the answer to a server-initiated request goes.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A task awaits it.
    Channel(oneshot::Sender<ps::Response>),
    /// A relayed message: the answer is acknowledged on the sender's connection, in the order
    /// the recipient answers (spec §5.5).
    Relay(RelayAck),
    /// The callee's answer to an IncomingCallNotification decides the caller's answer (§4.13).
    Call {
        /// The ringing relay.
        relay: u64,
        /// When the call stops ringing; a later answer changes nothing.
        answer_by: Instant,
    },
}

/// The acknowledgement owed to the sender of a relayed message.
#[derive(Debug, Clone)]
pub(crate) struct RelayAck {
    /// The relay the message travelled through.
    pub relay: u64,
    /// The sender's connection.
    pub outbox: Outbox,
    /// Id of the sender's ApplicationServiceSendMessageRequest.
    pub message_id: u32,
    /// The sender's token, echoed in the response.
    pub token: Vec<u8>,
}

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutboxError {
    /// The connection's queue is full: it is not keeping up.
    #[error("connection queue is full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Sending side of a connection's command queue; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    sender: mpsc::Sender<Command>,
}

impl Outbox {
    /// A new queue holding at most `capacity` commands.
    pub(crate) fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<Command>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Outbox { sender }, receiver)
    }

    /// Queues a command, waiting while the queue is full (callers bound the wait).
    pub(crate) async fn push(&self, command: Command) -> Result<(), OutboxError> {
        self.sender
            .send(command)
            .await
            .map_err(|_| OutboxError::Closed)
    }

    /// Queues a command without waiting; a full queue is an error, never growth.
    pub(crate) fn try_push(&self, command: Command) -> Result<(), OutboxError> {
        self.sender.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OutboxError::Full,
            mpsc::error::TrySendError::Closed(_) => OutboxError::Closed,
        })
    }
}

/// The way to reach one connection.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// Unique number of the connection within this server run.
    pub connection: u64,
    /// The connection's command queue.
    pub outbox: Outbox,
}
