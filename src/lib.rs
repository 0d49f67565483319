//! IoP Profile Server: hosts identities, relays calls between them and shares profiles with the
//! neighbourhood, speaking the public IoP profile-server protocol.
//!
//! Rooms, top to bottom (arrows point only downwards):
//! - [`runtime`] wires everything: ports, data directory, listeners, shutdown, logging.
//! - [`net`] owns client sockets: accept, TLS, the per-connection task.
//! - [`handlers`] answer requests, one module per feature area; they never touch a socket.
//! - [`session`] is per-connection protocol state and the role/state gates (sync, no I/O).
//! - [`store`] is the only code touching the data directory (redb, key files).
//! - [`wire`] is the protocol's bytes: generated protobuf types, framing, builders (pure).
//! - [`config`], [`crypto`], [`role`] are leaf utilities.
#![forbid(unsafe_code)]

pub mod config;
pub mod context;
pub mod crypto;
pub mod handlers;
pub mod images;
pub mod jobs;
pub mod net;
pub mod outbox;
pub mod registry;
pub mod relay;
pub mod role;
pub mod runtime;
pub mod search;
pub mod session;
pub mod store;
pub mod wire;
