//! IoP Profile Server: hosts identities, relays calls between them and shares profiles with the
//! neighbourhood, speaking the public IoP profile-server protocol.
//!
//! Rooms, top to bottom; a room uses only the rooms below it (`.ci/layers.py` checks it, so
//! there is no import cycle):
//! - [`runtime`] wires everything: ports, data directory, listeners, the task tracker and
//!   shutdown order, logging, systemd. The only room that starts long-lived tasks.
//! - [`probe`] checks a server from outside (`iop-profile-server probe`), with the client
//!   the neighbourhood uses.
//! - `peers` are the outgoing links: the LOC client, neighbours we receive profiles from,
//!   followers we deliver to (and the snapshot a new follower receives). They never use
//!   `handlers` (nor `jobs`): what both need lives in a room below them.
//! - `net` owns client sockets: accept, TLS, the per-connection task, which only reads, writes
//!   and keeps deadlines; every protocol decision of a connection is its engine's, which takes
//!   frames, commands and `now` and says what to write (`net::engine`, tested without sockets
//!   by a two-party harness on simulated time). [`net::tls`] is public for test clients.
//!   `jobs` runs the timers (maintenance, relay deadlines).
//! - `handlers` answer requests, one module per feature area; they never touch a socket.
//! - `context` is the server's shared state. Handlers see its `View`: key, store and config,
//!   the `Hub` connections share, the `Budgets` (the in-flight byte `Budget` owns its limit,
//!   semaphore and address shares), the `PeerSignals`, the catalog, CAN and the metrics; the
//!   task tracker and the shutdown signal are only for the server's long-lived parts.
//! - `catalog` is the one home of profile changes, hosted and shared: it commits a change (its
//!   follower actions queued in the same transaction), updates the search index from the
//!   profile it decoded, and wakes delivery to followers. Nothing else writes to the index.
//! - `session` is per-connection protocol state and the role/state gates (sync, no I/O).
//!   `neighborhood` decides which shared profile items are valid and how snapshots are cut
//!   into frames (pure).
//! - `profile_rules`: the checks every profile passes, from a customer or a neighbour.
//! - `hub` is the state shared between connections: outboxes, presence, call relays, what each
//!   IP address holds. Its decisions take `now` and return effects; it uses only `wire`,
//!   `crypto` and `clock`.
//!   [`store`] is the only code touching the data directory. [`can`] is the CAN node's HTTP
//!   API (objects and IPNS records), used by handlers for clients and by `peers` for the
//!   server's own contact record.
//! - Leaves: [`search`] (the in-memory profile index), `images` (image checks), [`config`],
//!   [`wire`] (protocol bytes, pure), [`crypto`], [`role`], [`clock`] (the one source of time),
//!   `log_gate` (the rate limit on log lines a peer can cause), [`metrics`] (counters and
//!   histograms in the Prometheus text format).
#![forbid(unsafe_code)]

pub mod can;
pub(crate) mod catalog;
pub mod clock;
pub mod config;
pub(crate) mod context;
pub mod crypto;
pub(crate) mod handlers;
pub(crate) mod hub;
pub(crate) mod images;
pub(crate) mod jobs;
pub(crate) mod log_gate;
pub mod metrics;
pub(crate) mod neighborhood;
pub mod net;
pub(crate) mod peers;
pub mod probe;
pub(crate) mod profile_rules;
pub mod role;
pub mod runtime;
pub mod search;
pub(crate) mod session;
pub mod store;
pub mod wire;
