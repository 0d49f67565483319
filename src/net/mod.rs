//! Client sockets: listeners, TLS, and the per-connection task. The only code that awaits a
//! client socket.

pub mod connection;
pub mod frame_reader;
pub mod listener;
pub mod tls;
