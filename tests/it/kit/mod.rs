//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, and a protocol client.

pub mod client;
pub mod server;

pub use client::*;
pub use server::*;

pub mod runner;
pub use runner::*;
