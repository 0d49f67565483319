//! The sharing side: what our followers receive, cut into update requests, and the order in
//! which queued changes are delivered.

pub(crate) mod batches;
pub(crate) mod delivery;
