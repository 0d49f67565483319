//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, a protocol client, and the PS08 customer driver with its fixtures
//! and matching rules.

pub mod calls;
pub mod client;
pub mod customer;
pub mod items;
pub mod process;
pub mod profiles;
pub mod server;

pub use calls::*;
pub use client::*;
pub use customer::*;
pub use items::*;
pub use process::*;
pub use profiles::*;
pub use server::*;

pub mod runner;
pub use runner::*;
