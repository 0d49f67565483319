//! The server's outgoing side: the local LOC and CAN daemons, neighbour profile servers and
//! followers.
//!
//! Each peer runs as a task started by `runtime` under the server's tracker, reconnects with a
//! pause after failures, and puts a timeout on every wait. Nothing here serves a client socket.

pub mod can;
pub mod client;
pub mod followers;
pub mod loc;
pub mod neighbors;
pub mod snapshot;
