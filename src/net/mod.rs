//! Client sockets: listeners, TLS, and the per-connection task. The only code that awaits a
//! client socket.

pub(crate) mod connection;
pub(crate) mod engine;
pub(crate) mod frame_reader;
pub(crate) mod listener;
pub mod tls;
