//! Integration tests: the real server over real TCP and TLS sockets, one test binary.

mod kit;
mod ps00;
mod ps01;
mod ps02;
