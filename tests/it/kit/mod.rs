//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, a protocol client and a LOC stand-in.

pub mod calls;
pub mod client;
pub mod customer;
pub mod loc;
pub mod loc_frames;
pub mod process;
pub mod server;

pub use calls::*;
pub use client::*;
pub use customer::*;
pub use loc::*;
pub use loc_frames::*;
pub use process::*;
pub use server::*;

pub mod runner;
pub use runner::*;
