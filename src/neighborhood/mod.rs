//! Profile sharing between servers (spec §4.19, §5.7), the decisions only: which shared items
//! are valid and what they change, and how a snapshot is cut into frames. Pure: the handlers and
//! the `peers` tasks load what the decisions need, then store what they return.

pub(crate) mod receiving;
pub(crate) mod sharing;
