//! Integration tests: the real server over real TCP and TLS sockets, one test binary.

mod board;
mod cli;
mod fuzz_frames;
mod hardening;
mod hosting;
mod kit;
mod loc;
mod loc_golden;
mod neighborhood;
mod notify;
mod ps00;
mod ps01;
mod ps02;
mod ps03;
mod ps04;
mod ps05;
mod ps06;
mod ps07;
mod ps08;
mod ps08_loc;
mod ps09;
mod relations;
mod relay;
mod robustness;
mod search;
