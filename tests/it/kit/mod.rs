//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, and a protocol client.

pub mod calls;
pub mod client;
pub mod customer;
pub mod process;
pub mod server;

pub use calls::*;
pub use client::*;
pub use customer::*;
pub use process::*;
pub use server::*;

pub mod runner;
pub use runner::*;
