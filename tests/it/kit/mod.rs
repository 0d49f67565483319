//! Test kit shared by every integration test: an in-process server, the server binary as a child
//! process, a protocol client, LOC and CAN stand-ins, and the PS08 parties (customer driver,
//! impersonated neighbour N, simulated profile server S).

pub mod attacks;
pub mod calls;
pub mod can;
pub mod client;
pub mod customer;
pub mod items;
pub mod lab;
pub mod loc;
pub mod loc_frames;
pub mod neighbor;
pub mod process;
pub mod profiles;
pub mod server;
pub mod simulated;
pub mod waiting;

pub use attacks::*;
pub use calls::*;
pub use can::*;
pub use client::*;
pub use customer::*;
pub use items::*;
pub use loc::*;
pub use loc_frames::*;
pub use neighbor::*;
pub use process::*;
pub use profiles::*;
pub use server::*;
pub use simulated::*;

pub mod runner;
pub use runner::*;
