//! Integration tests: the real server over real TCP and TLS sockets, one test binary.

mod board;
mod cli;
mod kit;
mod notify;
mod ps00;
mod ps01;
mod ps02;
mod robustness;
