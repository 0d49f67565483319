//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, and a protocol client.

pub mod client;
pub mod process;
pub mod server;

pub use client::*;
pub use process::*;
pub use server::*;
